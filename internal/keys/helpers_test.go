package keys

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Fixtures shared by the tests. They are derived from fixed seeds so that a
// failure reproduces, and distinct so that a mix-up shows.
var (
	testContainer      = mustObjectGUID("00112233-4455-6677-8899-aabbccddeeff")
	otherContainer     = mustObjectGUID("00112233-4455-6677-8899-aabbccddeef0")
	testKeyID          = mustKeyID("3f2504e0-4f89-41d3-9a0c-0305e82c3301")
	otherKeyID         = mustKeyID("3f2504e0-4f89-41d3-9a0c-0305e82c3302")
	testBinding        = Binding{Container: testContainer, KeyID: testKeyID}
	testKEKA, testKEKB = seededBytes("kek A"), seededBytes("kek B")
	testKeyBytes       = seededBytes("key 1")
)

func mustObjectGUID(s string) ObjectGUID {
	g, err := ParseObjectGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

func mustKeyID(s string) KeyID {
	id, err := ParseKeyID(s)
	if err != nil {
		panic(err)
	}
	return id
}

// seededBytes returns 32 bytes derived from a label.
func seededBytes(label string) []byte {
	sum := sha256.Sum256([]byte("dkm-operator test " + label))
	return sum[:]
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func mustMaterial(t testing.TB, b []byte) Material {
	t.Helper()
	m, err := NewMaterial(b)
	if err != nil {
		t.Fatalf("NewMaterial: %v", err)
	}
	return m
}

func mustKEKRing(t testing.TB, data map[string][]byte) *KEKRing {
	t.Helper()
	ring, err := ParseKEKSecret(data)
	if err != nil {
		t.Fatalf("ParseKEKSecret: %v", err)
	}
	return ring
}

// wrappedUnder returns a Wrapped protector whose active KEK is active and
// whose retired KEKs are retired.
func wrappedUnder(t testing.TB, active []byte, retired ...[]byte) *Wrapped {
	t.Helper()
	data := map[string][]byte{ActiveKEKDataKey: active}
	for i, r := range retired {
		data[fmt.Sprintf("%s%d", RetiredKEKDataKeyPrefix, i)] = r
	}
	return NewWrapped(mustKEKRing(t, data))
}

// secretForms lists the ways secret bytes could show up in text: raw, hex in
// both cases, every base64 alphabet, and Go's decimal slice form. Eight-byte
// windows catch a partial leak as well as a whole one.
func secretForms(secret []byte) []string {
	forms := []string{
		base64.StdEncoding.EncodeToString(secret),
		base64.RawStdEncoding.EncodeToString(secret),
		base64.URLEncoding.EncodeToString(secret),
		base64.RawURLEncoding.EncodeToString(secret),
	}
	const window = 8
	for i := 0; i+window <= len(secret); i++ {
		w := secret[i : i+window]
		forms = append(forms,
			string(w),
			hex.EncodeToString(w),
			strings.ToUpper(hex.EncodeToString(w)),
			strings.Trim(fmt.Sprint(w), "[]"),
			fmt.Sprintf("%#v", w)[len("[]byte{"):],
		)
	}
	return forms
}

// assertNoSecrets fails if text contains any form of any secret.
func assertNoSecrets(t testing.TB, text string, secrets ...[]byte) {
	t.Helper()
	for _, secret := range secrets {
		for _, form := range secretForms(secret) {
			if strings.Contains(text, form) {
				t.Fatalf("text leaks secret bytes (as %q):\n%s", form, text)
			}
		}
	}
}

// assertError checks that err wraps want, mentions every fragment, and leaks
// none of the secrets.
func assertError(t testing.TB, err, want error, fragments []string, secrets ...[]byte) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("got error %q, want one wrapping %q", err, want)
	}
	for _, fragment := range fragments {
		if !strings.Contains(err.Error(), fragment) {
			t.Errorf("error %q does not mention %q", err, fragment)
		}
	}
	assertNoSecrets(t, err.Error(), secrets...)
}

// fixedReader replays bytes, then fails: a test that draws more randomness
// than it planned notices.
func fixedReader(b ...[]byte) *bytes.Reader { return bytes.NewReader(bytes.Join(b, nil)) }
