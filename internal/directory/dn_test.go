package directory

import (
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"
)

func TestParseDN(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want [][2]string // type, value of each RDN's first attribute
	}{
		{"CN=VMMDKM,CN=System,DC=demo,DC=local", [][2]string{{"CN", "VMMDKM"}, {"CN", "System"}, {"DC", "demo"}, {"DC", "local"}}},
		{"cn=a, dc=b", [][2]string{{"cn", "a"}, {"dc", "b"}}},
		{"CN = spaced , DC=b", [][2]string{{"CN", "spaced"}, {"DC", "b"}}},
		{`CN=Doe\, John,DC=x`, [][2]string{{"CN", "Doe, John"}, {"DC", "x"}}},
		{`CN=\#hash\ ,DC=x`, [][2]string{{"CN", "#hash "}, {"DC", "x"}}},
		{`CN=\ lead,DC=x`, [][2]string{{"CN", " lead"}, {"DC", "x"}}},
		{`CN=a\2Cb\5C\00,DC=x`, [][2]string{{"CN", "a,b\\\x00"}, {"DC", "x"}}},
		{`CN=Jürgen Grüß,DC=x`, [][2]string{{"CN", "Jürgen Grüß"}, {"DC", "x"}}},
		{`CN=\C3\BC,DC=x`, [][2]string{{"CN", "ü"}, {"DC", "x"}}},
		{`CN=a=b,DC=x`, [][2]string{{"CN", "a=b"}, {"DC", "x"}}},
		{`2.5.4.3=oid,msDS-App=x`, [][2]string{{"2.5.4.3", "oid"}, {"msDS-App", "x"}}},
		{`CN=DC Manager 5c6f0b2e-4a33-4a8e-9a57-0e0b8e0f4d21,CN=VMMDKM`, [][2]string{{"CN", "DC Manager 5c6f0b2e-4a33-4a8e-9a57-0e0b8e0f4d21"}, {"CN", "VMMDKM"}}},
	} {
		dn, err := ParseDN(tc.in)
		if err != nil {
			t.Errorf("ParseDN(%q): %v", tc.in, err)
			continue
		}
		if len(dn.RDNs) != len(tc.want) {
			t.Errorf("ParseDN(%q): %d RDNs, want %d", tc.in, len(dn.RDNs), len(tc.want))
			continue
		}
		for i, w := range tc.want {
			a := dn.RDNs[i].Attributes[0]
			if a.Type != w[0] || a.Value != w[1] {
				t.Errorf("ParseDN(%q) RDN %d = %s=%q, want %s=%q", tc.in, i, a.Type, a.Value, w[0], w[1])
			}
		}
	}
}

func TestParseDNMultiValuedRDN(t *testing.T) {
	dn, err := ParseDN("CN=a+UID=b,DC=x")
	if err != nil {
		t.Fatal(err)
	}
	if len(dn.RDNs) != 2 || len(dn.RDNs[0].Attributes) != 2 || dn.RDNs[0].Attributes[1].Value != "b" {
		t.Fatalf("got %s", FormatDN(dn))
	}
}

func TestValidateDNErrors(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"CN=x,,DC=y", `invalid DN "CN=x,,DC=y": empty RDN at position 5`},
		{"", `invalid DN "": empty DN`},
		{"   ", `invalid DN "   ": empty DN`},
		{"CN=x,", `invalid DN "CN=x,": empty RDN at position 5`},
		{",CN=x", `invalid DN ",CN=x": empty RDN at position 0`},
		{"CN=x,DCy", `invalid DN "CN=x,DCy": missing '=' after attribute type at position 5`},
		{"CN=x,D C=y", `invalid DN "CN=x,D C=y": invalid attribute type "D C" at position 5`},
		{"CN=,DC=y", `invalid DN "CN=,DC=y": empty value for CN at position 3`},
		{"CN=  ,DC=y", `invalid DN "CN=  ,DC=y": empty value for CN at position 5`},
		// The DN is quoted as written (issue 11): its escapes are AD's, not Go's.
		{`CN=a\,DC=y\`, `invalid DN "CN=a\,DC=y\": dangling '\' at position 10`},
		{`CN=a\zz,DC=y`, `invalid DN "CN=a\zz,DC=y": invalid escape sequence at position 4`},
		{`CN=a"b,DC=y`, `invalid DN "CN=a"b,DC=y": unescaped "\"" at position 4`},
		{`CN=a;DC=y`, `invalid DN "CN=a;DC=y": unescaped ";" at position 4`},
		{`CN=a<b`, `invalid DN "CN=a<b": unescaped "<" at position 4`},
		{"CN=a\x00b", `invalid DN "CN=a\x00b": unescaped "\x00" at position 4`},
		{`CN=#04024869`, `invalid DN "CN=#04024869": hex-encoded (#) values are not supported; escape a leading '#' as \# at position 3`},
		{"CN=a+,DC=y", `invalid DN "CN=a+,DC=y": missing type=value after '+' at position 5`},
		{"+CN=a", `invalid DN "+CN=a": empty RDN at position 0`},
		{"1.=x", `invalid DN "1.=x": invalid attribute type "1." at position 0`},
	} {
		err := ValidateDN(tc.in)
		if err == nil {
			t.Errorf("ValidateDN(%q) = nil, want %s", tc.in, tc.want)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("ValidateDN(%q)\n got %s\nwant %s", tc.in, err, tc.want)
		}
		var dnErr *DNError
		if !errors.As(err, &dnErr) || KindOf(err) != KindInvalidDN {
			t.Errorf("ValidateDN(%q): error is not a *DNError of KindInvalidDN", tc.in)
		}
	}
}

