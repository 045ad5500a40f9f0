package secdesc

import (
	"strings"
	"testing"
)

var (
	testDomain = MustParseSID("S-1-5-21-1-2-3")
	testForest = MustParseSID("S-1-5-21-7-8-9")
)

func TestFormatMask(t *testing.T) {
	tests := []struct {
		mask AccessMask
		want string
	}{
		{0, "0x0"},
		{RightsFullControl, "CCDCLCSWRPWPDTLOCRSDRCWDWO"},
		{RightsAllButDelete, "CCDCLCSWRPWPLOCRRCWDWO"},
		{RightReadProperty | RightListChildren | RightListObject | RightReadControl, "LCRPLORC"},
		{RightGenericAll, "GA"},
		{RightGenericRead | RightGenericExecute, "GXGR"},
		{RightSynchronize, "0x100000"},
		{RightsFullControl | RightSynchronize, "0x1f01ff"},
		{0x200, "0x200"},
	}
	for _, tt := range tests {
		if got := FormatMask(tt.mask); got != tt.want {
			t.Errorf("FormatMask(%#x) = %q, want %q", uint32(tt.mask), got, tt.want)
		}
		if got, err := parseMask(tt.want); err != nil || got != tt.mask {
			t.Errorf("parseMask(%q) = %#x, %v; want %#x", tt.want, uint32(got), err, uint32(tt.mask))
		}
	}
}

func TestFormatACEFlags(t *testing.T) {
	tests := []struct {
		flags ACEFlags
		want  string
	}{
		{0, ""},
		{ACEFlagContainerInherit | ACEFlagInheritOnly, "CIIO"},
		{ACEFlagObjectInherit | ACEFlagContainerInherit, "OICI"},
		{ACEFlagContainerInherit | ACEFlagInheritOnly | ACEFlagInherited | ACEFlagSuccessfulAccess, "CIIOIDSA"},
		{0xDF, "OICINPIOIDSAFA"},
		{0x20, "0x20"},
		{0x22, "0x22"},
	}
	for _, tt := range tests {
		if got := FormatACEFlags(tt.flags); got != tt.want {
			t.Errorf("FormatACEFlags(%#x) = %q, want %q", uint8(tt.flags), got, tt.want)
		}
		if got, err := parseACEFlags(tt.want); err != nil || got != tt.flags {
			t.Errorf("parseACEFlags(%q) = %#x, %v", tt.want, uint8(got), err)
		}
	}
}

func TestSIDAliases(t *testing.T) {
	da := MustParseSID("S-1-5-21-1-2-3-512")
	ea := MustParseSID("S-1-5-21-7-8-9-519")
	eaOfDomain := MustParseSID("S-1-5-21-1-2-3-519")
	other := MustParseSID("S-1-5-21-4-5-6-512")
	tests := []struct {
		name    string
		aliases Aliases
		sid     SID
		want    string
	}{
		{"fixed alias", WellKnownAliases, SIDLocalSystem, "SY"},
		{"fixed alias EDC", WellKnownAliases, SIDEnterpriseDomainControllers, "ED"},
		{"fixed alias AU", WellKnownAliases, SIDAuthenticatedUsers, "AU"},
		{"plain", PlainSIDs, SIDBuiltinAdministrators, "S-1-5-32-544"},
		{"domain alias needs the domain", WellKnownAliases, da, "S-1-5-21-1-2-3-512"},
		{"domain alias", DomainAliases(testDomain, testForest), da, "DA"},
		{"forest alias", DomainAliases(testDomain, testForest), ea, "EA"},
		{"519 of a child domain is not EA", DomainAliases(testDomain, testForest), eaOfDomain, "S-1-5-21-1-2-3-519"},
		{"other domain", DomainAliases(testDomain, testForest), other, "S-1-5-21-4-5-6-512"},
		{"no alias for this RID", DomainAliases(testDomain, testForest), MustParseSID("S-1-5-21-1-2-3-1105"), "S-1-5-21-1-2-3-1105"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.aliases.formatSID(tt.sid); got != tt.want {
				t.Errorf("formatSID = %q, want %q", got, tt.want)
			}
			back, err := tt.aliases.parseSID(tt.want)
			if err != nil || back != tt.sid {
				t.Errorf("parseSID(%q) = %v, %v; want %v", tt.want, back, err, tt.sid)
			}
		})
	}
}

