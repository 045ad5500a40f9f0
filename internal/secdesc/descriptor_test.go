package secdesc

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// unhex decodes hex written with spaces and newlines.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex in test: %v", err)
	}
	return b
}

// msdtypExample is the self-relative descriptor of the worked example in
// [MS-DTYP] 2.5.1.4, as Windows encodes
// O:BAG:BAD:P(A;CIOI;GRGX;;;BU)(A;CIOI;GA;;;BA)(A;CIOI;GA;;;SY)(A;CIOI;GA;;;CO)S:P(AU;FA;GR;;;WD)
// with SACL, DACL, owner, group in that order.
const msdtypExample = `
01 00 14 b0 90 00 00 00 a0 00 00 00 14 00 00 00
30 00 00 00 02 00 1c 00 01 00 00 00 02 80 14 00
00 00 00 80 01 01 00 00 00 00 00 01 00 00 00 00
02 00 60 00 04 00 00 00 00 03 18 00 00 00 00 a0
01 02 00 00 00 00 00 05 20 00 00 00 21 02 00 00
00 03 18 00 00 00 00 10 01 02 00 00 00 00 00 05
20 00 00 00 20 02 00 00 00 03 14 00 00 00 00 10
01 01 00 00 00 00 00 05 12 00 00 00 00 03 14 00
00 00 00 10 01 01 00 00 00 00 00 03 00 00 00 00
01 02 00 00 00 00 00 05 20 00 00 00 20 02 00 00
01 02 00 00 00 00 00 05 20 00 00 00 20 02 00 00`

func TestParseDescriptorWindowsExample(t *testing.T) {
	raw := unhex(t, msdtypExample)
	sd, err := ParseDescriptor(raw)
	if err != nil {
		t.Fatal(err)
	}
	if sd.Layout != LayoutWindows {
		t.Errorf("Layout = %v, want LayoutWindows %v", sd.Layout, LayoutWindows)
	}
	if sd.DACL.Revision != ACLRevisionNT || sd.SACL.Revision != ACLRevisionNT {
		t.Errorf("ACL revisions = %d, %d; want 2, 2", sd.DACL.Revision, sd.SACL.Revision)
	}
	got, err := sd.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, raw) {
		t.Errorf("MarshalBinary is not exact:\n got %x\nwant %x", got, raw)
	}
	const wantSDDL = "O:BAG:BAD:P(A;OICI;GXGR;;;BU)(A;OICI;GA;;;BA)(A;OICI;GA;;;SY)(A;OICI;GA;;;CO)S:P(AU;FA;GR;;;WD)"
	if s := FormatSDDL(sd, WellKnownAliases); s != wantSDDL {
		t.Errorf("FormatSDDL = %s\nwant %s", s, wantSDDL)
	}
	// The same descriptor in Samba's order differs only in its layout.
	sd.Layout = LayoutSamba
	samba, err := sd.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(samba, raw) || len(samba) != len(raw) {
		t.Errorf("Samba layout should move the parts, not change the size")
	}
	back, err := ParseDescriptor(samba)
	if err != nil {
		t.Fatal(err)
	}
	if back.Layout != (Layout{}) {
		t.Errorf("Samba order should parse to the zero Layout, got %v", back.Layout)
	}
	if !back.Equal(sd) {
		t.Error("re-parsed Samba-order descriptor differs")
	}
}

