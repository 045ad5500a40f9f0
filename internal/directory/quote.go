package directory

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// QuoteName quotes an account name or DN for a message as a person wrote it: in double quotes,
// with its backslashes left alone (DEMO\svc-vmm, CN=Smith\, John), where Go's %q would double
// them and turn the name into one that does not exist. Only what cannot be shown is escaped:
// control and other non-printable characters as \n, \x00 or \u200b, and invalid UTF-8 bytes
// as \xff.
func QuoteName(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsPrint(r):
			b.WriteRune(r)
		default:
			q := fmt.Sprintf("%+q", string(r)) // "\n", "\x00", "\u200b"
			b.WriteString(q[1 : len(q)-1])
		}
	}
	b.WriteByte('"')
	return b.String()
}
