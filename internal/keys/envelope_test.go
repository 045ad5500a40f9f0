package keys

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestWrappedRoundTrip(t *testing.T) {
	w := wrappedUnder(t, testKEKA)
	for i := range 64 {
		m, err := GenerateMaterial()
		if err != nil {
			t.Fatal(err)
		}
		id, err := NewKeyID()
		if err != nil {
			t.Fatal(err)
		}
		b := Binding{Container: testContainer, KeyID: id}

		blob, err := w.Seal(m, b)
		if err != nil {
			t.Fatalf("round %d: Seal: %v", i, err)
		}
		if len(blob) != EnvelopeSize {
			t.Fatalf("round %d: blob is %d bytes, want %d", i, len(blob), EnvelopeSize)
		}
		assertNoSecrets(t, string(blob), m.Reveal(), testKEKA)

		opened, err := w.Open(blob, b)
		if err != nil {
			t.Fatalf("round %d: Open: %v", i, err)
		}
		if !opened.Material.Equal(m) {
			t.Fatalf("round %d: opened a different key", i)
		}
		if opened.KEK != w.KEKs().Active().Fingerprint() || opened.NeedsRewrap {
			t.Fatalf("round %d: opened under %s (rewrap %v), want the active KEK", i, opened.KEK, opened.NeedsRewrap)
		}
	}
}

func TestWrappedSealUsesFreshNonces(t *testing.T) {
	w := wrappedUnder(t, testKEKA)
	m := mustMaterial(t, testKeyBytes)
	first, err := w.Seal(m, testBinding)
	if err != nil {
		t.Fatal(err)
	}
	second, err := w.Seal(m, testBinding)
	if err != nil {
		t.Fatal(err)
	}
	if string(first[offsetNonce:offsetSealed]) == string(second[offsetNonce:offsetSealed]) {
		t.Fatal("two seals used the same nonce")
	}
}

// expectedFlipError is the error a single flipped bit at offset must give:
// the framing fields each have their own, the rest fails authentication.
func expectedFlipError(offset int) error {
	switch {
	case offset < offsetVersion:
		return ErrBadMagic
	case offset == offsetVersion:
		return ErrUnknownFormatVersion
	case offset == offsetAlgorithm:
		return ErrUnknownAlgorithm
	case offset < offsetNonce:
		return ErrUnknownKEK
	default:
		return ErrAuthentication
	}
}

func TestWrappedOpenRejectsEveryFlippedBit(t *testing.T) {
	w := wrappedUnder(t, testKEKA)
	blob, err := w.Seal(mustMaterial(t, testKeyBytes), testBinding)
	if err != nil {
		t.Fatal(err)
	}
	for offset := range blob {
		for bit := range 8 {
			damaged := append([]byte(nil), blob...)
			damaged[offset] ^= 1 << bit

			_, err := w.Open(damaged, testBinding)

			want := expectedFlipError(offset)
			var fragments []string
			switch want {
			case ErrAuthentication:
				fragments = []string{
					"the blob does not authenticate for container 00112233-4455-6677-8899-aabbccddeeff key 3f2504e0-4f89-41d3-9a0c-0305e82c3301",
					"it was altered, or belongs to another container or key",
				}
			case ErrUnknownKEK:
				fragments = []string{Fingerprint(damaged[offsetKEK:offsetNonce]).String(), w.KEKs().Active().Fingerprint().String()}
			case ErrUnknownFormatVersion:
				fragments = []string{fmt.Sprintf("version %d", damaged[offset])}
			case ErrUnknownAlgorithm:
				fragments = []string{fmt.Sprintf("algorithm %d", damaged[offset])}
			case ErrBadMagic:
				fragments = []string{`"DKMW"`}
			}
			t.Run(fmt.Sprintf("byte %d bit %d", offset, bit), func(t *testing.T) {
				assertError(t, err, want, fragments, testKeyBytes, testKEKA)
			})
		}
	}
}

func TestWrappedOpenRejectsEveryTruncation(t *testing.T) {
	w := wrappedUnder(t, testKEKA)
	blob, err := w.Seal(mustMaterial(t, testKeyBytes), testBinding)
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(blob) {
		_, err := w.Open(blob[:n], testBinding)
		assertError(t, err, ErrTruncated, []string{fmt.Sprintf("%d bytes", n), "has 74"}, testKeyBytes, testKEKA)
	}
}

