package keys

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

// vectorsFile holds known answers produced by testdata/independent_vectors.py,
// an implementation of docs/key-envelope.md that shares no code with this
// package. Any change to the format makes these tests fail.
const vectorsFile = "testdata/vectors.json"

type vectors struct {
	Fingerprints []struct {
		Kind        string `json:"kind"`
		KeyHex      string `json:"key_hex"`
		Fingerprint string `json:"fingerprint"`
	} `json:"fingerprints"`
	Wrapped []struct {
		Name                  string `json:"name"`
		KEKHex                string `json:"kek_hex"`
		KeyHex                string `json:"key_hex"`
		ContainerGUID         string `json:"container_guid"`
		ContainerGUIDBytesHex string `json:"container_guid_bytes_hex"`
		KeyID                 string `json:"key_id"`
		NonceHex              string `json:"nonce_hex"`
		AADHex                string `json:"aad_hex"`
		BlobHex               string `json:"blob_hex"`
		KeyFingerprint        string `json:"key_fingerprint"`
		KEKFingerprint        string `json:"kek_fingerprint"`
	} `json:"wrapped"`
	Plain []struct {
		Name           string `json:"name"`
		KeyHex         string `json:"key_hex"`
		BlobHex        string `json:"blob_hex"`
		KeyFingerprint string `json:"key_fingerprint"`
	} `json:"plain"`
	Invalid []struct {
		Name          string   `json:"name"`
		KEKsHex       []string `json:"keks_hex"`
		ContainerGUID string   `json:"container_guid"`
		KeyID         string   `json:"key_id"`
		BlobHex       string   `json:"blob_hex"`
		Error         string   `json:"error"`
	} `json:"invalid"`
}

// vectorErrors maps the error names in the vectors file to sentinels.
var vectorErrors = map[string]error{
	"truncated":              ErrTruncated,
	"trailing-data":          ErrTrailingData,
	"bad-magic":              ErrBadMagic,
	"unknown-format-version": ErrUnknownFormatVersion,
	"unknown-algorithm":      ErrUnknownAlgorithm,
	"unknown-kek":            ErrUnknownKEK,
	"authentication":         ErrAuthentication,
}

func loadVectors(t testing.TB) vectors {
	t.Helper()
	raw, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", vectorsFile, err)
	}
	if len(v.Fingerprints) == 0 || len(v.Wrapped) == 0 || len(v.Plain) == 0 || len(v.Invalid) == 0 {
		t.Fatalf("%s is missing a section", vectorsFile)
	}
	return v
}

func TestFingerprintVectors(t *testing.T) {
	for _, v := range loadVectors(t).Fingerprints {
		if got := fingerprint(v.Kind, mustHex(t, v.KeyHex)).String(); got != v.Fingerprint {
			t.Errorf("fingerprint(%s, %s) = %s, want %s", v.Kind, v.KeyHex, got, v.Fingerprint)
		}
	}
}

func TestWrappedVectors(t *testing.T) {
	for _, v := range loadVectors(t).Wrapped {
		t.Run(v.Name, func(t *testing.T) {
			kek := mustHex(t, v.KEKHex)
			key := mustMaterial(t, mustHex(t, v.KeyHex))
			container := mustObjectGUID(v.ContainerGUID)
			b := Binding{Container: container, KeyID: mustKeyID(v.KeyID)}
			w := wrappedUnder(t, kek)
			w.random = fixedReader(mustHex(t, v.NonceHex))

			if got := hex.EncodeToString(container[:]); got != v.ContainerGUIDBytesHex {
				t.Errorf("objectGUID %s is bytes %s, want %s", v.ContainerGUID, got, v.ContainerGUIDBytesHex)
			}
			if got := w.KEKs().Active().Fingerprint().String(); got != v.KEKFingerprint {
				t.Errorf("KEK fingerprint %s, want %s", got, v.KEKFingerprint)
			}
			if got := key.Fingerprint().String(); got != v.KeyFingerprint {
				t.Errorf("key fingerprint %s, want %s", got, v.KeyFingerprint)
			}

			blob, err := w.Seal(key, b)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(blob); got != v.BlobHex {
				t.Fatalf("sealed\n  %s\nwant\n  %s", got, v.BlobHex)
			}
			if got := hex.EncodeToString(additionalData(blob[:headerSize], b)); got != v.AADHex {
				t.Errorf("AAD %s, want %s", got, v.AADHex)
			}

			opened, err := w.Open(mustHex(t, v.BlobHex), b)
			if err != nil {
				t.Fatalf("the stored blob does not open: %v", err)
			}
			if !opened.Material.Equal(key) || opened.KEK.String() != v.KEKFingerprint || opened.NeedsRewrap {
				t.Fatalf("opened %s under %s", opened.Material.Fingerprint(), opened.KEK)
			}
		})
	}
}

func TestPlainVectors(t *testing.T) {
	for _, v := range loadVectors(t).Plain {
		t.Run(v.Name, func(t *testing.T) {
			key := mustMaterial(t, mustHex(t, v.KeyHex))
			blob, err := Plain{}.Seal(key, testBinding)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(blob); got != v.BlobHex {
				t.Fatalf("sealed %s, want %s", got, v.BlobHex)
			}
			opened, err := Plain{}.Open(mustHex(t, v.BlobHex), testBinding)
			if err != nil {
				t.Fatal(err)
			}
			if !opened.Material.Equal(key) || opened.Material.Fingerprint().String() != v.KeyFingerprint {
				t.Fatalf("opened %s, want %s", opened.Material.Fingerprint(), v.KeyFingerprint)
			}
		})
	}
}

func TestInvalidVectors(t *testing.T) {
	for _, v := range loadVectors(t).Invalid {
		t.Run(v.Name, func(t *testing.T) {
			want, ok := vectorErrors[v.Error]
			if !ok {
				t.Fatalf("unknown error name %q", v.Error)
			}
			var keks [][]byte
			for _, h := range v.KEKsHex {
				keks = append(keks, mustHex(t, h))
			}
			w := wrappedUnder(t, keks[0], keks[1:]...)
			b := Binding{Container: mustObjectGUID(v.ContainerGUID), KeyID: mustKeyID(v.KeyID)}

			_, err := w.Open(mustHex(t, v.BlobHex), b)
			assertError(t, err, want, nil, keks...)
		})
	}
}