func TestParseSDDL(t *testing.T) {
	sy := SIDLocalSystem
	tests := []struct {
		name    string
		sddl    string
		aliases Aliases
		want    *SecurityDescriptor
		format  string // FormatSDDL(want, aliases); "" means same as sddl
	}{
		{
			name: "empty", sddl: "",
			want: &SecurityDescriptor{Control: ControlSelfRelative},
		},
		{
			name: "owner and group only", sddl: "O:DAG:DA", aliases: DomainAliases(testDomain, testForest),
			want: &SecurityDescriptor{Control: ControlSelfRelative, Owner: MustParseSID("S-1-5-21-1-2-3-512"), Group: MustParseSID("S-1-5-21-1-2-3-512")},
		},
		{
			name: "empty protected DACL", sddl: "D:PAI",
			want: &SecurityDescriptor{Control: ControlSelfRelative | ControlDACLPresent | ControlDACLProtected | ControlDACLAutoInherited, DACL: NewACL()},
		},
		{
			name: "flags in another order", sddl: "D:AIARP", format: "D:PARAI",
			want: &SecurityDescriptor{Control: ControlSelfRelative | ControlDACLPresent | ControlDACLProtected | ControlDACLAutoInherited | ControlDACLAutoInheritReq, DACL: NewACL()},
		},
		{
			name: "NULL DACL", sddl: "D:PNO_ACCESS_CONTROL",
			want: &SecurityDescriptor{Control: ControlSelfRelative | ControlDACLPresent | ControlDACLProtected},
		},
		{
			name: "Windows style rights and flags", sddl: "D:(A;CIOI;GRGX;;;BU)(A;;FA;;;SY)(D;;0x10;;;WD)(A;;16;;;AU)",
			format: "D:(A;OICI;GXGR;;;BU)(A;;0x1f01ff;;;SY)(D;;RP;;;WD)(A;;RP;;;AU)",
			want: &SecurityDescriptor{Control: ControlSelfRelative | ControlDACLPresent, DACL: NewACL(
				NewACE(ACETypeAccessAllowed, ACEFlagObjectInherit|ACEFlagContainerInherit, RightGenericRead|RightGenericExecute, MustParseSID("S-1-5-32-545")),
				NewACE(ACETypeAccessAllowed, 0, 0x1F01FF, sy),
				NewACE(ACETypeAccessDenied, 0, RightReadProperty, SIDEveryone),
				NewACE(ACETypeAccessAllowed, 0, RightReadProperty, SIDAuthenticatedUsers),
			)},
		},
		{
			name: "object ACEs, upper-case GUID", sddl: "D:(OA;;CR;1131F6AA-9C07-11D1-F79F-00C04FC2DCD2;;ED)(OD;CI;WP;;bf967aba-0de6-11d0-a285-00aa003049e2;S-1-5-21-1-2-3-1105)",
			format: "D:(OA;;CR;1131f6aa-9c07-11d1-f79f-00c04fc2dcd2;;ED)(OD;CI;WP;;bf967aba-0de6-11d0-a285-00aa003049e2;S-1-5-21-1-2-3-1105)",
			want: &SecurityDescriptor{Control: ControlSelfRelative | ControlDACLPresent, DACL: NewACL(
				NewObjectACE(ACETypeAccessAllowedObject, 0, RightControlAccess, SIDEnterpriseDomainControllers, MustParseGUID("1131f6aa-9c07-11d1-f79f-00c04fc2dcd2"), GUID{}),
				NewObjectACE(ACETypeAccessDeniedObject, ACEFlagContainerInherit, RightWriteProperty, MustParseSID("S-1-5-21-1-2-3-1105"), GUID{}, GUIDClassUser),
			)},
		},
		{
			name: "SACL with audit ACEs, opaque ACE", sddl: "O:SYS:AI(AU;SA;WPCCDCWOWDSDDTSW;;;WD)(OU;CIIOIDSA;WP;f30e3bbe-9ff0-11d1-b603-0000f80367c1;bf967aa5-0de6-11d0-a285-00aa003049e2;WD)(0x11;;;;;#0100000001010000)(0x13;0x20;;;;#)",
			format: "O:SYS:AI(AU;SA;CCDCSWWPDTSDWDWO;;;WD)(OU;CIIOIDSA;WP;f30e3bbe-9ff0-11d1-b603-0000f80367c1;bf967aa5-0de6-11d0-a285-00aa003049e2;WD)(0x11;;;;;#0100000001010000)(0x13;0x20;;;;#)",
			want: &SecurityDescriptor{Control: ControlSelfRelative | ControlSACLPresent | ControlSACLAutoInherited, Owner: sy, SACL: NewACL(
				NewACE(ACETypeSystemAudit, ACEFlagSuccessfulAccess, 0xD006B, SIDEveryone),
				NewObjectACE(ACETypeSystemAuditObject, 0x5A, RightWriteProperty, SIDEveryone, MustParseGUID("f30e3bbe-9ff0-11d1-b603-0000f80367c1"), MustParseGUID("bf967aa5-0de6-11d0-a285-00aa003049e2")),
				ACE{Type: 0x11, Opaque: []byte{1, 0, 0, 0, 1, 1, 0, 0}},
				ACE{Type: 0x13, Flags: 0x20},
			)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSDDL(tt.sddl, tt.aliases)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("ParseSDDL(%q)\n got %s\nwant %s", tt.sddl, got, tt.want)
			}
			format := tt.format
			if format == "" {
				format = tt.sddl
			}
			if s := FormatSDDL(tt.want, tt.aliases); s != format {
				t.Errorf("FormatSDDL = %s\nwant         %s", s, format)
			}
			// Parse(Format(x)) == x, and the result marshals to binary and back.
			back, err := ParseSDDL(FormatSDDL(tt.want, tt.aliases), tt.aliases)
			if err != nil || !back.Equal(tt.want) {
				t.Errorf("Parse(Format(x)) = %v, %v", back, err)
			}
			raw, err := back.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if bin, err := ParseDescriptor(raw); err != nil || !bin.Equal(back) {
				t.Errorf("binary round trip of the parsed SDDL = %v, %v", bin, err)
			}
		})
	}
}