func TestWrappedOpenErrors(t *testing.T) {
	w := wrappedUnder(t, testKEKA)
	blob, err := w.Seal(mustMaterial(t, testKeyBytes), testBinding)
	if err != nil {
		t.Fatal(err)
	}
	withByte := func(offset int, value byte) []byte {
		b := append([]byte(nil), blob...)
		b[offset] = value
		return b
	}

	tests := []struct {
		name      string
		protector *Wrapped
		blob      []byte
		binding   Binding
		want      error
		fragments []string
	}{
		{
			name:      "wrong KEK",
			protector: wrappedUnder(t, testKEKB),
			blob:      blob,
			binding:   testBinding,
			want:      ErrUnknownKEK,
			fragments: []string{
				"it names KEK " + fingerprint(fingerprintKindKEK, testKEKA).String(),
				"the Secret holds " + fingerprint(fingerprintKindKEK, testKEKB).String() + ` as "kek" (active)`,
			},
		},
		{
			name:      "moved to another container",
			protector: w,
			blob:      blob,
			binding:   Binding{Container: otherContainer, KeyID: testKeyID},
			want:      ErrAuthentication,
			fragments: []string{"for container 00112233-4455-6677-8899-aabbccddeef0 key 3f2504e0-4f89-41d3-9a0c-0305e82c3301", "belongs to another container or key"},
		},
		{
			name:      "moved to another key ID",
			protector: w,
			blob:      blob,
			binding:   Binding{Container: testContainer, KeyID: otherKeyID},
			want:      ErrAuthentication,
			fragments: []string{"for container 00112233-4455-6677-8899-aabbccddeeff key 3f2504e0-4f89-41d3-9a0c-0305e82c3302"},
		},
		{
			name:      "unknown format version",
			protector: w,
			blob:      withByte(offsetVersion, 2),
			binding:   testBinding,
			want:      ErrUnknownFormatVersion,
			fragments: []string{"unknown key envelope format version 2", "this build reads version 1"},
		},
		{
			name:      "unknown algorithm",
			protector: w,
			blob:      withByte(offsetAlgorithm, 7),
			binding:   testBinding,
			want:      ErrUnknownAlgorithm,
			fragments: []string{"unknown key envelope algorithm 7"},
		},
		{
			name:      "bad magic",
			protector: w,
			blob:      withByte(0, 'X'),
			binding:   testBinding,
			want:      ErrBadMagic,
			fragments: []string{"not a wrapped key envelope", `does not start with "DKMW"`},
		},
		{
			name:      "a Plain key",
			protector: w,
			blob:      testKeyBytes,
			binding:   testBinding,
			want:      ErrBadMagic,
			fragments: []string{"look like a Plain key"},
		},
		{
			name:      "trailing data",
			protector: w,
			blob:      append(append([]byte(nil), blob...), 0),
			binding:   testBinding,
			want:      ErrTrailingData,
			fragments: []string{"75 bytes", "exactly 74"},
		},
		{
			name:      "no container",
			protector: w,
			blob:      blob,
			binding:   Binding{KeyID: testKeyID},
			want:      ErrUnbound,
			fragments: []string{"no container objectGUID"},
		},
		{
			name:      "no key ID",
			protector: w,
			blob:      blob,
			binding:   Binding{Container: testContainer},
			want:      ErrUnbound,
			fragments: []string{"no key ID"},
		},
		{
			name:      "protector without KEKs",
			protector: &Wrapped{},
			blob:      blob,
			binding:   testBinding,
			want:      ErrUnknownKEK,
			fragments: []string{"the Secret holds no KEKs"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opened, err := tt.protector.Open(tt.blob, tt.binding)
			assertError(t, err, tt.want, tt.fragments, testKeyBytes, testKEKA, testKEKB)
			if !opened.Material.IsZero() {
				t.Fatal("a failed Open returned key material")
			}
		})
	}
}

