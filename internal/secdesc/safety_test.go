package secdesc

import (
	"slices"
	"strings"
	"testing"
)

// The accounts of the safety tests: a service account and the operator's bind
// identity in testDomain, another domain user, and the class and attribute
// GUIDs ACEs name.
const (
	svcSID      = "S-1-5-21-1-2-3-1105"
	operatorSID = "S-1-5-21-1-2-3-1106"
	otherSID    = "S-1-5-21-1-2-3-2000"

	thumbnailPhoto = "8d3bca50-1d7e-11d0-a081-00aa006c33ed"
	personalInfo   = "77b5b886-944a-11d1-aebd-0000f80367c1"
	emailInfo      = "e45795b2-9455-11d1-aebd-0000f80367c1" // Email-Information: not thumbnailPhoto's set
	displayName    = "bf967953-0de6-11d0-a285-00aa003049e2"
	classUser      = "bf967aba-0de6-11d0-a285-00aa003049e2"
	classContact   = "5cb41ed0-0e4c-11d0-a286-00aa003049e2"
	classOrgPerson = "bf967aa4-0de6-11d0-a285-00aa003049e2"
	classContainer = "bf967a8b-0de6-11d0-a285-00aa003049e2"
)

var safetyAliases = DomainAliases(testDomain, testForest)

func safetyReaders(accounts ...string) KeyReaders {
	k := KeyReaders{Domain: testDomain, ForestRoot: testForest}
	for _, a := range accounts {
		k.Accounts = append(k.Accounts, MustParseSID(a))
	}
	return k
}

// templateSDDL is the DKM template for svcSID and the operator, in SDDL.
func templateSDDL(t testing.TB) string {
	t.Helper()
	sd, err := DKMTemplate(testDomain, testForest, []SID{MustParseSID(svcSID), MustParseSID(operatorSID)})
	if err != nil {
		t.Fatal(err)
	}
	return FormatDACL(sd, safetyAliases)
}

