package secdesc

import (
	"strings"
	"testing"
)

const (
	fullControl  = "CCDCLCSWRPWPDTLOCRSDRCWDWO"
	tokenGroupsA = "(OA;CIIO;RP;b7c69e6d-2cc7-11d2-854e-00a0c983f608;bf967aba-0de6-11d0-a285-00aa003049e2;ED)" +
		"(OA;CIIO;RP;b7c69e6d-2cc7-11d2-854e-00a0c983f608;bf967a9c-0de6-11d0-a285-00aa003049e2;ED)" +
		"(OA;CIIO;RP;b7c69e6d-2cc7-11d2-854e-00a0c983f608;bf967a86-0de6-11d0-a285-00aa003049e2;ED)"
)

func TestDKMTemplateGolden(t *testing.T) {
	svc1105 := MustParseSID("S-1-5-21-1-2-3-1105")
	svc999 := MustParseSID("S-1-5-21-1-2-3-999")
	otherDomain := MustParseSID("S-1-5-21-7-8-9-1234")
	tests := []struct {
		name     string
		domain   SID
		forest   SID
		accounts []SID
		aliases  Aliases
		want     string
	}{
		{
			name: "single domain, no service account", domain: testDomain, forest: testDomain,
			aliases: DomainAliases(testDomain, testDomain),
			want: "D:P(A;;" + fullControl + ";;;SY)" + tokenGroupsA +
				"(A;CI;" + fullControl + ";;;EA)(A;CI;" + fullControl + ";;;DA)(A;CI;" + fullControl + ";;;LA)" +
				"(A;CI;CCDCLCSWRPWPLOCRRCWDWO;;;BA)",
		},
		{
			name: "child domain, accounts sorted by SID string and deduplicated", domain: testDomain, forest: testForest,
			accounts: []SID{svc1105, otherDomain, svc999, svc1105},
			aliases:  DomainAliases(testDomain, testForest),
			want: "D:P(A;;" + fullControl + ";;;SY)" + tokenGroupsA +
				"(A;CI;" + fullControl + ";;;EA)(A;CI;" + fullControl + ";;;DA)(A;CI;" + fullControl + ";;;LA)" +
				"(A;CI;CCDCLCSWRPWPLOCRRCWDWO;;;BA)" +
				"(A;CI;" + fullControl + ";;;S-1-5-21-1-2-3-1105)" +
				"(A;CI;" + fullControl + ";;;S-1-5-21-1-2-3-999)" +
				"(A;CI;" + fullControl + ";;;S-1-5-21-7-8-9-1234)",
		},
		{
			name: "plain SIDs; a service account equal to Domain Admins adds nothing", domain: testDomain, forest: testForest,
			accounts: []SID{MustParseSID("S-1-5-21-1-2-3-512"), svc1105},
			aliases:  PlainSIDs,
			want: "D:P(A;;" + fullControl + ";;;S-1-5-18)" + strings.ReplaceAll(tokenGroupsA, ";ED)", ";S-1-5-9)") +
				"(A;CI;" + fullControl + ";;;S-1-5-21-7-8-9-519)(A;CI;" + fullControl + ";;;S-1-5-21-1-2-3-512)(A;CI;" + fullControl + ";;;S-1-5-21-1-2-3-500)" +
				"(A;CI;CCDCLCSWRPWPLOCRRCWDWO;;;S-1-5-32-544)" +
				"(A;CI;" + fullControl + ";;;S-1-5-21-1-2-3-1105)",
		},
		{
			name: "well-known aliases only", domain: testDomain, forest: testDomain,
			aliases: WellKnownAliases,
			want: "D:P(A;;" + fullControl + ";;;SY)" + tokenGroupsA +
				"(A;CI;" + fullControl + ";;;S-1-5-21-1-2-3-519)(A;CI;" + fullControl + ";;;S-1-5-21-1-2-3-512)(A;CI;" + fullControl + ";;;S-1-5-21-1-2-3-500)" +
				"(A;CI;CCDCLCSWRPWPLOCRRCWDWO;;;BA)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sd, err := DKMTemplate(tt.domain, tt.forest, tt.accounts)
			if err != nil {
				t.Fatal(err)
			}
			got := FormatDACL(sd, tt.aliases)
			if got != tt.want {
				t.Errorf("FormatDACL =\n%s\nwant\n%s", got, tt.want)
			}
			if full := FormatSDDL(sd, tt.aliases); full != got {
				t.Errorf("FormatSDDL of a DACL-only descriptor = %s, want the DACL alone", full)
			}
			back, err := ParseSDDL(got, tt.aliases)
			if err != nil || !back.Equal(sd) {
				t.Errorf("ParseSDDL(golden) = %v, %v; want the template", back, err)
			}
			raw, err := sd.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			bin, err := ParseDescriptor(raw)
			if err != nil || !bin.Equal(sd) {
				t.Errorf("binary round trip = %v, %v", bin, err)
			}
		})
	}
}