func TestWrappedSealErrors(t *testing.T) {
	m := mustMaterial(t, testKeyBytes)
	tests := []struct {
		name      string
		protector *Wrapped
		material  Material
		binding   Binding
		want      error
	}{
		{"no container", wrappedUnder(t, testKEKA), m, Binding{KeyID: testKeyID}, ErrUnbound},
		{"no key ID", wrappedUnder(t, testKEKA), m, Binding{Container: testContainer}, ErrUnbound},
		{"no material", wrappedUnder(t, testKEKA), Material{}, testBinding, ErrKeyLength},
		{"no KEKs", &Wrapped{}, m, testBinding, ErrMissingKEK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blob, err := tt.protector.Seal(tt.material, tt.binding)
			assertError(t, err, tt.want, nil, testKeyBytes, testKEKA)
			if blob != nil {
				t.Fatal("a failed Seal returned a blob")
			}
		})
	}
}

func TestWrappedSealReportsRandomnessFailure(t *testing.T) {
	w := wrappedUnder(t, testKEKA)
	w.random = fixedReader(make([]byte, gcmNonceSize-1))
	_, err := w.Seal(mustMaterial(t, testKeyBytes), testBinding)
	if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want a nonce read error", err)
	}
}

func TestRetiredKEKOpensAndAsksForRewrap(t *testing.T) {
	old := wrappedUnder(t, testKEKA)
	blob, err := old.Seal(mustMaterial(t, testKeyBytes), testBinding)
	if err != nil {
		t.Fatal(err)
	}
	rotated := wrappedUnder(t, testKEKB, testKEKA)

	opened, err := rotated.Open(blob, testBinding)
	if err != nil {
		t.Fatalf("the retired KEK did not open the blob: %v", err)
	}
	if opened.KEK != fingerprint(fingerprintKindKEK, testKEKA) || !opened.NeedsRewrap {
		t.Fatalf("opened under %s, rewrap %v; want the retired KEK and a rewrap", opened.KEK, opened.NeedsRewrap)
	}
	if !opened.Material.Equal(mustMaterial(t, testKeyBytes)) {
		t.Fatal("opened a different key")
	}
}

func TestPlain(t *testing.T) {
	m := mustMaterial(t, testKeyBytes)
	blob, err := Plain{}.Seal(m, testBinding)
	if err != nil {
		t.Fatal(err)
	}
	if string(blob) != string(testKeyBytes) {
		t.Fatal("a Plain blob is not the raw key")
	}
	opened, err := Plain{}.Open(blob, Binding{})
	if err != nil {
		t.Fatal(err)
	}
	if !opened.Material.Equal(m) || !opened.KEK.IsZero() || opened.NeedsRewrap {
		t.Fatalf("got %+v", opened)
	}

	envelope, err := wrappedUnder(t, testKEKA).Seal(m, testBinding)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		blob      []byte
		fragments []string
	}{
		{"empty", nil, []string{"the blob has 0"}},
		{"one byte short", testKeyBytes[:31], []string{"a Plain key is 32 raw bytes, the blob has 31"}},
		{"one byte extra", append(append([]byte(nil), testKeyBytes...), 0), []string{"the blob has 33"}},
		{"a wrapped envelope", envelope, []string{"the blob has 74", "is the container in Wrapped mode?"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Plain{}.Open(tt.blob, testBinding)
			assertError(t, err, ErrKeyLength, tt.fragments, testKeyBytes)
		})
	}

	if _, err := (Plain{}).Seal(Material{}, testBinding); !errors.Is(err, ErrKeyLength) {
		t.Fatalf("sealing no material: got %v, want ErrKeyLength", err)
	}
}

func TestNewProtector(t *testing.T) {
	keks := mustKEKRing(t, map[string][]byte{ActiveKEKDataKey: testKEKA})
	tests := []struct {
		mode     Mode
		keks     *KEKRing
		wantMode Mode
		wantErr  error
	}{
		{ModeWrapped, keks, ModeWrapped, nil},
		{"", keks, ModeWrapped, nil},
		{ModePlain, nil, ModePlain, nil},
		{ModePlain, keks, ModePlain, nil},
		{ModeWrapped, nil, "", ErrMissingKEK},
		{"wrapped", keks, "", ErrUnknownMode},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q with KEKs %v", tt.mode, tt.keks != nil), func(t *testing.T) {
			p, err := NewProtector(tt.mode, tt.keks)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if err == nil && p.Mode() != tt.wantMode {
				t.Fatalf("got mode %s, want %s", p.Mode(), tt.wantMode)
			}
		})
	}
}
