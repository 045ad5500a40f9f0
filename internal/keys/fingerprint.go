package keys

import (
	"crypto/sha256"
	"encoding/hex"
)

// FingerprintSize is the number of SHA-256 bytes a fingerprint keeps.
const FingerprintSize = 8

// fingerprintDomain separates our fingerprints from any other SHA-256 of the
// same bytes, so a fingerprint cannot be matched against a hash published
// elsewhere.
const fingerprintDomain = "dkm-operator fingerprint v1"

// Kinds of keys that are fingerprinted. A data key and a KEK with the same
// bytes get different fingerprints, so the two can never be confused.
const (
	fingerprintKindKey = "key"
	fingerprintKindKEK = "kek"
)

// Fingerprint names a key or KEK without revealing it: the first 8 bytes of
// SHA-256("dkm-operator fingerprint v1" 0x00 kind 0x00 key), where kind is
// "key" for a DKM key and "kek" for a key-encryption key. It is the only way
// a key is ever named outside a Secret, and is safe for status and logs.
//
// Its text form is "sha256:" followed by 16 lowercase hex digits. The zero
// Fingerprint means "none" and prints as the empty string.
type Fingerprint [FingerprintSize]byte

func fingerprint(kind string, key []byte) Fingerprint {
	h := sha256.New()
	h.Write([]byte(fingerprintDomain))
	h.Write([]byte{0})
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write(key)
	var fp Fingerprint
	copy(fp[:], h.Sum(nil))
	return fp
}

// IsZero reports whether f names nothing.
func (f Fingerprint) IsZero() bool { return f == Fingerprint{} }

// String returns "sha256:" and 16 hex digits, or "" for the zero Fingerprint.
func (f Fingerprint) String() string {
	if f.IsZero() {
		return ""
	}
	return "sha256:" + hex.EncodeToString(f[:])
}

// MarshalText implements encoding.TextMarshaler.
func (f Fingerprint) MarshalText() ([]byte, error) { return []byte(f.String()), nil }
