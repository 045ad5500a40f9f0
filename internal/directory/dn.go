package directory

import (
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"
)

// DNError says what is wrong with a DN and where (a byte offset into it).
type DNError struct {
	DN     string
	Pos    int
	Reason string
}

func (e *DNError) Error() string {
	dn := e.DN
	if len(dn) > 256 {
		dn = dn[:256] + "..."
	}
	if e.Pos < 0 {
		return fmt.Sprintf("invalid DN %s: %s", QuoteName(dn), e.Reason)
	}
	return fmt.Sprintf("invalid DN %s: %s at position %d", QuoteName(dn), e.Reason, e.Pos)
}

// ValidateDN checks that s is a well-formed, non-empty RFC 4514 DN. The error (a *DNError,
// KindOf gives KindInvalidDN) quotes s and names the offending byte position, e.g.
// invalid DN "CN=x,,DC=y": empty RDN at position 5.
func ValidateDN(s string) error {
	_, err := ParseDN(s)
	return err
}

// ParseDN parses a non-empty RFC 4514 DN. It is stricter than ldap.ParseDN where that helps
// users: unescaped " ; < > and NUL, bad escapes, empty RDNs or values and hex-encoded (#)
// values are errors. It is lenient where AD is: spaces around separators and '=' are ignored.
// Attribute values are unescaped; non-ASCII text passes through as UTF-8.
func ParseDN(s string) (*ldap.DN, error) {
	p := dnParser{s: s}
	return p.parse()
}

type dnParser struct {
	s   string
	pos int
}

func (p *dnParser) fail(pos int, format string, args ...any) error {
	return &DNError{DN: p.s, Pos: pos, Reason: fmt.Sprintf(format, args...)}
}

func (p *dnParser) skipSpaces() {
	for p.pos < len(p.s) && p.s[p.pos] == ' ' {
		p.pos++
	}
}

func (p *dnParser) parse() (*ldap.DN, error) {
	if strings.TrimSpace(p.s) == "" {
		return nil, &DNError{DN: p.s, Pos: -1, Reason: "empty DN"}
	}
	dn := &ldap.DN{}
	rdn := &ldap.RelativeDN{}
	for {
		p.skipSpaces()
		start := p.pos
		if p.pos == len(p.s) || p.s[p.pos] == ',' || p.s[p.pos] == '+' {
			if len(rdn.Attributes) > 0 {
				return nil, p.fail(start, "missing type=value after '+'")
			}
			return nil, p.fail(start, "empty RDN")
		}
		attr, err := p.parseAVA()
		if err != nil {
			return nil, err
		}
		rdn.Attributes = append(rdn.Attributes, attr)
		if p.pos == len(p.s) {
			dn.RDNs = append(dn.RDNs, rdn)
			return dn, nil
		}
		switch p.s[p.pos] {
		case ',':
			dn.RDNs = append(dn.RDNs, rdn)
			rdn = &ldap.RelativeDN{}
		case '+': // multi-valued RDN: another type=value follows
		}
		p.pos++
	}
}

