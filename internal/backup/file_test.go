package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/dkm-operator/dkm-operator/internal/keys"
)

// sampleFile is a valid backup with two key versions derived from label.
func sampleFile(t testing.TB, label string) *File {
	t.Helper()
	f := &File{
		Format:    Format,
		CreatedAt: time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC),
		Source: Source{DomainDN: "DC=demo,DC=local", DNSName: "demo.local", NetBIOSName: "DEMO",
			DomainSID: "S-1-5-21-1-2-3", ForestRootSID: "S-1-5-21-1-2-3"},
		Container: Container{
			Object:        Object{DN: "CN=VMMDKM,CN=System,DC=demo,DC=local", GUID: "00112233-4455-6677-8899-aabbccddeeff"},
			DACL:          "D:P(A;CI;GA;;;S-1-5-18)(A;CI;GA;;;S-1-5-21-1-2-3-1105)",
			DACLWithNames: `D:P(A;CI;GA;;;SY)(A;CI;GA;;;DEMO\svc-vmm)`,
			Accounts:      []Account{{SID: "S-1-5-21-1-2-3-1105", SAMAccountName: "svc-vmm", Name: `DEMO\svc-vmm`}},
		},
		Manager:    Object{DN: "CN=DC Manager 1,CN=VMMDKM,CN=System,DC=demo,DC=local", GUID: "00112233-4455-6677-8899-aabbccddee00"},
		Protection: Protection{InAD: keys.ModeWrapped, UnwrappedWith: []string{"sha256:0000000000000000"}, Note: "test"},
	}
	for i, id := range []string{"3f2504e0-4f89-41d3-9a0c-0305e82c3301", "3f2504e0-4f89-41d3-9a0c-0305e82c3302"} {
		key := sha256.Sum256([]byte(fmt.Sprintf("%s key %d", label, i)))
		m, err := keys.NewMaterial(key[:])
		if err != nil {
			t.Fatal(err)
		}
		f.Keys = append(f.Keys, Key{ID: id, Created: f.CreatedAt.Add(time.Duration(i) * time.Hour),
			Fingerprint: m.Fingerprint().String(), Key: key[:]})
		f.ActiveKeyID = id
	}
	return f
}

// forms are the ways key bytes could show up in a file or in text.
func forms(key []byte) []string {
	return []string{string(key), hex.EncodeToString(key), strings.ToUpper(hex.EncodeToString(key)),
		base64.StdEncoding.EncodeToString(key), base64.RawStdEncoding.EncodeToString(key),
		base64.URLEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key), fmt.Sprint([]byte(key))}
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	f := sampleFile(t, "roundtrip")
	x, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	pr, pid, err := Passphrase("correct horse battery staple\n")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		to   age.Recipient
		with age.Identity
	}{
		{"X25519", x.Recipient(), x},
		{"passphrase", pr, pid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Encrypt(&buf, f, tc.to); err != nil {
				t.Fatal(err)
			}
			for _, k := range f.Keys {
				for _, form := range forms(k.Key) {
					if bytes.Contains(buf.Bytes(), []byte(form)) {
						t.Fatalf("the backup file holds key %s in clear (%q)", k.ID, form)
					}
				}
			}
			if bytes.Contains(buf.Bytes(), []byte(Format)) || bytes.Contains(buf.Bytes(), []byte(f.Container.DN)) {
				t.Fatal("the backup file is not encrypted")
			}
			got, err := Decrypt(bytes.NewReader(buf.Bytes()), tc.with)
			if err != nil {
				t.Fatal(err)
			}
			vs, err := got.Versions()
			if err != nil || len(vs) != 2 || !bytes.Equal(got.Keys[1].Key, f.Keys[1].Key) {
				t.Fatalf("decrypted %d versions (%v), keys equal %v", len(vs), err, bytes.Equal(got.Keys[1].Key, f.Keys[1].Key))
			}
		})
	}
	t.Run("wrong identity", func(t *testing.T) {
		other, _ := age.GenerateX25519Identity()
		var buf bytes.Buffer
		if err := Encrypt(&buf, f, x.Recipient()); err != nil {
			t.Fatal(err)
		}
		if _, err := Decrypt(&buf, other); err == nil {
			t.Fatal("decrypted with another identity")
		}
	})
	t.Run("no recipient", func(t *testing.T) {
		if err := Encrypt(&bytes.Buffer{}, f); err == nil {
			t.Fatal("encrypted to nobody")
		}
	})
}

