package keys

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"testing"
)

func TestParseKEKSecret(t *testing.T) {
	fpA := fingerprint(fingerprintKindKEK, testKEKA)
	fpB := fingerprint(fingerprintKindKEK, testKEKB)
	fpC := fingerprint(fingerprintKindKEK, seededBytes("kek C"))

	tests := []struct {
		name        string
		data        map[string][]byte
		wantActive  Fingerprint
		wantRetired []Fingerprint
	}{
		{
			name:       "active only",
			data:       map[string][]byte{"kek": testKEKA},
			wantActive: fpA,
		},
		{
			name:        "active and retired, retired in data key order",
			data:        map[string][]byte{"kek": testKEKA, "kek.2025-06": seededBytes("kek C"), "kek.2024-01": testKEKB},
			wantActive:  fpA,
			wantRetired: []Fingerprint{fpB, fpC},
		},
		{
			name:       "unrelated data keys are ignored",
			data:       map[string][]byte{"kek": testKEKA, "README": []byte("see docs"), "ca.crt": []byte("x")},
			wantActive: fpA,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ring, err := ParseKEKSecret(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if got := ring.Active().Fingerprint(); got != tt.wantActive {
				t.Errorf("active KEK %s, want %s", got, tt.wantActive)
			}
			if ring.Active().DataKey() != ActiveKEKDataKey {
				t.Errorf("active KEK from %q", ring.Active().DataKey())
			}
			var retired []Fingerprint
			for _, k := range ring.Retired() {
				retired = append(retired, k.Fingerprint())
				if _, ok := ring.Lookup(k.Fingerprint()); !ok {
					t.Errorf("Lookup does not find retired %s", k)
				}
			}
			if len(retired) != len(tt.wantRetired) {
				t.Fatalf("retired %v, want %v", retired, tt.wantRetired)
			}
			for i := range retired {
				if retired[i] != tt.wantRetired[i] {
					t.Errorf("retired %v, want %v", retired, tt.wantRetired)
				}
			}
			assertNoSecrets(t, ring.String(), testKEKA, testKEKB)
		})
	}
}

func TestParseKEKSecretErrors(t *testing.T) {
	base64Text := []byte(base64.StdEncoding.EncodeToString(testKEKA))
	hexText := []byte(hex.EncodeToString(testKEKA))
	withNewline := append(append([]byte(nil), testKEKA...), '\n')
	fpA := fingerprint(fingerprintKindKEK, testKEKA).String()

	tests := []struct {
		name      string
		data      map[string][]byte
		want      []error
		fragments []string
	}{
		{
			name:      "nil data",
			data:      nil,
			want:      []error{ErrMissingKEK},
			fragments: []string{`add data key "kek" holding 32 random bytes`},
		},
		{
			name:      "only retired KEKs",
			data:      map[string][]byte{"kek.old": testKEKA},
			want:      []error{ErrMissingKEK},
			fragments: []string{`"kek"`},
		},
		{
			name:      "active too short",
			data:      map[string][]byte{"kek": testKEKA[:31]},
			want:      []error{ErrKEKLength},
			fragments: []string{`Secret data key "kek" holds 31 bytes, want exactly 32 raw bytes`},
		},
		{
			name:      "active empty",
			data:      map[string][]byte{"kek": {}},
			want:      []error{ErrKEKLength},
			fragments: []string{"holds 0 bytes", "the entry is empty"},
		},
		{
			name:      "active stored as base64 text",
			data:      map[string][]byte{"kek": base64Text},
			want:      []error{ErrKEKLength},
			fragments: []string{"holds 44 bytes", "looks like base64 text"},
		},
		{
			name:      "active stored as hex text",
			data:      map[string][]byte{"kek": hexText},
			want:      []error{ErrKEKLength},
			fragments: []string{"holds 64 bytes", "looks like hex text"},
		},
		{
			name:      "active with a trailing newline",
			data:      map[string][]byte{"kek": withNewline},
			want:      []error{ErrKEKLength},
			fragments: []string{"holds 33 bytes", "ends with a line break"},
		},
		{
			name:      "retired too long, named",
			data:      map[string][]byte{"kek": testKEKA, "kek.2024": append(append([]byte(nil), testKEKB...), 1, 2)},
			want:      []error{ErrKEKLength},
			fragments: []string{`Secret data key "kek.2024" holds 34 bytes`},
		},
		{
			name:      "same KEK twice",
			data:      map[string][]byte{"kek": testKEKA, "kek.old": testKEKA},
			want:      []error{ErrDuplicateKEK},
			fragments: []string{`"kek" and "kek.old" both hold KEK ` + fpA},
		},
		{
			name:      "typo in the data key",
			data:      map[string][]byte{"kek": testKEKA, "kek-old": testKEKB},
			want:      []error{ErrKEKName},
			fragments: []string{`"kek-old" is neither "kek" nor "kek.<suffix>"`},
		},
		{
			name:      "upper case",
			data:      map[string][]byte{"KEK": testKEKA},
			want:      []error{ErrKEKName, ErrMissingKEK},
			fragments: []string{`"KEK" is neither`},
		},
		{
			name:      "empty suffix",
			data:      map[string][]byte{"kek": testKEKA, "kek.": testKEKB},
			want:      []error{ErrKEKName},
			fragments: []string{`"kek." is neither`},
		},
		{
			name:      "every problem at once",
			data:      map[string][]byte{"kek.a": testKEKA[:1], "kek.b": testKEKB[:2]},
			want:      []error{ErrKEKLength, ErrMissingKEK},
			fragments: []string{`"kek.a" holds 1 bytes`, `"kek.b" holds 2 bytes`, `add data key "kek"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ring, err := ParseKEKSecret(tt.data)
			if ring != nil {
				t.Fatal("got a ring along with an error")
			}
			for _, want := range tt.want {
				assertError(t, err, want, tt.fragments, testKEKA, testKEKB)
			}
		})
	}
}

func TestNewKEKRingRefusesNoActive(t *testing.T) {
	if _, err := NewKEKRing(nil); !errors.Is(err, ErrMissingKEK) {
		t.Fatalf("got %v, want ErrMissingKEK", err)
	}
}

func TestKEKRingLookup(t *testing.T) {
	ring := mustKEKRing(t, map[string][]byte{"kek": testKEKA, "kek.old": testKEKB})
	if k, ok := ring.Lookup(fingerprint(fingerprintKindKEK, testKEKA)); !ok || k != ring.Active() {
		t.Error("Lookup does not find the active KEK")
	}
	if _, ok := ring.Lookup(fingerprint(fingerprintKindKEK, testKeyBytes)); ok {
		t.Error("Lookup finds a KEK that is not in the ring")
	}
	// A data key's fingerprint domain differs from a KEK's.
	if _, ok := ring.Lookup(fingerprint(fingerprintKindKey, testKEKA)); ok {
		t.Error("Lookup confuses a key fingerprint with a KEK fingerprint")
	}
	var none *KEKRing
	if _, ok := none.Lookup(Fingerprint{}); ok {
		t.Error("a nil ring finds a KEK")
	}
}