func TestCheckDACLSafety(t *testing.T) {
	tmpl := templateSDDL(t)
	unprotected := strings.Replace(tmpl, "D:P(", "D:(", 1)
	tests := []struct {
		name     string
		dacl     string   // SDDL; "+" prefix appends ACEs to the template
		accounts []string // service accounts and operator; default svc and operator
		safe     bool
		offends  []string // SDDL of the ACEs reported, in order
		reason   string   // a substring of the verdict's String
	}{
		{name: "the template is safe", dacl: tmpl, safe: true},
		{name: "the template with Authenticated Users read on the key objects", dacl: "+(A;CI;RPLCLORC;;;AU)",
			offends: []string{"(A;CI;RPLCLORC;;;AU)"}, reason: "lets Authenticated Users read the key (READ_PROPERTY on every property"},
		{name: "read on the container alone reaches no key", dacl: "+(A;;RPLCLORC;;;AU)", safe: true},
		{name: "an unprotected DACL", dacl: unprotected, reason: "not protected"},
		{name: "an unprotected DACL with an exposure lists both", dacl: strings.Replace(unprotected, "D:(", "D:(A;CI;RP;;;DU)(", 1),
			offends: []string{"(A;CI;RP;;;DU)"}, reason: "not protected"},
		{name: "RP on thumbnailPhoto for a user outside the readers", dacl: "+(OA;CI;RP;" + thumbnailPhoto + ";;" + otherSID + ")",
			offends: []string{"(OA;CI;RP;" + thumbnailPhoto + ";;" + otherSID + ")"}, reason: "READ_PROPERTY on thumbnailPhoto"},
		{name: "RP on thumbnailPhoto's property set", dacl: "+(OA;CI;RP;" + personalInfo + ";;" + otherSID + ")",
			offends: []string{"(OA;CI;RP;" + personalInfo + ";;" + otherSID + ")"}, reason: "Personal-Information property set"},
		{name: "RP on an unrelated attribute", dacl: "+(OA;CI;RP;" + displayName + ";;" + otherSID + ")", safe: true},
		{name: "RP on another property set", dacl: "+(OA;CI;RP;" + emailInfo + ";;AU)", safe: true},
		{name: "inherit-only read for another class", dacl: "+(OA;CIIO;RP;;" + classUser + ";AU)", safe: true},
		{name: "inherit-only thumbnailPhoto read for another class", dacl: "+(OA;CIIO;RP;" + thumbnailPhoto + ";" + classUser + ";AU)", safe: true},
		{name: "inherit-only read for contacts", dacl: "+(OA;CIIO;RP;;" + classContact + ";AU)",
			offends: []string{"(OA;CIIO;RP;;" + classContact + ";AU)"}},
		{name: "inherit-only full control for a superclass of contact", dacl: "+(OA;CIIO;GA;;" + classOrgPerson + ";DU)",
			offends: []string{"(OA;CIIO;GA;;" + classOrgPerson + ";DU)"}, reason: "GENERIC_ALL on every property"},
		{name: "read on containers (DC Manager) holds no key", dacl: "+(OA;CIIO;RP;;" + classContainer + ";AU)", safe: true},
		{name: "WRITE_DAC on DC Manager objects", dacl: "+(OA;CIIO;WD;;" + classContainer + ";" + otherSID + ")",
			offends: []string{"(OA;CIIO;WD;;" + classContainer + ";" + otherSID + ")"}, reason: "rewrite the DACL (WRITE_DAC) of the objects below the container"},
		{name: "a service account that is Everyone", dacl: "+(A;CI;" + fullControl + ";;;WD)", accounts: []string{svcSID, operatorSID, "S-1-1-0"},
			offends: []string{"(A;CI;" + fullControl + ";;;WD)"}, reason: "Everyone stands for everybody and is never an allowed key reader"},
		{name: "a service account that is a trusted domain's Domain Users", dacl: "+(A;CI;" + fullControl + ";;;S-1-5-21-4-5-6-513)",
			accounts: []string{svcSID, operatorSID, "S-1-5-21-4-5-6-513"},
			offends:  []string{"(A;CI;" + fullControl + ";;;S-1-5-21-4-5-6-513)"}, reason: "Domain Users stands for everybody"},
		{name: "a service account that is Anonymous Logon", dacl: "+(A;CI;GR;;;AN)", accounts: []string{svcSID, operatorSID, "S-1-5-7"},
			offends: []string{"(A;CI;GR;;;AN)"}, reason: "GENERIC_READ"},
		{name: "a service account missing from the readers", dacl: tmpl, accounts: []string{svcSID},
			offends: []string{"(A;CI;" + fullControl + ";;;" + operatorSID + ")"}, reason: "full control on every property"},
		{name: "generic read for Domain Users", dacl: "+(A;CI;GR;;;DU)", offends: []string{"(A;CI;GR;;;DU)"}},
		{name: "inherit-only generic all", dacl: "+(A;CIIO;GA;;;" + otherSID + ")", offends: []string{"(A;CIIO;GA;;;" + otherSID + ")"}},
		{name: "object inherit counts", dacl: "+(A;OI;RP;;;AU)", offends: []string{"(A;OI;RP;;;AU)"}},
		{name: "no-propagate is ignored, conservatively", dacl: "+(A;CINP;RP;;;AU)", offends: []string{"(A;CINP;RP;;;AU)"}},
		{name: "an ACE marked inherited counts", dacl: "+(A;CIID;RP;;;AU)", offends: []string{"(A;CIID;RP;;;AU)"}},
		{name: "WRITE_DAC on the container", dacl: "+(A;;WD;;;AU)", offends: []string{"(A;;WD;;;AU)"}, reason: "rewrite the DACL (WRITE_DAC) of the container,"},
		{name: "WRITE_OWNER on the container", dacl: "+(A;;WO;;;" + otherSID + ")", offends: []string{"(A;;WO;;;" + otherSID + ")"}, reason: "it is not a template principal"},
		{name: "full control on the container alone", dacl: "+(A;;" + fullControl + ";;;DU)", offends: []string{"(A;;" + fullControl + ";;;DU)"}},
		{name: "Enterprise Domain Controllers only for tokenGroups", dacl: "+(A;CI;RP;;;ED)", offends: []string{"(A;CI;RP;;;ED)"},
			reason: "lets Enterprise Domain Controllers read the key"},
		{name: "Creator Owner is not a reader", dacl: "+(A;CIIO;RP;;;CO)", offends: []string{"(A;CIIO;RP;;;CO)"}},
		{name: "a deny ACE does not make a read safe", dacl: "+(D;CI;RP;;;AU)(A;CI;RP;;;AU)", offends: []string{"(A;CI;RP;;;AU)"}},
		{name: "a deny ACE alone is safe", dacl: "+(D;CI;" + fullControl + ";;;AU)", safe: true},
		{name: "list, create child and extended rights expose no key", dacl: "+(A;CI;CCLCLOCR;;;AU)", safe: true},
		{name: "write property exposes no key", dacl: "+(A;CI;WPSW;;;" + otherSID + ")", safe: true},
		{name: "more rights for allowed readers", dacl: "+(A;CI;GA;;;DA)(A;CIIO;GR;;;" + svcSID + ")(OA;CI;RP;" + thumbnailPhoto + ";;" + operatorSID + ")", safe: true},
		{name: "an adopted container that differs from the template",
			dacl: "D:P(A;CI;" + fullControl + ";;;DA)(A;CI;" + fullControl + ";;;SY)(A;CI;CCLCRPWPLORCWD;;;" + operatorSID + ")" +
				"(A;CI;" + fullControl + ";;;" + svcSID + ")(A;;RPLCLORC;;;AU)", safe: true},
		{name: "an allow-callback ACE cannot be evaluated", dacl: "+(0x09;CI;;;;#000000000101000000000005)",
			offends: []string{"(0x09;CI;;;;#000000000101000000000005)"}, reason: "cannot evaluate"},
		{name: "a deny-callback ACE grants nothing", dacl: "+(0x0a;CI;;;;#000000000101000000000005)", safe: true},
		{name: "an empty protected DACL is safe", dacl: "D:P", safe: true},
		{name: "a NULL DACL", dacl: "D:NO_ACCESS_CONTROL", reason: "there is no DACL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := tt.dacl
			if strings.HasPrefix(text, "+") {
				text = tmpl + text[1:]
			}
			sd, err := ParseSDDL(text, safetyAliases)
			if err != nil {
				t.Fatal(err)
			}
			accounts := tt.accounts
			if accounts == nil {
				accounts = []string{svcSID, operatorSID}
			}
			v := CheckDACLSafety(sd, safetyReaders(accounts...), safetyAliases)
			if v.Safe() != tt.safe {
				t.Errorf("Safe() = %v, want %v: %s", v.Safe(), tt.safe, v)
			}
			var got, want []string
			for _, o := range tt.offends {
				ace, err := ParseACE(o, safetyAliases)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, FormatACE(ace, safetyAliases))
			}
			for _, e := range v.Exposures {
				got = append(got, e.SDDL)
				if e.Reason == "" || e.SDDL != FormatACE(e.ACE, safetyAliases) {
					t.Errorf("exposure %+v: want a reason and the SDDL of its ACE", e)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("exposures = %q, want %q", got, want)
			}
			if tt.safe && v.String() != "safe" {
				t.Errorf("String() = %q, want \"safe\"", v)
			}
			if !tt.safe && (v.String() == "safe" || !strings.Contains(v.String(), tt.reason)) {
				t.Errorf("String() = %q, want it to contain %q", v, tt.reason)
			}
		})
	}
}

