package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
)

// KeySecretName is the name of the key Secret projected for one replica pod:
// `<dkm>-<pod>-<hash>`. It is readable, within the 253-character limit of Secret names, and
// collision-free ("a" + "b-c" and "a-b" + "c" differ in the hash). The projector and the
// injection webhook both name the Secret with it, so a pod's volume is settled at admission.
func KeySecretName(dkm, pod string) string {
	sum := sha256.Sum256([]byte(dkm + "/" + pod))
	suffix := "-" + hex.EncodeToString(sum[:])[:10]
	base := dkm + "-" + pod
	if limit := 253 - len(suffix); len(base) > limit {
		base = base[:limit]
	}
	return base + suffix
}