func TestParseSDDLErrors(t *testing.T) {
	tests := []struct {
		sddl    string
		aliases Aliases
		wantErr string
	}{
		{"X:", WellKnownAliases, "want O:, G:, D: or S:"},
		{"D", WellKnownAliases, "want O:, G:, D: or S:"},
		{"d:", WellKnownAliases, "want O:, G:, D: or S:"},
		{"O:SYO:SY", WellKnownAliases, "O: appears twice"},
		{"O:G:SY", WellKnownAliases, `unknown SID or alias ""`},
		{"O::", WellKnownAliases, "empty O: value"},
		{"O:", WellKnownAliases, "unknown SID or alias"},
		{"O:DA", WellKnownAliases, "Aliases.Domain is not set"},
		{"O:EA", DomainAliases(testDomain, SID{}), "Aliases.ForestRoot is not set"},
		{"O:XX", WellKnownAliases, `unknown SID or alias "XX"`},
		{"O:S-1-5-x", WellKnownAliases, "not a base-10"},
		{"D:Q", WellKnownAliases, "want '(' to start an ACE"},
		{"D:(A;;RP;;;SY", WellKnownAliases, "missing its ')'"},
		{"D:(A;;RP;;SY)", WellKnownAliases, "5 fields, want 6"},
		{`D:(XA;;RP;;;SY;(Member_of {SID(BA)}))`, WellKnownAliases, "ACE"},
		{"D:(ZZ;;RP;;;SY)", WellKnownAliases, `unsupported ACE type "ZZ"`},
		{"D:(A;XX;RP;;;SY)", WellKnownAliases, `unknown ACE flag "XX"`},
		{"D:(A;C;RP;;;SY)", WellKnownAliases, "two-letter flags"},
		{"D:(A;;RQ;;;SY)", WellKnownAliases, `unknown right "RQ"`},
		{"D:(A;;R;;;SY)", WellKnownAliases, "two-letter rights"},
		{"D:(A;;0x1ffffffff;;;SY)", WellKnownAliases, "out of range"},
		{"D:(A;;0xg;;;SY)", WellKnownAliases, "not a base-16"},
		{"D:(A;;RP;bf967aba-0de6-11d0-a285-00aa003049e2;;SY)", WellKnownAliases, "A ACEs carry no object GUIDs"},
		{"D:(OA;;RP;bf967aba;;SY)", WellKnownAliases, "want the form"},
		{"D:(0x00;;;;;#)", WellKnownAliases, "has a letter form"},
		{"D:(0x11;;RP;;;#)", WellKnownAliases, "(0xTT;flags;;;;#hexbody)"},
		{"D:(0x11;;;;;SY)", WellKnownAliases, "(0xTT;flags;;;;#hexbody)"},
		{"D:(0x11;;;;;#abc)", WellKnownAliases, "odd length"},
		{"D:(0x111;;;;;#)", WellKnownAliases, "out of range"},
		{"D:(A;;RP;;;SY)junk", WellKnownAliases, "want '(' to start an ACE"},
	}
	for _, tt := range tests {
		t.Run(tt.sddl, func(t *testing.T) {
			_, err := ParseSDDL(tt.sddl, tt.aliases)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseSDDL(%q) error = %v, want one containing %q", tt.sddl, err, tt.wantErr)
			}
		})
	}
}

func TestParseACE(t *testing.T) {
	ace, err := ParseACE("(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;DA)", DomainAliases(testDomain, testForest))
	if err != nil {
		t.Fatal(err)
	}
	want := NewACE(ACETypeAccessAllowed, ACEFlagContainerInherit, RightsFullControl, MustParseSID("S-1-5-21-1-2-3-512"))
	if !ace.Equal(want) {
		t.Errorf("ParseACE = %+v, want %+v", ace, want)
	}
	for _, bad := range []string{"A;;RP;;;SY", "(A;;RP;;;SY)(A;;RP;;;SY)", "((A;;RP;;;SY))"} {
		if _, err := ParseACE(bad, WellKnownAliases); err == nil {
			t.Errorf("ParseACE(%q) succeeded", bad)
		}
	}
}