func TestCheckDACLSafetyWithoutDescriptor(t *testing.T) {
	for _, sd := range []*SecurityDescriptor{nil, {Control: ControlSelfRelative | ControlDACLProtected}} {
		v := CheckDACLSafety(sd, safetyReaders(svcSID), safetyAliases)
		if v.Safe() || v.HasDACL || !strings.Contains(v.String(), "no DACL") {
			t.Errorf("CheckDACLSafety(%v) = %+v (%s), want unsafe: no DACL", sd, v, v)
		}
	}
}

func TestKeyReadersAllowed(t *testing.T) {
	k := safetyReaders(svcSID, "S-1-1-0")
	for _, tc := range []struct {
		sid  string
		want bool
	}{
		{"S-1-5-18", true},               // SYSTEM
		{"S-1-5-32-544", true},           // BUILTIN\Administrators
		{"S-1-5-21-7-8-9-519", true},     // Enterprise Admins of the forest root
		{"S-1-5-21-1-2-3-519", false},    // "Enterprise Admins" of a child domain does not exist
		{"S-1-5-21-1-2-3-512", true},     // Domain Admins
		{"S-1-5-21-1-2-3-500", true},     // Administrator
		{"S-1-5-21-7-8-9-512", false},    // the forest root's Domain Admins are not the template's
		{"S-1-5-21-1-2-3-518", false},    // Schema Admins
		{svcSID, true},                   // a service account
		{"S-1-1-0", false},               // Everyone, even listed
		{"S-1-5-9", false},               // Enterprise Domain Controllers: tokenGroups only
		{"S-1-5-21-1-2-3-1107", false},   // another user
		{"S-1-5-21-1-2-3-513", false},    // Domain Users
		{"S-1-5-32-545", false},          // BUILTIN\Users
		{"S-1-3-0", false},               // Creator Owner
		{"S-1-5-21-4-5-6-1105", false},   // same RID, another domain
		{"S-1-5-21-1-2-3-1105-1", false}, // not a domain RID at all
	} {
		if got := k.Allowed(MustParseSID(tc.sid)); got != tc.want {
			t.Errorf("Allowed(%s) = %v, want %v", tc.sid, got, tc.want)
		}
	}
	if (KeyReaders{}).Allowed(MustParseSID("S-1-5-21-1-2-3-512")) {
		t.Error("with no domain, no domain-relative SID is a template principal")
	}
	if (KeyReaders{}).Allowed(SID{}) {
		t.Error("the zero SID is allowed")
	}
}