// TestExactRoundTripOddities covers what real producers may emit that the
// model keeps only for exactness: ACE padding, ACL slack, reserved fields,
// ACE types this package does not model, and an unusual part order.
func TestExactRoundTripOddities(t *testing.T) {
	tests := []struct {
		name  string
		hex   string
		check func(t *testing.T, sd *SecurityDescriptor)
	}{
		{
			name: "padded ACE, ACL slack, Sbz fields, opaque mandatory-label ACE",
			hex: `01 07 04 84 00 00 00 00 00 00 00 00 00 00 00 00 14 00 00 00
			      04 09 38 00 02 00 0b 00
			      00 02 18 00 ff 01 0f 00 01 01 00 00 00 00 00 05 12 00 00 00 aa bb cc dd
			      11 00 14 00 01 00 00 00 01 01 00 00 00 00 00 10 00 30 00 00
			      ee ee ee ee`,
			check: func(t *testing.T, sd *SecurityDescriptor) {
				if sd.Sbz1 != 7 || len(sd.DACL.ACEs) != 2 {
					t.Fatalf("Sbz1 = %d, %d ACEs", sd.Sbz1, len(sd.DACL.ACEs))
				}
				a, ml := sd.DACL.ACEs[0], sd.DACL.ACEs[1]
				if a.SID != SIDLocalSystem || a.Mask != RightsFullControl || a.Flags != ACEFlagContainerInherit {
					t.Errorf("first ACE = %+v", a)
				}
				if ml.Type != 0x11 || ml.Type.Modelled() || len(ml.Opaque) != 16 {
					t.Errorf("mandatory label ACE = %+v", ml)
				}
				if got := FormatDACL(sd, WellKnownAliases); got != "D:AI(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;SY)(0x11;;;;;#01000000010100000000001000300000)" {
					t.Errorf("FormatDACL = %s", got)
				}
			},
		},
		{
			name: "group before owner, DACL before both, object ACE with inherited type only",
			hex: `01 00 04 80 54 00 00 00 44 00 00 00 00 00 00 00 14 00 00 00
			      04 00 30 00 01 00 00 00
			      05 02 28 00 10 00 00 00 02 00 00 00 ba 7a 96 bf e6 0d d0 11 a2 85 00 aa 00 30 49 e2 01 01 00 00 00 00 00 05 09 00 00 00
			      01 02 00 00 00 00 00 05 20 00 00 00 20 02 00 00
			      01 01 00 00 00 00 00 05 12 00 00 00`,
			check: func(t *testing.T, sd *SecurityDescriptor) {
				if want := (Layout{PartDACL, PartGroup, PartOwner, PartSACL}); sd.Layout != want {
					t.Errorf("Layout = %v, want %v", sd.Layout, want)
				}
				a := sd.DACL.ACEs[0]
				if a.ObjectFlags != InheritedObjectTypePresent || a.InheritedObjectType != GUIDClassUser || !a.ObjectType.IsZero() {
					t.Errorf("object ACE = %+v", a)
				}
				if got := FormatSDDL(sd, WellKnownAliases); got != "O:SYG:BAD:(OA;CI;RP;;bf967aba-0de6-11d0-a285-00aa003049e2;ED)" {
					t.Errorf("FormatSDDL = %s", got)
				}
			},
		},
		{
			name: "NULL DACL: present flag, no offset",
			hex:  `01 00 04 80 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00`,
			check: func(t *testing.T, sd *SecurityDescriptor) {
				if sd.DACL != nil || sd.Control&ControlDACLPresent == 0 {
					t.Errorf("want a NULL DACL, got %+v", sd)
				}
				if got := FormatSDDL(sd, WellKnownAliases); got != "D:NO_ACCESS_CONTROL" {
					t.Errorf("FormatSDDL = %s", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := unhex(t, tt.hex)
			sd, err := ParseDescriptor(raw)
			if err != nil {
				t.Fatal(err)
			}
			got, err := sd.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, raw) {
				t.Errorf("MarshalBinary is not exact:\n got %x\nwant %x", got, raw)
			}
			tt.check(t, sd)
			if c := sd.Clone(); !c.Equal(sd) {
				t.Error("Clone differs")
			}
		})
	}
}

func TestParseDescriptorErrors(t *testing.T) {
	tests := []struct {
		name    string
		hex     string
		wantErr string
	}{
		{"empty", ``, "0 bytes"},
		{"short header", `01 00 04 80 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00`, "header alone is 20"},
		{"revision 2", `02 00 04 80 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00`, "revision 2 at offset 0"},
		{"absolute form", `01 00 04 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00`, "lacks SE_SELF_RELATIVE"},
		{"owner offset into header", `01 00 00 80 04 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00`, "owner offset 4 (at offset 4)"},
		{"group offset past end", `01 00 00 80 00 00 00 00 ff ff ff ff 00 00 00 00 00 00 00 00`, "group offset 4294967295 (at offset 8)"},
		{"owner SID truncated", `01 00 00 80 14 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 01 00 00 00 00 00 05 12`, "owner: SID at offset 20: 1 sub-authorities need 12 bytes, 9 available"},
		{"ACL header truncated", `01 00 04 80 00 00 00 00 00 00 00 00 00 00 00 00 14 00 00 00 04 00 08 00`, "need an 8-byte header, 4 bytes available"},
		{"ACL revision 5", `01 00 04 80 00 00 00 00 00 00 00 00 00 00 00 00 14 00 00 00 05 00 08 00 00 00 00 00`, "revision 5"},
		{"AclSize below header", `01 00 04 80 00 00 00 00 00 00 00 00 00 00 00 00 14 00 00 00 04 00 04 00 00 00 00 00`, "AclSize 4 is smaller"},
		{"AclSize overrun", `01 00 04 80 00 00 00 00 00 00 00 00 00 00 00 00 14 00 00 00 04 00 10 00 00 00 00 00`, "AclSize 16 overruns the descriptor (8 bytes left)"},
		{"AceCount too high", `01 00 04 80 00 00 00 00 00 00 00 00 00 00 00 00 14 00 00 00 04 00 08 00 01 00 00 00`, "ACE 0 of 1: ACE at offset 28: need a 4-byte header, 0 bytes left"},
		{"AceSize below header", `01 00 04 80 00 00 00 00 00 00 00 00 00 00 00 00 14 00 00 00 04 00 0c 00 01 00 00 00 00 00 02 00`, "AceSize 2 is smaller"},
		{"AceSize overruns ACL", `01 00 04 80 00 00 00 00 00 00 00 00 00 00 00 00 14 00 00 00 04 00 0c 00 01 00 00 00 00 00 14 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00`, "AceSize 20 overruns the ACL (4 bytes left)"},
		{"no room for mask", `01 00 04 80 00 00 00 00 00 00 00 00 00 00 00 00 14 00 00 00 04 00 0c 00 01 00 00 00 00 00 04 00`, "no room for the access mask"},
		{"SID overruns AceSize", `01 00 04 80 00 00 00 00 00 00 00 00 00 00 00 00 14 00 00 00 04 00 18 00 01 00 00 00 00 00 10 00 ff 01 0f 00 01 01 00 00 00 00 00 05 12 00 00 00`, "ACE at offset 28: SID at offset 36: 1 sub-authorities need 12 bytes, 8 available"},
		{"object GUID overruns AceSize", `01 00 04 80 00 00 00 00 00 00 00 00 00 00 00 00 14 00 00 00 04 00 18 00 01 00 00 00 05 00 10 00 10 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00`, "ObjectType at offset 40 overruns AceSize 16"},
		{"object ACE in revision 2 ACL", `01 00 04 80 00 00 00 00 00 00 00 00 00 00 00 00 14 00 00 00 02 00 20 00 01 00 00 00 05 00 18 00 10 00 00 00 00 00 00 00 01 01 00 00 00 00 00 05 12 00 00 00`, "object ACE in an ACL of revision 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDescriptor(unhex(t, tt.hex))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	sy := SIDLocalSystem
	tests := []struct {
		name    string
		sd      *SecurityDescriptor
		wantErr string
	}{
		{"bad layout", &SecurityDescriptor{Layout: Layout{PartOwner, PartOwner, PartSACL, PartDACL}}, "not a permutation"},
		{"ACL revision 0", &SecurityDescriptor{DACL: &ACL{}}, "ACL revision 0"},
		{"object ACE in revision 2", &SecurityDescriptor{DACL: &ACL{Revision: ACLRevisionNT, ACEs: []ACE{NewObjectACE(ACETypeAccessAllowedObject, 0, RightReadProperty, sy, GUIDTokenGroups, GUID{})}}}, "object ACE in an ACL of revision 2"},
		{"ACE without SID", &SecurityDescriptor{DACL: NewACL(ACE{Type: ACETypeAccessAllowed, Mask: 1})}, "ACE 0: ACE has no SID"},
		{"GUID without flag", &SecurityDescriptor{DACL: NewACL(ACE{Type: ACETypeAccessAllowedObject, SID: sy, ObjectType: GUIDTokenGroups})}, "not the ObjectTypePresent flag"},
		{"inherited GUID without flag", &SecurityDescriptor{DACL: NewACL(ACE{Type: ACETypeAccessAllowedObject, SID: sy, InheritedObjectType: GUIDClassUser})}, "not the InheritedObjectTypePresent flag"},
		{"GUID on a non-object ACE", &SecurityDescriptor{DACL: NewACL(ACE{Type: ACETypeAccessAllowed, SID: sy, ObjectFlags: ObjectTypePresent})}, "not an object ACE"},
		{"opaque on a modelled ACE", &SecurityDescriptor{DACL: NewACL(ACE{Type: ACETypeAccessAllowed, SID: sy, Opaque: []byte{1}})}, "Opaque must be nil"},
		{"mask on an opaque ACE", &SecurityDescriptor{DACL: NewACL(ACE{Type: 0x11, Mask: 1})}, "kept as opaque bytes"},
		{"SACL too big", &SecurityDescriptor{SACL: NewACL(ACE{Type: 0x11, Opaque: make([]byte, 70000)})}, "SACL: ACL is 70012 bytes"},
		{"ACL too big", &SecurityDescriptor{DACL: NewACL(ACE{Type: 0x11, Opaque: make([]byte, 40000)}, ACE{Type: 0x11, Opaque: make([]byte, 40000)})}, "ACL is 80016 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.sd.MarshalBinary()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestTruncationsNeverPanic parses every prefix of a real descriptor.
func TestTruncationsNeverPanic(t *testing.T) {
	for _, raw := range [][]byte{unhex(t, msdtypExample), sambaCaptures(t)[0].raw} {
		for n := range len(raw) {
			if sd, err := ParseDescriptor(raw[:n]); err == nil {
				// A prefix can only parse if every part still fits.
				if _, err := sd.MarshalBinary(); err != nil {
					t.Errorf("prefix %d parsed but does not marshal: %v", n, err)
				}
			}
		}
	}
}

func TestUnmarshalBinary(t *testing.T) {
	raw := unhex(t, msdtypExample)
	var sd SecurityDescriptor
	if err := sd.UnmarshalBinary(raw); err != nil {
		t.Fatal(err)
	}
	if sd.Owner != SIDBuiltinAdministrators {
		t.Errorf("Owner = %v", sd.Owner)
	}
	if err := sd.UnmarshalBinary(raw[:10]); err == nil {
		t.Error("UnmarshalBinary accepted 10 bytes")
	}
}
