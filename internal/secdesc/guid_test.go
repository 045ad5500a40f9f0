package secdesc

import (
	"encoding/hex"
	"strings"
	"testing"
)

func TestGUID(t *testing.T) {
	tests := []struct {
		text    string
		wire    string // hex of the mixed-endian binary form
		want    string // String(); "" means same as text
		wantErr string
	}{
		{text: "b7c69e6d-2cc7-11d2-854e-00a0c983f608", wire: "6d9ec6b7c72cd211854e00a0c983f608"},
		{text: "bf967aba-0de6-11d0-a285-00aa003049e2", wire: "ba7a96bfe60dd011a28500aa003049e2"},
		{text: "BF967A9C-0DE6-11D0-A285-00AA003049E2", wire: "9c7a96bfe60dd011a28500aa003049e2", want: "bf967a9c-0de6-11d0-a285-00aa003049e2"},
		{text: "00000000-0000-0000-0000-000000000000", wire: strings.Repeat("00", 16)},
		{text: "{bf967aba-0de6-11d0-a285-00aa003049e2}", wantErr: "want the form"},
		{text: "bf967aba0de611d0a28500aa003049e2", wantErr: "want the form"},
		{text: "bf967aba-0de6-11d0-a285-00aa003049eg", wantErr: "invalid byte"},
		{text: "bf967aba-0de6-11d0-a285+00aa003049e2", wantErr: "want the form"},
		{text: "", wantErr: "want the form"},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			g, err := ParseGUID(tt.text)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseGUID(%q) error = %v, want one containing %q", tt.text, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if want == "" {
				want = tt.text
			}
			if g.String() != want {
				t.Errorf("String() = %q, want %q", g, want)
			}
			if got := hex.EncodeToString(g.Bytes()); got != tt.wire {
				t.Errorf("Bytes() = %s, want %s", got, tt.wire)
			}
			wire, _ := hex.DecodeString(tt.wire)
			back, err := GUIDFromBytes(wire)
			if err != nil || back != g {
				t.Errorf("GUIDFromBytes = %v, %v; want %v", back, err, g)
			}
		})
	}
	if _, err := GUIDFromBytes(make([]byte, 15)); err == nil {
		t.Error("GUIDFromBytes accepted 15 bytes")
	}
	if !(GUID{}).IsZero() || GUIDClassUser.IsZero() {
		t.Error("IsZero is wrong")
	}
}