// TestCheckDACLSafetySambaCaptures: the template as a real Samba DC stores it
// is safe, and the DACLs AD gives ordinary objects are not.
func TestCheckDACLSafetySambaCaptures(t *testing.T) {
	fx := loadSambaFixture(t)
	aliases := DomainAliases(fx.domain, fx.domain)
	readers := KeyReaders{Domain: fx.domain, ForestRoot: fx.domain, Accounts: []SID{fx.serviceAccount}}
	want := map[string]bool{
		"dkm-template-add/dacl":    true,
		"dkm-template-add/all":     true,
		"dkm-template-modify/dacl": true,
		"system/dacl":              false, // not protected, and its ACEs reach every object below
		"users/dacl":               false,
		"contact/dacl":             false, // (A;;RPLCLORC;;;AU) alone is harmless, but the DACL inherits
		"domain-root/dacl":         false,
	}
	seen := 0
	for _, c := range fx.captures {
		safe, ok := want[c.name]
		if !ok {
			continue
		}
		seen++
		sd, err := ParseDescriptor(c.raw)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if v := CheckDACLSafety(sd, readers, aliases); v.Safe() != safe {
			t.Errorf("%s: Safe() = %v, want %v: %s\n%s", c.name, v.Safe(), safe, v, FormatDACL(sd, aliases))
		}
	}
	if seen != len(want) {
		t.Fatalf("found %d of the %d captures", seen, len(want))
	}
	// The domain root's ACEs, protected, would be safe: every read they grant
	// outside the readers is on the object alone ((A;;RPLCLORC;;;AU)), for
	// user, group or inetOrgPerson objects only, or on other property sets
	// (Principal Self on Private-Information). The same ACEs with the AU read
	// inherited are not.
	for _, c := range fx.captures {
		if c.name != "domain-root/dacl" {
			continue
		}
		sd, _ := ParseDescriptor(c.raw)
		sd.Control |= ControlDACLProtected
		if v := CheckDACLSafety(sd, readers, aliases); !v.Safe() {
			t.Errorf("protected domain root DACL: %s, want safe", v)
		}
		for i, a := range sd.DACL.ACEs {
			if a.SID == SIDAuthenticatedUsers && a.Type == ACETypeAccessAllowed {
				sd.DACL.ACEs[i].Flags |= ACEFlagContainerInherit
			}
		}
		if v := CheckDACLSafety(sd, readers, aliases); len(v.Exposures) != 1 || v.Exposures[0].SDDL != "(A;CI;LCRPLORC;;;AU)" {
			t.Errorf("domain root DACL with AU read inherited: %s, want that one exposure", v)
		}
	}
}