// TestDKMTemplateInvariants: whatever the inputs, the template is a
// protected, DACL-only descriptor without Authenticated Users, everyone,
// generic rights or deny ACEs.
func TestDKMTemplateInvariants(t *testing.T) {
	inputs := [][]SID{nil, {MustParseSID("S-1-5-21-1-2-3-1105"), MustParseSID("S-1-5-21-1-2-3-1106")}}
	for _, accounts := range inputs {
		sd, err := DKMTemplate(testDomain, testForest, accounts)
		if err != nil {
			t.Fatal(err)
		}
		if !sd.IsDACLProtected() || sd.Control&ControlDACLPresent == 0 {
			t.Errorf("template control = %#x, want DACL present and protected", uint16(sd.Control))
		}
		if !sd.Owner.IsZero() || !sd.Group.IsZero() || sd.SACL != nil {
			t.Error("template must carry the DACL only")
		}
		if sd.DACL.Revision != ACLRevisionDS {
			t.Errorf("ACL revision = %d, want %d", sd.DACL.Revision, ACLRevisionDS)
		}
		for i, a := range sd.DACL.ACEs {
			if a.SID == SIDAuthenticatedUsers || a.SID == SIDEveryone {
				t.Errorf("ACE %d grants %s", i, FormatACE(a, WellKnownAliases))
			}
			if a.Mask&(RightGenericAll|RightGenericRead|RightGenericWrite|RightGenericExecute) != 0 {
				t.Errorf("ACE %d uses generic rights, which AD would rewrite: %s", i, FormatACE(a, WellKnownAliases))
			}
			if a.Type != ACETypeAccessAllowed && a.Type != ACETypeAccessAllowedObject || a.IsInherited() {
				t.Errorf("ACE %d is not an explicit allow ACE: %s", i, FormatACE(a, WellKnownAliases))
			}
		}
	}
	// Without service accounts there is no Authenticated Users ACE at all.
	sd, _ := DKMTemplate(testDomain, testDomain, nil)
	if strings.Contains(FormatDACL(sd, PlainSIDs), "S-1-5-11") {
		t.Error("template contains Authenticated Users (S-1-5-11)")
	}
	// BUILTIN\Administrators may not delete.
	for _, a := range sd.DACL.ACEs {
		if a.SID == SIDBuiltinAdministrators && (a.Mask.Has(RightDelete) || a.Mask.Has(RightDeleteTree) || !a.Mask.Has(RightDeleteChild)) {
			t.Errorf("BA mask = %s, want everything but SD and DT", a.Mask)
		}
	}
}

