package keys

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// fmtVerbs is every verb fmt knows, plus flag and width variants.
var fmtVerbs = []string{
	"%v", "%+v", "%#v", "%s", "%q", "%#q", "%x", "%X", "% x", "%#x", "%d", "%b", "%o", "%O",
	"%c", "%U", "%e", "%E", "%f", "%F", "%g", "%G", "%t", "%p", "%T", "%10s", "%-40x", "%08d", "%.4s",
}

func TestMaterialRedactsEveryVerb(t *testing.T) {
	m := mustMaterial(t, testKeyBytes)
	values := map[string]any{
		"value":   m,
		"pointer": &m,
		"slice":   []Material{m},
		"map":     map[string]Material{"k": m},
		"struct":  struct{ Key Material }{m},
	}
	for name, value := range values {
		for _, verb := range fmtVerbs {
			out := fmt.Sprintf(verb, value)
			assertNoSecrets(t, out, testKeyBytes)
			// %T prints the type and %p an address: neither reaches the key.
			if verb != "%T" && verb != "%p" && !strings.Contains(out, "redacted") {
				t.Errorf("%s %s printed %q, want [redacted]", name, verb, out)
			}
		}
	}
	if got := fmt.Sprintf("%#v", m); got != "keys.Material{[redacted]}" {
		t.Errorf("%%#v printed %q", got)
	}
	if got := fmt.Sprintf("%q", m); got != `"[redacted]"` {
		t.Errorf("%%q printed %q", got)
	}
	if got := m.String(); got != "[redacted]" {
		t.Errorf("String returned %q", got)
	}
}

