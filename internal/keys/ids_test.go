package keys

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

var canonicalV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewKeyIDIsRandomVersion4(t *testing.T) {
	seen := map[KeyID]bool{}
	for range 1000 {
		id, err := NewKeyID()
		if err != nil {
			t.Fatal(err)
		}
		if !canonicalV4.MatchString(id.String()) {
			t.Fatalf("%s is not a lowercase canonical version-4 GUID", id)
		}
		if seen[id] {
			t.Fatalf("%s drawn twice", id)
		}
		seen[id] = true
	}
}

func TestNewKeyIDSetsVersionAndVariantBits(t *testing.T) {
	id, err := newKeyID(fixedReader(make([]byte, 16)))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := id.String(), "00000000-0000-4000-8000-000000000000"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	id, err = newKeyID(fixedReader([]byte(strings.Repeat("\xff", 16))))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := id.String(), "ffffffff-ffff-4fff-bfff-ffffffffffff"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if _, err := newKeyID(fixedReader(make([]byte, 15))); err == nil {
		t.Fatal("a short read gave a key ID")
	}
}

func TestParseKeyID(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "3f2504e0-4f89-41d3-9a0c-0305e82c3301", want: "3f2504e0-4f89-41d3-9a0c-0305e82c3301"},
		{in: "3F2504E0-4F89-41D3-9A0C-0305E82C3301", want: "3f2504e0-4f89-41d3-9a0c-0305e82c3301"},
		{in: "6ba7b810-9dad-11d1-80b4-00c04fd430c8", want: "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}, // version 1 is adopted too
		{in: "", wantErr: true},
		{in: "{3f2504e0-4f89-41d3-9a0c-0305e82c3301}", wantErr: true},
		{in: "3f2504e04f8941d39a0c0305e82c3301", wantErr: true},
		{in: "3f2504e0-4f89-41d3-9a0c-0305e82c330", wantErr: true},
		{in: "3f2504e0-4f89-41d3-9a0c_0305e82c3301", wantErr: true},
		{in: "3f2504e0-4f89-41d3-9a0c-0305e82c330g", wantErr: true},
		{in: "+f2504e0-4f89-41d3-9a0c-0305e82c3301", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			id, err := ParseKeyID(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidKeyID) {
					t.Fatalf("got %v, want ErrInvalidKeyID", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.String() != tt.want {
				t.Fatalf("got %s, want %s", id, tt.want)
			}
			var round KeyID
			if err := round.UnmarshalText([]byte(id.String())); err != nil || round != id {
				t.Fatalf("text round trip gave %s, %v", round, err)
			}
		})
	}
}

func TestKeyIDUnmarshalTextRefusesGarbage(t *testing.T) {
	id := testKeyID
	if err := id.UnmarshalText([]byte("nope")); !errors.Is(err, ErrInvalidKeyID) || id != testKeyID {
		t.Fatalf("got %v and %s", err, id)
	}
}

func TestParseKeyIDShortensGarbageInMessages(t *testing.T) {
	_, err := ParseKeyID(strings.Repeat("x", 10000))
	if err == nil || len(err.Error()) > 200 {
		t.Fatalf("message of %d bytes", len(err.Error()))
	}
}

func TestObjectGUIDByteOrder(t *testing.T) {
	g, err := ParseObjectGUID("00112233-4455-6677-8899-AABBCCDDEEFF")
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	if string(g[:]) != string(want) {
		t.Fatalf("wire bytes % x, want % x", g[:], want)
	}
	if g.String() != "00112233-4455-6677-8899-aabbccddeeff" {
		t.Fatalf("text %s", g)
	}
	if text, _ := g.MarshalText(); string(text) != g.String() {
		t.Fatalf("MarshalText gave %s", text)
	}
	fromBytes, err := ObjectGUIDFromBytes(want)
	if err != nil || fromBytes != g {
		t.Fatalf("ObjectGUIDFromBytes gave %s, %v", fromBytes, err)
	}
	if _, err := ObjectGUIDFromBytes(want[:15]); !errors.Is(err, ErrInvalidObjectGUID) {
		t.Fatalf("15 bytes: got %v", err)
	}
	if _, err := ParseObjectGUID("not a guid"); !errors.Is(err, ErrInvalidObjectGUID) {
		t.Fatalf("bad text: got %v", err)
	}
}