func TestDKMTemplateErrors(t *testing.T) {
	tests := []struct {
		name     string
		domain   SID
		forest   SID
		accounts []SID
		wantErr  string
	}{
		{"zero domain", SID{}, testForest, nil, "domain"},
		{"builtin is not a domain", MustParseSID("S-1-5-32"), testForest, nil, "is not a domain SID"},
		{"forest root is an account", testDomain, MustParseSID("S-1-5-21-7-8-9-519"), nil, "forest root"},
		{"zero service account", testDomain, testForest, []SID{MustParseSID("S-1-5-21-1-2-3-1105"), {}}, "service account 1 has no SID"},
		{"Authenticated Users as a service account", testDomain, testForest, []SID{SIDAuthenticatedUsers}, "service account 0 (S-1-5-11) is Authenticated Users"},
		{"Everyone as a service account", testDomain, testForest, []SID{SIDEveryone}, "is Everyone"},
		{"Domain Users as a service account", testDomain, testForest, []SID{MustParseSID("S-1-5-21-1-2-3-513")}, "is Domain Users"},
		{"BUILTIN Users as a service account", testDomain, testForest, []SID{MustParseSID("S-1-5-32-545")}, `is BUILTIN\Users`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DKMTemplate(tt.domain, tt.forest, tt.accounts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestDKMTemplateRefusesBroadPrincipals: every well-known SID or group that
// stands for everybody (or every user, computer, logon or authentication of
// some kind) is refused by name, in any domain (issue 11); ordinary accounts
// and the administrators are not.
func TestDKMTemplateRefusesBroadPrincipals(t *testing.T) {
	for _, tc := range []struct {
		sid  string
		want string // "" means accepted
	}{
		{"S-1-1-0", "Everyone"},
		{"S-1-2-0", "Local"},
		{"S-1-2-1", "Console Logon"},
		{"S-1-5-1", "Dialup"},
		{"S-1-5-2", "Network"},
		{"S-1-5-3", "Batch"},
		{"S-1-5-4", "Interactive"},
		{"S-1-5-6", "Service"},
		{"S-1-5-7", "Anonymous Logon"},
		{"S-1-5-11", "Authenticated Users"},
		{"S-1-5-13", "Terminal Server Users"},
		{"S-1-5-14", "Remote Interactive Logon"},
		{"S-1-5-15", "This Organization"},
		{"S-1-5-1000", "Other Organization"},
		{"S-1-5-64-10", "NTLM Authentication"},
		{"S-1-5-64-14", "SChannel Authentication"},
		{"S-1-5-64-21", "Digest Authentication"},
		{"S-1-5-113", "Local account"},
		{"S-1-5-114", "Local account and member of Administrators group"},
		{"S-1-18-1", "Authentication authority asserted identity"},
		{"S-1-18-2", "Service asserted identity"},
		{"S-1-5-32-545", `BUILTIN\Users`},
		{"S-1-5-32-546", `BUILTIN\Guests`},
		{"S-1-5-32-554", `BUILTIN\Pre-Windows 2000 Compatible Access`},
		{"S-1-5-21-1-2-3-513", "Domain Users"},
		{"S-1-5-21-1-2-3-514", "Domain Guests"},
		{"S-1-5-21-1-2-3-515", "Domain Computers"},
		{"S-1-5-21-7-8-9-513", "Domain Users"}, // the forest root's
		{"S-1-5-21-4-5-6-513", "Domain Users"}, // a trusted domain's
		{"S-1-5-21-1-2-3-1105", ""},
		{"S-1-5-21-1-2-3-512", ""},
		{"S-1-5-21-7-8-9-1513", ""},
		{"S-1-5-32-544", ""},
		{"S-1-5-18", ""},
	} {
		sid := MustParseSID(tc.sid)
		_, err := DKMTemplate(testDomain, testForest, []SID{sid})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.sid, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), " is "+tc.want+";")):
			t.Errorf("%s: error %v, want one naming it %s", tc.sid, err, tc.want)
		}
		if got := BroadPrincipal(sid); got != tc.want {
			t.Errorf("BroadPrincipal(%s) = %q, want %q", tc.sid, got, tc.want)
		}
	}
}

func TestDKMTemplateDoesNotAliasInput(t *testing.T) {
	accounts := []SID{MustParseSID("S-1-5-21-1-2-3-1106"), MustParseSID("S-1-5-21-1-2-3-1105")}
	if _, err := DKMTemplate(testDomain, testDomain, accounts); err != nil {
		t.Fatal(err)
	}
	if accounts[0].String() != "S-1-5-21-1-2-3-1106" {
		t.Error("DKMTemplate reordered its caller's slice")
	}
}

func TestChildDescriptor(t *testing.T) {
	sd := ChildDescriptor()
	raw, err := sd.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Byte for byte what Samba's own from_sddl("D:") produces.
	if want := unhex(t, "01000480000000000000000000000000140000000400080000000000"); string(raw) != string(want) {
		t.Errorf("ChildDescriptor = %x, want %x", raw, want)
	}
	if got := FormatSDDL(sd, PlainSIDs); got != "D:" {
		t.Errorf("FormatSDDL = %q, want D:", got)
	}
}