func TestChildDN(t *testing.T) {
	const parent = "CN=VMMDKM,CN=System,DC=demo,DC=local"
	for _, tc := range []struct{ cn, want string }{
		{"DC Manager 1", `CN=DC Manager 1,` + parent},
		{"a,b", `CN=a\,b,` + parent},
		{"a+b", `CN=a\+b,` + parent},
		{`say "hi"`, `CN=say \"hi\",` + parent},
		{`back\slash`, `CN=back\\slash,` + parent},
		{"<tag>;", `CN=\<tag\>\;,` + parent},
		{"#first", `CN=\#first,` + parent},
		{"mid#dle", `CN=mid#dle,` + parent},
		{" lead", `CN=\ lead,` + parent},
		{"trail ", `CN=trail\ ,` + parent},
		{" ", `CN=\ ,` + parent},
		{"nul\x00", `CN=nul\00,` + parent},
		{"tab\tnl\n", `CN=tab\09nl\0A,` + parent},
		{"Grüße 日本", `CN=Grüße 日本,` + parent},
		{"bad\xffutf8", `CN=bad\FFutf8,` + parent},
		{"a=b", `CN=a=b,` + parent},
	} {
		got := ChildDN(parent, tc.cn)
		if got != tc.want {
			t.Errorf("ChildDN(%q)\n got %s\nwant %s", tc.cn, got, tc.want)
		}
		assertChildRoundTrip(t, parent, tc.cn)
	}
	if got := ChildDN("", "x,y"); got != `CN=x\,y` {
		t.Errorf("ChildDN without parent = %s", got)
	}
}

func assertChildRoundTrip(t *testing.T, parent, cn string) {
	t.Helper()
	dn, err := ParseDN(ChildDN(parent, cn))
	if err != nil {
		t.Fatalf("ParseDN(ChildDN(%q)): %v", cn, err)
	}
	if got := rdnValue(dn); got != cn {
		t.Fatalf("round trip of %q gave %q", cn, got)
	}
	p, _ := ParseDN(parent)
	if !isChildOf(dn, p) {
		t.Fatalf("ChildDN(%q) is not a child of its parent", cn)
	}
	// go-ldap's own parser agrees on the value (the DN we send is what the server reads).
	if utf8.ValidString(cn) {
		ld, err := ldap.ParseDN(ChildDN(parent, cn))
		if err != nil || ld.RDNs[0].Attributes[0].Value != cn {
			t.Fatalf("ldap.ParseDN(ChildDN(%q)) = %v, %v", cn, ld, err)
		}
	}
}

func TestFormatDNRoundTrip(t *testing.T) {
	for _, in := range []string{
		`CN=Doe\, John,OU=People+L=Here,DC=x`,
		`CN=\ x\ ,DC=y`,
		`CN=Grüße,DC=y`,
	} {
		dn, err := ParseDN(in)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseDN(FormatDN(dn))
		if err != nil || !again.Equal(dn) {
			t.Errorf("%q: FormatDN gave %q (%v)", in, FormatDN(dn), err)
		}
	}
}

func TestIsChildOf(t *testing.T) {
	p, _ := ParseDN("CN=VMMDKM,CN=System,DC=demo,DC=local")
	c, _ := ParseDN("cn=dc manager x,cn=vmmdkm,cn=system,dc=DEMO,dc=local")
	g, _ := ParseDN("CN=k,CN=DC Manager x,CN=VMMDKM,CN=System,DC=demo,DC=local")
	if !isChildOf(c, p) || isChildOf(g, p) || isChildOf(p, p) {
		t.Error("isChildOf is wrong")
	}
}

// FuzzChildDN: any CN survives escaping and parsing unchanged.
func FuzzChildDN(f *testing.F) {
	for _, s := range []string{"DC Manager 1", "a,b", " #x ", `\`, "\x00", "ü", "\xff", "  ", "a+b=c", `"q"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cn string) {
		if cn == "" {
			t.Skip("an empty CN is not a DN")
		}
		assertChildRoundTrip(t, "CN=VMMDKM,CN=System,DC=demo,DC=local", cn)
	})
}

// FuzzParseDN: ParseDN never panics, and what it accepts formats back to the same DN.
func FuzzParseDN(f *testing.F) {
	for _, s := range []string{"CN=x,DC=y", "CN=x,,DC=y", `CN=a\,b+UID=c,DC=d`, `CN=\C3\BC`, "CN= x ,DC=y", `CN=\ `} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dn, err := ParseDN(s)
		if err != nil {
			var dnErr *DNError
			if !errors.As(err, &dnErr) || dnErr.Pos > len(s) {
				t.Fatalf("ParseDN(%q): bad error %v", s, err)
			}
			return
		}
		again, err := ParseDN(FormatDN(dn))
		if err != nil {
			t.Fatalf("ParseDN(FormatDN(%q) = %q): %v", s, FormatDN(dn), err)
		}
		if !again.Equal(dn) {
			t.Fatalf("%q: FormatDN round trip changed the DN to %q", s, FormatDN(dn))
		}
	})
}