// parseAVA reads type=value and stops at ',', '+' or the end.
func (p *dnParser) parseAVA() (*ldap.AttributeTypeAndValue, error) {
	typeStart := p.pos
	eq := strings.IndexByte(p.s[p.pos:], '=')
	sep := strings.IndexAny(p.s[p.pos:], ",+")
	if eq < 0 || (sep >= 0 && sep < eq) {
		return nil, p.fail(typeStart, "missing '=' after attribute type")
	}
	typ := strings.TrimRight(p.s[p.pos:p.pos+eq], " ")
	if !validAttrType(typ) {
		return nil, p.fail(typeStart, "invalid attribute type %q", typ)
	}
	p.pos += eq + 1
	p.skipSpaces()
	valueStart := p.pos
	if p.pos < len(p.s) && p.s[p.pos] == '#' {
		return nil, p.fail(p.pos, "hex-encoded (#) values are not supported; escape a leading '#' as \\#")
	}
	var b strings.Builder
	significant := 0 // length of b up to the last character that is not an unescaped space
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch {
		case c == ',' || c == '+':
			goto done
		case c == '\\':
			if p.pos+1 >= len(p.s) {
				return nil, p.fail(p.pos, "dangling '\\'")
			}
			n := p.s[p.pos+1]
			if strings.IndexByte(` "#+,;<=>\`, n) >= 0 {
				b.WriteByte(n)
				p.pos += 2
			} else if p.pos+2 < len(p.s) && isHex(n) && isHex(p.s[p.pos+2]) {
				v, _ := hex.DecodeString(p.s[p.pos+1 : p.pos+3])
				b.WriteByte(v[0])
				p.pos += 3
			} else {
				return nil, p.fail(p.pos, "invalid escape sequence")
			}
			significant = b.Len()
			continue
		case c == '"' || c == ';' || c == '<' || c == '>' || c == 0:
			return nil, p.fail(p.pos, "unescaped %q", string(c))
		}
		b.WriteByte(c)
		p.pos++
		if c != ' ' {
			significant = b.Len()
		}
	}
done:
	value := b.String()[:significant]
	if value == "" {
		return nil, p.fail(valueStart, "empty value for %s", typ)
	}
	return &ldap.AttributeTypeAndValue{Type: typ, Value: value}, nil
}

// validAttrType accepts a descriptor (CN, msDS-AppData) or a numeric OID (2.5.4.3).
func validAttrType(t string) bool {
	if t == "" {
		return false
	}
	if t[0] >= '0' && t[0] <= '9' {
		for _, part := range strings.Split(t, ".") {
			if part == "" || strings.Trim(part, "0123456789") != "" {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '-')) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// EscapeRDNValue escapes an attribute value for use in a DN (RFC 4514 section 2.4): the
// characters " + , ; < > \ everywhere, a leading space or '#', a trailing space, and control
// characters (NUL included) and bytes that are not valid UTF-8 as \XX. Other non-ASCII text
// passes through as UTF-8, which is how AD writes DNs.
func EscapeRDNValue(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); {
		c := v[i]
		switch {
		case strings.IndexByte(`"+,;<>\`, c) >= 0,
			i == 0 && (c == ' ' || c == '#'),
			i == len(v)-1 && c == ' ':
			b.WriteByte('\\')
			b.WriteByte(c)
			i++
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\%02X", c)
			i++
		case c < utf8.RuneSelf:
			b.WriteByte(c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(v[i:])
			if r == utf8.RuneError && size == 1 {
				fmt.Fprintf(&b, "\\%02X", c)
			} else {
				b.WriteString(v[i : i+size])
			}
			i += size
		}
	}
	return b.String()
}

// ChildDN returns CN=<cn>,<parentDN> with cn escaped. parentDN is used as given.
func ChildDN(parentDN, cn string) string {
	if parentDN == "" {
		return "CN=" + EscapeRDNValue(cn)
	}
	return "CN=" + EscapeRDNValue(cn) + "," + parentDN
}

// FormatDN writes dn back as a string, escaping every value; ParseDN(FormatDN(dn)) equals dn.
func FormatDN(dn *ldap.DN) string {
	var b strings.Builder
	for i, rdn := range dn.RDNs {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, a := range rdn.Attributes {
			if j > 0 {
				b.WriteByte('+')
			}
			b.WriteString(a.Type)
			b.WriteByte('=')
			b.WriteString(EscapeRDNValue(a.Value))
		}
	}
	return b.String()
}

// isChildOf reports whether child is an immediate child of parent (case-insensitively).
func isChildOf(child, parent *ldap.DN) bool {
	return len(child.RDNs) == len(parent.RDNs)+1 && (&ldap.DN{RDNs: child.RDNs[1:]}).EqualFold(parent)
}

// rdnValue is the value of a DN's first RDN's first attribute (its CN, for our objects).
func rdnValue(dn *ldap.DN) string {
	if len(dn.RDNs) == 0 || len(dn.RDNs[0].Attributes) == 0 {
		return ""
	}
	return dn.RDNs[0].Attributes[0].Value
}
