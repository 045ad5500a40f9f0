package directory

import (
	"errors"
	"strings"
	"testing"
)

// Issue 11, defect 3: an unknown principal's error names it as the spec spells it: a down-level
// name keeps its single backslash.
func TestPrincipalQueryErrorsQuoteTheNameAsWritten(t *testing.T) {
	d := Domain{DN: "DC=demo,DC=local", DNSName: "demo.local", NetBIOSName: "DEMO"}
	for _, tc := range []struct {
		in   string
		want string
	}{
		{`OTHER\svc-vmm`, `resolve: unknown principal: "OTHER\svc-vmm": domain "OTHER" is not this directory's domain (DEMO)`},
		{`DEMO\`, `resolve: unknown principal: "DEMO\": empty account name`},
		{"S-1-5-x", `resolve: unknown principal: "S-1-5-x": not a valid SID`},
	} {
		_, err := principalQuery(tc.in, d)
		if !errors.Is(err, ErrUnknownPrincipal) {
			t.Errorf("principalQuery(%s) = %v, want ErrUnknownPrincipal", tc.in, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("principalQuery(%s)\n got %s\nwant %s...", tc.in, err, tc.want)
		}
		if strings.Contains(err.Error(), `\\`) {
			t.Errorf("principalQuery(%s): %s doubles a backslash", tc.in, err)
		}
	}
}

func TestQuoteName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `""`},
		{`DEMO\svc-vmm`, `"DEMO\svc-vmm"`},
		{"svc-vmm@demo.local", `"svc-vmm@demo.local"`},
		{`CN=Smith\, John,CN=Users,DC=demo,DC=local`, `"CN=Smith\, John,CN=Users,DC=demo,DC=local"`},
		{`CN=a"b`, `"CN=a"b"`},
		{"Jürgen Grün", `"Jürgen Grün"`},
		{"\uFFFD", "\"\uFFFD\""},
		{"a\nb\x00c\td", `"a\nb\x00c\td"`},
		{"zero\u200bwidth", `"zero\u200bwidth"`},
		{"bad\xffutf8", `"bad\xffutf8"`},
	} {
		if got := QuoteName(tc.in); got != tc.want {
			t.Errorf("QuoteName(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