// TestSecretHoldersRedactUnderReflection prints key holders that sit in
// unexported fields, where fmt cannot call their methods and walks their
// fields by reflection instead.
func TestSecretHoldersRedactUnderReflection(t *testing.T) {
	m := mustMaterial(t, testKeyBytes)
	keks := mustKEKRing(t, map[string][]byte{"kek": testKEKA, "kek.old": testKEKB})
	w := NewWrapped(keks)
	ring, _, err := NewRing(testContainer, w, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	hidden := struct {
		material Material
		version  Version
		opened   Opened
		kek      *KEK
		keks     *KEKRing
		wrapped  *Wrapped
		ring     *Ring
		ringVal  Ring
		keksVal  KEKRing
		kekVal   KEK
	}{m, ring.Active(), Opened{Material: m}, keks.Active(), keks, w, ring, *ring, *keks, *keks.Active()}
	active := ring.Active().Material.Reveal()

	for _, verb := range fmtVerbs {
		for _, value := range []any{hidden, &hidden} {
			out := fmt.Sprintf(verb, value)
			assertNoSecrets(t, out, testKeyBytes, testKEKA, testKEKB, active)
		}
	}
}

func TestKeyHoldersRedactEveryVerb(t *testing.T) {
	keks := mustKEKRing(t, map[string][]byte{"kek": testKEKA, "kek.old": testKEKB})
	w := NewWrapped(keks)
	ring, _, err := NewRing(testContainer, w, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	active := ring.Active().Material.Reveal()
	values := map[string]any{
		"KEK":       keks.Active(),
		"KEKRing":   keks,
		"Wrapped":   w,
		"Ring":      ring,
		"Version":   ring.Active(),
		"Versions":  ring.Versions(),
		"Opened":    Opened{Material: ring.Active().Material},
		"StoredKey": StoredKey{ID: testKeyID.String(), Blob: active}, // as a Plain blob would be
	}
	for name, value := range values {
		for _, verb := range fmtVerbs {
			out := fmt.Sprintf(verb, value)
			secrets := [][]byte{testKEKA, testKEKB}
			if name != "StoredKey" { // a StoredKey carries the blob, which is public only in Wrapped mode
				secrets = append(secrets, active)
			}
			assertNoSecrets(t, out, secrets...)
		}
	}
	if got, want := keks.String(), fmt.Sprintf(`%s as "kek" (active), %s as "kek.old"`,
		fingerprint(fingerprintKindKEK, testKEKA), fingerprint(fingerprintKindKEK, testKEKB)); got != want {
		t.Errorf("KEKRing prints %q, want %q", got, want)
	}
}

func TestMaterialRedactsMarshalling(t *testing.T) {
	m := mustMaterial(t, testKeyBytes)
	ring, _, err := NewRing(testContainer, Plain{}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	keks := mustKEKRing(t, map[string][]byte{"kek": testKEKA})

	for name, value := range map[string]any{
		"Material":          m,
		"*Material":         &m,
		"struct with field": struct{ Key Material }{m},
		"Version":           ring.Active(),
		"Ring":              ring,
		"KEKRing":           keks,
		"KEK":               keks.Active(),
	} {
		out, err := json.Marshal(value)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		assertNoSecrets(t, string(out), testKeyBytes, testKEKA, ring.Active().Material.Reveal())
	}
	if out, _ := json.Marshal(m); string(out) != `"[redacted]"` {
		t.Errorf("json.Marshal gave %s", out)
	}
	if out, _ := m.MarshalText(); string(out) != "[redacted]" {
		t.Errorf("MarshalText gave %s", out)
	}
	if out, _ := json.Marshal(map[string]Material{"k": m}); string(out) != `{"k":"[redacted]"}` {
		t.Errorf("json.Marshal of a map gave %s", out)
	}
}

func TestMaterialRedactsInSlog(t *testing.T) {
	m := mustMaterial(t, testKeyBytes)
	keks := mustKEKRing(t, map[string][]byte{"kek": testKEKA})
	ring, _, err := NewRing(testContainer, NewWrapped(keks), t0)
	if err != nil {
		t.Fatal(err)
	}
	for name, newHandler := range map[string]func(*bytes.Buffer) slog.Handler{
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		slog.New(newHandler(&buf)).Info("key loaded", "key", m, "keks", keks, "kek", keks.Active(), "ring", ring, "version", ring.Active())
		assertNoSecrets(t, buf.String(), testKeyBytes, testKEKA, ring.Active().Material.Reveal())
		if !strings.Contains(buf.String(), "[redacted]") || !strings.Contains(buf.String(), ring.ActiveID().String()) {
			t.Errorf("%s handler logged %s", name, buf.String())
		}
	}
}

func TestMaterialAccessors(t *testing.T) {
	m := mustMaterial(t, testKeyBytes)
	revealed := m.Reveal()
	if !bytes.Equal(revealed, testKeyBytes) {
		t.Fatal("Reveal does not return the key")
	}
	revealed[0] ^= 0xff
	if !bytes.Equal(m.Reveal(), testKeyBytes) {
		t.Fatal("changing the revealed bytes changed the key")
	}

	source := append([]byte(nil), testKeyBytes...)
	copied := mustMaterial(t, source)
	source[0] ^= 0xff
	if !copied.Equal(m) {
		t.Fatal("NewMaterial does not copy its input")
	}

	var zero Material
	if !zero.IsZero() || zero.Reveal() != nil || !zero.Fingerprint().IsZero() || zero.Equal(m) || !zero.Equal(Material{}) {
		t.Fatal("the zero Material is not empty")
	}
	if _, err := NewMaterial(testKeyBytes[:16]); err == nil {
		t.Fatal("NewMaterial took 16 bytes")
	}
	if m.Fingerprint().String() != fingerprint(fingerprintKindKey, testKeyBytes).String() {
		t.Fatal("Fingerprint does not match")
	}
	if _, err := generateMaterial(fixedReader(make([]byte, 31))); err == nil {
		t.Fatal("a short read gave key material")
	}
}

func TestFingerprintText(t *testing.T) {
	fp := fingerprint(fingerprintKindKey, testKeyBytes)
	text := fp.String()
	if !strings.HasPrefix(text, "sha256:") || len(text) != len("sha256:")+2*FingerprintSize {
		t.Fatalf("fingerprint text %q", text)
	}
	if out, _ := fp.MarshalText(); string(out) != text {
		t.Fatalf("MarshalText gave %q", out)
	}
	if (Fingerprint{}).String() != "" {
		t.Fatal("the zero Fingerprint prints")
	}
}
