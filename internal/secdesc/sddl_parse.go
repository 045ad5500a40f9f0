package secdesc

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// ParseSDDL parses the SDDL that FormatSDDL writes, and the common forms
// Windows and Samba write (rights in any order, hex masks, FA/KA style
// composite rights). Conditional and resource-attribute ACEs are not
// supported. Every ACL gets revision ACLRevisionDS, as AD stores them.
func ParseSDDL(s string, a Aliases) (*SecurityDescriptor, error) {
	sd := &SecurityDescriptor{Control: ControlSelfRelative}
	seen := map[byte]bool{}
	for i := 0; i < len(s); {
		if len(s)-i < 2 || s[i+1] != ':' || !strings.ContainsRune("OGDS", rune(s[i])) {
			return nil, fmt.Errorf("SDDL at offset %d: want O:, G:, D: or S:, found %q", i, clip(s[i:]))
		}
		tag := s[i]
		if seen[tag] {
			return nil, fmt.Errorf("SDDL at offset %d: %c: appears twice", i, tag)
		}
		seen[tag] = true
		start := i + 2
		// SIDs, GUIDs and ACEs contain no ':', so the value runs up to the
		// letter before the next ':'.
		end := len(s)
		if j := strings.IndexByte(s[start:], ':'); j >= 0 {
			end = start + j - 1
			if end < start {
				return nil, fmt.Errorf("SDDL at offset %d: empty %c: value", i, tag)
			}
		}
		value := s[start:end]
		var err error
		switch tag {
		case 'O':
			sd.Owner, err = a.parseSID(value)
		case 'G':
			sd.Group, err = a.parseSID(value)
		case 'D':
			sd.DACL, err = parseACL(value, &sd.Control, ControlDACLPresent, ControlDACLProtected, ControlDACLAutoInheritReq, ControlDACLAutoInherited, a)
		case 'S':
			sd.SACL, err = parseACL(value, &sd.Control, ControlSACLPresent, ControlSACLProtected, ControlSACLAutoInheritReq, ControlSACLAutoInherited, a)
		}
		if err != nil {
			return nil, fmt.Errorf("SDDL %c: at offset %d: %w", tag, start, err)
		}
		i = end
	}
	return sd, nil
}

// clip shortens s for error messages.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func parseACL(s string, c *Control, present, protected, autoInheritReq, autoInherited Control, a Aliases) (*ACL, error) {
	*c |= present
	pos := 0
flags:
	for pos < len(s) {
		switch {
		case strings.HasPrefix(s[pos:], "P"):
			*c |= protected
			pos++
		case strings.HasPrefix(s[pos:], "AR"):
			*c |= autoInheritReq
			pos += 2
		case strings.HasPrefix(s[pos:], "AI"):
			*c |= autoInherited
			pos += 2
		default:
			break flags
		}
	}
	if s[pos:] == "NO_ACCESS_CONTROL" {
		return nil, nil
	}
	acl := NewACL()
	for pos < len(s) {
		if s[pos] != '(' {
			return nil, fmt.Errorf("offset %d: want '(' to start an ACE, found %q", pos, clip(s[pos:]))
		}
		end := strings.IndexByte(s[pos:], ')')
		if end < 0 {
			return nil, fmt.Errorf("offset %d: ACE is missing its ')'", pos)
		}
		ace, err := ParseACE(s[pos:pos+end+1], a)
		if err != nil {
			return nil, fmt.Errorf("offset %d: %w", pos, err)
		}
		acl.ACEs = append(acl.ACEs, ace)
		pos += end + 1
	}
	return acl, nil
}

// ParseACE parses one ACE string such as (OA;CIIO;RP;<guid>;<guid>;ED).
func ParseACE(s string, a Aliases) (ACE, error) {
	body, ok := strings.CutPrefix(s, "(")
	if body, ok = strings.CutSuffix(body, ")"); !ok || strings.ContainsAny(body, "()") {
		return ACE{}, fmt.Errorf("ACE %q: want one (type;flags;rights;object;inherited object;sid)", clip(s))
	}
	f := strings.Split(body, ";")
	if len(f) != 6 {
		return ACE{}, fmt.Errorf("ACE %q: %d fields, want 6 (conditional and resource-attribute ACEs are not supported)", clip(s), len(f))
	}
	var ace ACE
	var err error
	if ace.Flags, err = parseACEFlags(f[1]); err != nil {
		return ACE{}, fmt.Errorf("ACE %q: flags: %w", clip(s), err)
	}
	if hexType, ok := strings.CutPrefix(f[0], "0x"); ok {
		return parseOpaqueACE(s, ace.Flags, hexType, f)
	}
	found := false
	for t, letters := range typeLetters {
		if letters == f[0] {
			ace.Type, found = t, true
		}
	}
	if !found {
		return ACE{}, fmt.Errorf("ACE %q: unsupported ACE type %q", clip(s), f[0])
	}
	if ace.Mask, err = parseMask(f[2]); err != nil {
		return ACE{}, fmt.Errorf("ACE %q: rights: %w", clip(s), err)
	}
	for i, dst := range []*GUID{&ace.ObjectType, &ace.InheritedObjectType} {
		text := f[3+i]
		if text == "" {
			continue
		}
		if !ace.Type.IsObject() {
			return ACE{}, fmt.Errorf("ACE %q: %s ACEs carry no object GUIDs", clip(s), f[0])
		}
		if *dst, err = ParseGUID(text); err != nil {
			return ACE{}, fmt.Errorf("ACE %q: %w", clip(s), err)
		}
		ace.ObjectFlags |= ObjectFlags(1 << i)
	}
	if ace.SID, err = a.parseSID(f[5]); err != nil {
		return ACE{}, fmt.Errorf("ACE %q: %w", clip(s), err)
	}
	return ace, nil
}