// Printing a backup in any usual way never shows key bytes; only the JSON that age encrypts
// carries them.
func TestSecretNeverFormats(t *testing.T) {
	f := sampleFile(t, "format")
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("backup", "key", f.Keys[0].Key, "file", f)
	texts := []string{fmt.Sprint(f), fmt.Sprintf("%+v", f), fmt.Sprintf("%#v", f), fmt.Sprintf("%x", f.Keys[0].Key),
		fmt.Sprintf("%v", f.Keys), f.Summary(), logged.String()}
	for _, text := range texts {
		for _, k := range f.Keys {
			for _, form := range forms(k.Key) {
				if strings.Contains(text, form) {
					t.Fatalf("key %s shows in %q", k.ID, text)
				}
			}
		}
	}
	b, err := json.Marshal(f)
	if err != nil || !bytes.Contains(b, []byte(base64.StdEncoding.EncodeToString(f.Keys[0].Key))) {
		t.Fatalf("the JSON that age encrypts must hold the key: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	valid, err := json.Marshal(sampleFile(t, "parse"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(valid); err != nil {
		t.Fatalf("valid backup: %v", err)
	}
	edit := func(fn func(f *File)) []byte {
		f := sampleFile(t, "parse")
		fn(f)
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"not JSON", []byte("age-encryption.org/v1"), ErrFormat},
		{"other format", edit(func(f *File) { f.Format = "something/v2" }), ErrFormat},
		{"unknown field", bytes.Replace(valid, []byte(`"format"`), []byte(`"extra":1,"format"`), 1), ErrFormat},
		{"trailing data", append(append([]byte{}, valid...), []byte(" {}")...), ErrInvalid},
		{"short key", edit(func(f *File) { f.Keys[0].Key = f.Keys[0].Key[:16] }), ErrInvalid},
		{"altered key", edit(func(f *File) { f.Keys[0].Key[0] ^= 1 }), ErrInvalid},
		{"duplicate key", edit(func(f *File) { f.Keys[1] = f.Keys[0] }), ErrInvalid},
		{"active missing", edit(func(f *File) { f.ActiveKeyID = "3f2504e0-4f89-41d3-9a0c-0305e82c3399" }), ErrInvalid},
		{"no keys", edit(func(f *File) { f.Keys = nil }), ErrInvalid},
		{"bad DN", edit(func(f *File) { f.Container.DN = "not a DN" }), ErrInvalid},
		{"bad GUID", edit(func(f *File) { f.Manager.GUID = "xyz" }), ErrInvalid},
		{"bad DACL", edit(func(f *File) { f.Container.DACL = "D:(bogus)" }), ErrInvalid},
		{"bad domain SID", edit(func(f *File) { f.Source.DomainSID = "S-1-5-18" }), ErrInvalid},
		{"bad mode", edit(func(f *File) { f.Protection.InAD = "Clear" }), ErrInvalid},
		{"too large", make([]byte, MaxSize+1), ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(tc.in); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzParse: no input makes the parser panic, and whatever it accepts is a consistent backup
// (every key opens to its recorded fingerprint, the active one among them).
func FuzzParse(f *testing.F) {
	valid, _ := json.Marshal(sampleFile(f, "fuzz"))
	f.Add(valid)
	f.Add([]byte(`{"format":"dkm-operator-backup/v1"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Parse(b)
		if err != nil {
			return
		}
		vs, err := got.Versions()
		if err != nil || len(vs) == 0 {
			t.Fatalf("accepted an inconsistent backup: %v", err)
		}
		_ = got.Summary()
	})
}
