package keys

import (
	"errors"
	"strings"
	"testing"
)

// envelopeErrors are the only errors opening a blob may give.
var envelopeErrors = []error{
	ErrTruncated, ErrTrailingData, ErrBadMagic, ErrUnknownFormatVersion,
	ErrUnknownAlgorithm, ErrUnknownKEK, ErrAuthentication,
}

// FuzzOpenEnvelope feeds arbitrary bytes to the envelope parser and opener.
// The seed corpus in testdata/fuzz/FuzzOpenEnvelope holds valid envelopes
// under the active and the retired KEK of the target, and every invalid
// vector. Opening must never panic, must fail with exactly one of the
// envelope errors, must never put KEK bytes in a message, and must only
// succeed on a well-formed envelope under a KEK of the ring.
func FuzzOpenEnvelope(f *testing.F) {
	v := loadVectors(f)
	active, retired := mustHex(f, v.Wrapped[0].KEKHex), mustHex(f, v.Wrapped[1].KEKHex)
	w := wrappedUnder(f, active, retired)
	b := Binding{Container: mustObjectGUID(v.Wrapped[0].ContainerGUID), KeyID: mustKeyID(v.Wrapped[0].KeyID)}

	f.Fuzz(func(t *testing.T, blob []byte) {
		original := string(blob)
		opened, err := w.Open(blob, b)
		if string(blob) != original {
			t.Fatal("Open modified its input")
		}
		_, parseErr := parseEnvelope(blob)

		if err != nil {
			if n := countMatching(err, envelopeErrors); n != 1 {
				t.Fatalf("error %q matches %d envelope errors, want exactly 1", err, n)
			}
			if parseErr != nil && parseErr.Error() != err.Error() {
				t.Fatalf("Open says %q but the parser says %q", err, parseErr)
			}
			if !opened.Material.IsZero() {
				t.Fatal("a failed Open returned key material")
			}
			assertNoSecrets(t, withoutEchoedFingerprint(err.Error(), blob), active, retired)
			return
		}

		if parseErr != nil || len(blob) != EnvelopeSize {
			t.Fatalf("opened a %d-byte blob the parser rejects (%v)", len(blob), parseErr)
		}
		if len(opened.Material.Reveal()) != KeySize {
			t.Fatal("opened material of the wrong length")
		}
		kek, ok := w.KEKs().Lookup(opened.KEK)
		if !ok || opened.NeedsRewrap != (kek != w.KEKs().Active()) {
			t.Fatalf("opened under %s, rewrap %v", opened.KEK, opened.NeedsRewrap)
		}
	})
}

// withoutEchoedFingerprint removes the KEK fingerprint an unknown-KEK error
// echoes from the blob. The blob is public, and the fuzzer can copy KEK bytes
// into that field (it did: see the regression seed); only bytes that did not
// come from the input count as a leak.
func withoutEchoedFingerprint(msg string, blob []byte) string {
	if len(blob) < offsetNonce {
		return msg
	}
	return strings.ReplaceAll(msg, Fingerprint(blob[offsetKEK:offsetNonce]).String(), "sha256:<from the blob>")
}

func countMatching(err error, targets []error) int {
	n := 0
	for _, target := range targets {
		if errors.Is(err, target) {
			n++
		}
	}
	return n
}

// FuzzPlainOpen checks that Plain accepts exactly the 32-byte blobs.
func FuzzPlainOpen(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, KeySize))
	f.Add([]byte(envelopeMagic + "\x01\x01"))
	f.Fuzz(func(t *testing.T, blob []byte) {
		opened, err := Plain{}.Open(blob, Binding{})
		if (err == nil) != (len(blob) == KeySize) {
			t.Fatalf("%d bytes: error %v", len(blob), err)
		}
		if err != nil && !errors.Is(err, ErrKeyLength) {
			t.Fatalf("error %q does not wrap ErrKeyLength", err)
		}
		if err == nil && string(opened.Material.Reveal()) != string(blob) {
			t.Fatal("Plain changed the key")
		}
	})
}

// FuzzParseKeyID checks that a parsed key ID prints back as the lowercase
// form of its input, and that anything else is refused.
func FuzzParseKeyID(f *testing.F) {
	f.Add("3f2504e0-4f89-41d3-9a0c-0305e82c3301")
	f.Add("3F2504E0-4F89-41D3-9A0C-0305E82C3301")
	f.Add("{3f2504e0-4f89-41d3-9a0c-0305e82c3301}")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseKeyID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidKeyID) {
				t.Fatalf("error %q does not wrap ErrInvalidKeyID", err)
			}
			return
		}
		if id.String() != strings.ToLower(s) {
			t.Fatalf("%q parses to %s", s, id)
		}
		g, err := ParseObjectGUID(s)
		if err != nil || g.String() != id.String() {
			t.Fatalf("%q parses as objectGUID %s, %v", s, g, err)
		}
	})
}