// FuzzCheckDACLSafety checks properties of the verdict on any DACL SDDL can
// express: it never panics; it is deterministic; a safe DACL is present and
// protected; every exposure is an ACE of the DACL that may allow; deny ACEs
// change nothing; removing the exposures from a protected DACL makes it safe;
// and adding an Authenticated Users read inherited by the key objects always
// makes it unsafe. Run it with
// go test -run '^$' -fuzz '^FuzzCheckDACLSafety$' -fuzztime 30s ./internal/secdesc/
func FuzzCheckDACLSafety(f *testing.F) {
	tmpl := templateSDDL(f)
	for _, s := range []string{
		tmpl,
		tmpl + "(A;CI;RPLCLORC;;;AU)",
		tmpl + "(A;;RPLCLORC;;;AU)",
		tmpl + "(OA;CIIO;RP;" + thumbnailPhoto + ";" + classContact + ";" + otherSID + ")",
		tmpl + "(OA;CIIO;RP;;" + classUser + ";AU)(D;CI;GA;;;WD)(A;;WD;;;DU)",
		tmpl + "(0x09;CI;;;;#00)(0x0b;;;;;#)(0x11;;;;;#0100000001010000)",
		"D:NO_ACCESS_CONTROL",
		"D:(A;CIOI;GA;;;SY)",
	} {
		f.Add(s)
	}
	for _, c := range loadSambaFixture(f).captures {
		f.Add(c.sambaSDDL)
	}
	readers := safetyReaders(svcSID, operatorSID)
	deny, _ := ParseACE("(D;CI;"+fullControl+";;;AU)", safetyAliases)
	auRead, _ := ParseACE("(A;CI;RP;;;AU)", safetyAliases)
	f.Fuzz(func(t *testing.T, text string) {
		sd, err := ParseSDDL(text, safetyAliases)
		if err != nil {
			return
		}
		v := CheckDACLSafety(sd, readers, safetyAliases)
		if again := CheckDACLSafety(sd, readers, safetyAliases); again.String() != v.String() {
			t.Fatalf("not deterministic: %s vs %s", v, again)
		}
		if v.Safe() && (sd.DACL == nil || !sd.IsDACLProtected()) {
			t.Fatalf("safe without a protected DACL: %s", FormatSDDL(sd, safetyAliases))
		}
		if sd.DACL == nil {
			return
		}
		for _, e := range v.Exposures {
			if !slices.ContainsFunc(sd.DACL.ACEs, e.ACE.Equal) {
				t.Fatalf("exposure %s is not an ACE of the DACL", e)
			}
			if e.ACE.Type == ACETypeAccessDenied || e.ACE.Type == ACETypeAccessDeniedObject {
				t.Fatalf("a deny ACE is an exposure: %s", e)
			}
		}

		denied := sd.Clone()
		denied.DACL.ACEs = append([]ACE{deny}, denied.DACL.ACEs...)
		if w := CheckDACLSafety(denied, readers, safetyAliases); len(w.Exposures) != len(v.Exposures) || w.Safe() != v.Safe() {
			t.Fatalf("a deny ACE changed the verdict: %s -> %s", v, w)
		}

		cleaned := sd.Clone()
		cleaned.Control |= ControlDACLProtected
		cleaned.DACL.ACEs = slices.DeleteFunc(cleaned.DACL.ACEs, func(a ACE) bool {
			return slices.ContainsFunc(v.Exposures, func(e Exposure) bool { return e.ACE.Equal(a) })
		})
		if w := CheckDACLSafety(cleaned, readers, safetyAliases); !w.Safe() {
			t.Fatalf("still unsafe without its exposures: %s\n%s", w, FormatSDDL(cleaned, safetyAliases))
		}

		exposed := cleaned.Clone()
		exposed.DACL.ACEs = append(exposed.DACL.ACEs, auRead)
		if w := CheckDACLSafety(exposed, readers, safetyAliases); w.Safe() || len(w.Exposures) != 1 {
			t.Fatalf("an Authenticated Users read inherited by the keys is not the one exposure: %s", w)
		}
	})
}

// EffectiveKeyAccess judges an ACE as it stands in a key object's own DACL.
func TestEffectiveKeyAccess(t *testing.T) {
	cases := []struct {
		ace  string
		want string // substring; "" means no access
	}{
		{"(A;;RP;;;" + otherSID + ")", "READ_PROPERTY on every property"},
		{"(A;ID;RP;;;" + otherSID + ")", "READ_PROPERTY on every property"}, // inherited counts
		{"(OA;;RP;" + thumbnailPhoto + ";;" + otherSID + ")", "on thumbnailPhoto"},
		{"(OA;;RP;" + personalInfo + ";;" + otherSID + ")", "Personal-Information"},
		{"(A;;GR;;;" + otherSID + ")", "GENERIC_READ"},
		{"(A;;GA;;;" + otherSID + ")", "GENERIC_ALL"},
		{"(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;" + otherSID + ")", "full control"},
		{"(A;;WD;;;" + otherSID + ")", "rewrite the DACL (WRITE_DAC)"},
		{"(A;;WO;;;" + otherSID + ")", "WRITE_OWNER"},
		{"(OA;;RP;" + emailInfo + ";;" + otherSID + ")", ""},
		{"(OA;;RP;" + displayName + ";;" + otherSID + ")", ""},
		{"(A;;LCRC;;;" + otherSID + ")", ""},
		{"(A;CIIO;RP;;;" + otherSID + ")", ""}, // inherit-only: not on this object
		{"(D;;RP;;;" + otherSID + ")", ""},
	}
	for _, tc := range cases {
		t.Run(tc.ace, func(t *testing.T) {
			ace, err := ParseACE(tc.ace, safetyAliases)
			if err != nil {
				t.Fatal(err)
			}
			got := EffectiveKeyAccess(ace)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