// parseOpaqueACE parses the (0xTT;flags;;;;#hexbody) extension.
func parseOpaqueACE(s string, flags ACEFlags, hexType string, f []string) (ACE, error) {
	t, err := parseDigits(hexType, 16, 8)
	if err != nil {
		return ACE{}, fmt.Errorf("ACE %q: type: %w", clip(s), err)
	}
	ace := ACE{Type: ACEType(t), Flags: flags}
	if ace.Type.Modelled() {
		return ACE{}, fmt.Errorf("ACE %q: type %#02x has a letter form; hex types are for unmodelled ACEs", clip(s), t)
	}
	body, ok := strings.CutPrefix(f[5], "#")
	if f[2] != "" || f[3] != "" || f[4] != "" || !ok {
		return ACE{}, fmt.Errorf("ACE %q: an opaque ACE is (0xTT;flags;;;;#hexbody)", clip(s))
	}
	if ace.Opaque, err = hex.DecodeString(body); err != nil {
		return ACE{}, fmt.Errorf("ACE %q: opaque body: %w", clip(s), err)
	}
	if len(ace.Opaque) == 0 {
		ace.Opaque = nil
	}
	if len(ace.Opaque) > maxACELen-aceHeaderLen {
		return ACE{}, fmt.Errorf("ACE %q: opaque body of %d bytes does not fit in an ACE", clip(s), len(ace.Opaque))
	}
	return ace, nil
}

func parseNumber(s string, bits int) (uint64, bool, error) {
	if hexDigits, ok := strings.CutPrefix(s, "0x"); ok {
		v, err := parseDigits(hexDigits, 16, bits)
		return v, true, err
	}
	if s != "" && '0' <= s[0] && s[0] <= '9' {
		v, err := parseDigits(s, 10, bits)
		return v, true, err
	}
	return 0, false, nil
}

func parseMask(s string) (AccessMask, error) {
	if v, ok, err := parseNumber(s, 32); ok {
		return AccessMask(v), err
	}
	if len(s)%2 != 0 {
		return 0, fmt.Errorf("%q is not a sequence of two-letter rights", s)
	}
	var m AccessMask
next:
	for i := 0; i < len(s); i += 2 {
		tok := s[i : i+2]
		for _, r := range rightLetters {
			if r.letters == tok {
				m |= r.mask
				continue next
			}
		}
		if v, ok := compositeRights[tok]; ok {
			m |= v
			continue
		}
		return 0, fmt.Errorf("unknown right %q", tok)
	}
	return m, nil
}

func parseACEFlags(s string) (ACEFlags, error) {
	if v, ok, err := parseNumber(s, 8); ok {
		return ACEFlags(v), err
	}
	if len(s)%2 != 0 {
		return 0, fmt.Errorf("%q is not a sequence of two-letter flags", s)
	}
	var f ACEFlags
next:
	for i := 0; i < len(s); i += 2 {
		tok := s[i : i+2]
		for _, l := range flagLetters {
			if l.letters == tok {
				f |= l.flag
				continue next
			}
		}
		return 0, fmt.Errorf("unknown ACE flag %q", tok)
	}
	return f, nil
}

func (a Aliases) parseSID(s string) (SID, error) {
	if strings.HasPrefix(s, "S-") {
		return ParseSID(s)
	}
	if text, ok := fixedAliases[s]; ok {
		return MustParseSID(text), nil
	}
	if rid, ok := domainAliases[s]; ok {
		if a.Domain.IsZero() {
			return SID{}, fmt.Errorf("SID alias %s is domain-relative: Aliases.Domain is not set", s)
		}
		return DomainRelativeSID(a.Domain, rid)
	}
	if rid, ok := forestAliases[s]; ok {
		if a.ForestRoot.IsZero() {
			return SID{}, fmt.Errorf("SID alias %s is relative to the forest root: Aliases.ForestRoot is not set", s)
		}
		return DomainRelativeSID(a.ForestRoot, rid)
	}
	return SID{}, fmt.Errorf("unknown SID or alias %q", clip(s))
}
