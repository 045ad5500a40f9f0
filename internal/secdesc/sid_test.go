package secdesc

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
)

func TestParseSID(t *testing.T) {
	tests := []struct {
		text    string
		want    string // String() after parsing; "" means same as text
		binary  string // hex of Bytes()
		wantErr string
	}{
		{text: "S-1-5-18", binary: "010100000000000512000000"},
		{text: "S-1-5-32-544", binary: "01020000000000052000000020020000"},
		{text: "S-1-1-0", binary: "010100000000000100000000"},
		{text: "S-1-5", binary: "0100000000000005"},
		{text: "S-1-5-21-3806445398-3301722994-3862911772-512",
			binary: "01050000000000051500000056bfe1e2724bccc41c5b3fe600020000"},
		{text: "S-1-0x0000DEADBEEF-1", want: "S-1-3735928559-1", binary: "01010000deadbeef01000000"},
		{text: "S-1-0xdeadbeef-1", want: "S-1-3735928559-1", binary: "01010000deadbeef01000000"},
		{text: "S-1-0x10000000000-7", want: "S-1-0x010000000000-7", binary: "0101010000000000" + "07000000"},
		{text: "S-1-5-0004294967295", want: "S-1-5-4294967295", binary: "0101000000000005ffffffff"},
		{text: "S-1-281474976710655", want: "S-1-0xFFFFFFFFFFFF", binary: "0100ffffffffffff"},
		{text: "S-1-5-1-2-3-4-5-6-7-8-9-10-11-12-13-14-15", binary: ""},
		{text: "S-1-5-1-2-3-4-5-6-7-8-9-10-11-12-13-14-15-16", wantErr: "at most 15"},
		{text: "S-1-5-4294967296", wantErr: "out of range"},
		{text: "S-1-281474976710656", wantErr: "out of range"},
		{text: "S-2-5-18", wantErr: "must start with"},
		{text: "s-1-5-18", wantErr: "must start with"},
		{text: "S-1-", wantErr: "empty number"},
		{text: "S-1-5-", wantErr: "empty number"},
		{text: "S-1-5--1", wantErr: "empty number"},
		{text: "S-1-5-+1", wantErr: "not a base-10"},
		{text: "S-1-5-1_0", wantErr: "not a base-10"},
		{text: "S-1-0x", wantErr: "empty number"},
		{text: "", wantErr: "must start with"},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			s, err := ParseSID(tt.text)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSID(%q) error = %v, want one containing %q", tt.text, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSID(%q): %v", tt.text, err)
			}
			want := tt.want
			if want == "" {
				want = tt.text
			}
			if got := s.String(); got != want {
				t.Errorf("String() = %q, want %q", got, want)
			}
			if tt.binary != "" {
				if got := hex.EncodeToString(s.Bytes()); got != tt.binary {
					t.Errorf("Bytes() = %s, want %s", got, tt.binary)
				}
			}
			back, err := SIDFromBytes(s.Bytes())
			if err != nil || back != s {
				t.Errorf("SIDFromBytes(Bytes()) = %v, %v; want %v", back, err, s)
			}
			if s.Len() != len(s.Bytes()) {
				t.Errorf("Len() = %d, len(Bytes()) = %d", s.Len(), len(s.Bytes()))
			}
		})
	}
}

func TestSIDFromBytesErrors(t *testing.T) {
	tests := []struct {
		name    string
		hex     string
		wantErr string
	}{
		{"empty", "", "need 8 header bytes, 0 available"},
		{"short header", "01010000000005", "need 8 header bytes, 7 available"},
		{"revision 2", "020100000000000512000000", "revision 2"},
		{"16 sub-authorities", "0110000000000005" + strings.Repeat("00000000", 16), "16 sub-authorities"},
		{"truncated sub-authority", "01020000000000052000000020", "need 16 bytes, 13 available"},
		{"trailing byte", "01010000000000051200000000", "1 trailing bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := hex.DecodeString(tt.hex)
			_, err := SIDFromBytes(b)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("SIDFromBytes(%s) error = %v, want one containing %q", tt.hex, err, tt.wantErr)
			}
		})
	}
}

func TestZeroSID(t *testing.T) {
	var z SID
	if !z.IsZero() || z.String() != "" || z.Len() != 0 || len(z.Bytes()) != 0 {
		t.Errorf("zero SID: IsZero=%v String=%q Len=%d Bytes=%x", z.IsZero(), z, z.Len(), z.Bytes())
	}
	// S-1-0 (no sub-authorities, authority 0) is a real SID, not the zero value.
	s := MustParseSID("S-1-0")
	if s.IsZero() || s == z {
		t.Errorf("S-1-0 must differ from the zero SID")
	}
}

func TestDomainRelativeSID(t *testing.T) {
	domain := MustParseSID("S-1-5-21-1-2-3")
	da, err := DomainRelativeSID(domain, RIDDomainAdmins)
	if err != nil || da.String() != "S-1-5-21-1-2-3-512" {
		t.Fatalf("DomainRelativeSID = %v, %v", da, err)
	}
	d, rid, ok := da.SplitDomainRID()
	if !ok || d != domain || rid != 512 {
		t.Errorf("SplitDomainRID = %v, %d, %v", d, rid, ok)
	}
	for _, notDomain := range []string{"S-1-5-32", "S-1-5-21-1-2", "S-1-5-21-1-2-3-4", "S-1-5-22-1-2-3", "S-1-3-21-1-2-3"} {
		if _, err := DomainRelativeSID(MustParseSID(notDomain), 500); err == nil {
			t.Errorf("DomainRelativeSID(%s) succeeded, want an error", notDomain)
		}
	}
	for _, notAccount := range []string{"S-1-5-32-544", "S-1-5-21-1-2-3", "S-1-5-21-1-2-3-4-5"} {
		if _, _, ok := MustParseSID(notAccount).SplitDomainRID(); ok {
			t.Errorf("SplitDomainRID(%s) ok, want not ok", notAccount)
		}
	}
}

func TestSIDAccessorsAndText(t *testing.T) {
	s := MustParseSID("S-1-5-21-1-2-3-1105")
	if s.Authority() != 5 {
		t.Errorf("Authority() = %d", s.Authority())
	}
	sub := s.SubAuthorities()
	sub[0] = 99 // a copy: must not change s
	if got := s.SubAuthorities(); got[0] != 21 || len(got) != 5 {
		t.Errorf("SubAuthorities() = %v", got)
	}
	type doc struct {
		SID  SID  `json:"sid"`
		None SID  `json:"none"`
		GUID GUID `json:"guid"`
	}
	in := doc{SID: s, GUID: GUIDClassUser}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"sid":"S-1-5-21-1-2-3-1105","none":"","guid":"bf967aba-0de6-11d0-a285-00aa003049e2"}`
	if !bytes.Equal(b, []byte(want)) {
		t.Errorf("json = %s, want %s", b, want)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Errorf("json round trip = %+v, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`{"sid":"S-1-x"}`), &out); err == nil {
		t.Error("bad SID in JSON accepted")
	}
}
