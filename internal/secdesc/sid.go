package secdesc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

const (
	sidRevision = 1
	// MaxSubAuthorities is the most sub-authorities a SID may carry ([MS-DTYP] 2.4.2.2).
	MaxSubAuthorities = 15
	sidHeaderLen      = 8
	maxAuthority      = 1<<48 - 1
)

// SID is a security identifier ([MS-DTYP] 2.4.2). The zero value means "no
// SID" (see IsZero); every other value is valid. SID is comparable, so it can
// be used with == and as a map key.
type SID struct {
	revision  uint8 // sidRevision for every valid SID; 0 only in the zero value
	count     uint8
	authority uint64 // 48 bits
	sub       [MaxSubAuthorities]uint32
}

// Relative identifiers of the well-known domain accounts and groups used here.
const (
	RIDAdministrator     uint32 = 500
	RIDDomainAdmins      uint32 = 512
	RIDDomainControllers uint32 = 516
	RIDSchemaAdmins      uint32 = 518
	RIDEnterpriseAdmins  uint32 = 519
)

// Well-known SIDs with fixed values.
var (
	SIDEveryone                    = mustSID(1, 0)
	SIDCreatorOwner                = mustSID(3, 0)
	SIDEnterpriseDomainControllers = mustSID(5, 9)
	SIDPrincipalSelf               = mustSID(5, 10)
	SIDAuthenticatedUsers          = mustSID(5, 11)
	SIDLocalSystem                 = mustSID(5, 18)
	SIDBuiltinAdministrators       = mustSID(5, 32, 544)
)

func mustSID(authority uint64, sub ...uint32) SID {
	s, err := NewSID(authority, sub...)
	if err != nil {
		panic(err)
	}
	return s
}

// NewSID builds a SID from its identifier authority (48 bits) and
// sub-authorities (at most 15).
func NewSID(authority uint64, subAuthorities ...uint32) (SID, error) {
	if authority > maxAuthority {
		return SID{}, fmt.Errorf("SID identifier authority %#x does not fit in 48 bits", authority)
	}
	if len(subAuthorities) > MaxSubAuthorities {
		return SID{}, fmt.Errorf("SID has %d sub-authorities, at most %d are allowed", len(subAuthorities), MaxSubAuthorities)
	}
	s := SID{revision: sidRevision, count: uint8(len(subAuthorities)), authority: authority}
	copy(s.sub[:], subAuthorities)
	return s, nil
}

// MustParseSID is ParseSID for constants and tests: it panics on error.
func MustParseSID(text string) SID {
	s, err := ParseSID(text)
	if err != nil {
		panic(err)
	}
	return s
}

// ParseSID parses the text form S-1-<authority>(-<sub-authority>)*. The
// authority is decimal, or hexadecimal with a 0x prefix (the form Windows
// uses for authorities of 2^32 and above); sub-authorities are decimal.
func ParseSID(text string) (SID, error) {
	rest, ok := strings.CutPrefix(text, "S-1-")
	if !ok {
		return SID{}, fmt.Errorf("SID %q: must start with \"S-1-\"", text)
	}
	fields := strings.Split(rest, "-")
	if len(fields)-1 > MaxSubAuthorities {
		return SID{}, fmt.Errorf("SID %q: %d sub-authorities, at most %d are allowed", text, len(fields)-1, MaxSubAuthorities)
	}
	var authority uint64
	var err error
	if hex, ok := strings.CutPrefix(fields[0], "0x"); ok {
		authority, err = parseDigits(hex, 16, 48)
	} else {
		authority, err = parseDigits(fields[0], 10, 48)
	}
	if err != nil {
		return SID{}, fmt.Errorf("SID %q: identifier authority: %w", text, err)
	}
	sub := make([]uint32, 0, len(fields)-1)
	for i, f := range fields[1:] {
		v, err := parseDigits(f, 10, 32)
		if err != nil {
			return SID{}, fmt.Errorf("SID %q: sub-authority %d: %w", text, i, err)
		}
		sub = append(sub, uint32(v))
	}
	return NewSID(authority, sub...)
}

// parseDigits is strconv.ParseUint without its leniencies (signs,
// underscores, prefixes): SIDs are digits only.
func parseDigits(s string, base, bits int) (uint64, error) {
	if s == "" {
		return 0, errors.New("empty number")
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || base == 16 && ('a' <= c && c <= 'f' || 'A' <= c && c <= 'F')) {
			return 0, fmt.Errorf("%q is not a base-%d number", s, base)
		}
	}
	v, err := strconv.ParseUint(s, base, bits)
	if err != nil {
		return 0, fmt.Errorf("%q out of range for %d bits", s, bits)
	}
	return v, nil
}

// SIDFromBytes decodes a binary SID ([MS-DTYP] 2.4.2.2) that fills b exactly,
// such as an objectSid attribute value.
func SIDFromBytes(b []byte) (SID, error) {
	s, n, err := decodeSID(b, 0)
	if err != nil {
		return SID{}, err
	}
	if n != len(b) {
		return SID{}, fmt.Errorf("SID: %d trailing bytes after a %d-byte SID", len(b)-n, n)
	}
	return s, nil
}

// decodeSID decodes the binary SID starting at b[off:] and returns it with
// its length. Offsets in errors are relative to b.
func decodeSID(b []byte, off int) (SID, int, error) {
	if off < 0 || off > len(b) || len(b)-off < sidHeaderLen {
		return SID{}, 0, fmt.Errorf("SID at offset %d: need %d header bytes, %d available", off, sidHeaderLen, max(len(b)-off, 0))
	}
	if b[off] != sidRevision {
		return SID{}, 0, fmt.Errorf("SID at offset %d: revision %d, want %d", off, b[off], sidRevision)
	}
	count := int(b[off+1])
	if count > MaxSubAuthorities {
		return SID{}, 0, fmt.Errorf("SID at offset %d: %d sub-authorities, at most %d are allowed", off, count, MaxSubAuthorities)
	}
	n := sidHeaderLen + 4*count
	if len(b)-off < n {
		return SID{}, 0, fmt.Errorf("SID at offset %d: %d sub-authorities need %d bytes, %d available", off, count, n, len(b)-off)
	}
	s := SID{revision: sidRevision, count: uint8(count)}
	for _, c := range b[off+2 : off+8] { // the authority is big-endian
		s.authority = s.authority<<8 | uint64(c)
	}
	for i := range count {
		s.sub[i] = binary.LittleEndian.Uint32(b[off+8+4*i:])
	}
	return s, n, nil
}

// IsZero reports whether s is the zero value, i.e. no SID at all.
func (s SID) IsZero() bool { return s.revision == 0 }

// Authority returns the 48-bit identifier authority (5 for NT AUTHORITY).
func (s SID) Authority() uint64 { return s.authority }

// SubAuthorities returns a copy of the sub-authorities.
func (s SID) SubAuthorities() []uint32 { return append([]uint32(nil), s.sub[:s.count]...) }

// Len is the length of the binary form in bytes (0 for the zero SID).
func (s SID) Len() int {
	if s.IsZero() {
		return 0
	}
	return sidHeaderLen + 4*int(s.count)
}

// Bytes returns the binary form, as objectSid holds it. The zero SID has none.
func (s SID) Bytes() []byte { return s.appendBinary(nil) }

func (s SID) appendBinary(b []byte) []byte {
	if s.IsZero() {
		return b
	}
	b = append(b, s.revision, s.count)
	for shift := 40; shift >= 0; shift -= 8 {
		b = append(b, byte(s.authority>>shift))
	}
	for _, v := range s.sub[:s.count] {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

// String returns the S-1-... form; the zero SID is "".
func (s SID) String() string {
	if s.IsZero() {
		return ""
	}
	var sb strings.Builder
	sb.WriteString("S-1-")
	if s.authority >= 1<<32 {
		fmt.Fprintf(&sb, "0x%012X", s.authority)
	} else {
		sb.WriteString(strconv.FormatUint(s.authority, 10))
	}
	for _, v := range s.sub[:s.count] {
		sb.WriteByte('-')
		sb.WriteString(strconv.FormatUint(uint64(v), 10))
	}
	return sb.String()
}

// MarshalText implements encoding.TextMarshaler (the zero SID is empty).
func (s SID) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (empty gives the zero SID).
func (s *SID) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*s = SID{}
		return nil
	}
	v, err := ParseSID(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// IsDomainSID reports whether s has the form of an AD domain SID,
// S-1-5-21-x-y-z, to which account RIDs are appended.
func (s SID) IsDomainSID() bool {
	return s.revision == sidRevision && s.authority == 5 && s.count == 4 && s.sub[0] == 21
}

// DomainRelativeSID returns the SID of the account or group with the given
// RID in a domain, e.g. Domain Admins is DomainRelativeSID(domain, 512).
func DomainRelativeSID(domain SID, rid uint32) (SID, error) {
	if !domain.IsDomainSID() {
		return SID{}, fmt.Errorf("%q is not a domain SID (S-1-5-21-x-y-z)", domain)
	}
	s := domain
	s.sub[s.count] = rid
	s.count++
	return s, nil
}

// SplitDomainRID splits a domain account SID (S-1-5-21-x-y-z-rid) into the
// domain SID and the RID; ok is false for any other SID.
func (s SID) SplitDomainRID() (domain SID, rid uint32, ok bool) {
	if s.revision != sidRevision || s.authority != 5 || s.count != 5 || s.sub[0] != 21 {
		return SID{}, 0, false
	}
	domain = s
	domain.count--
	domain.sub[domain.count] = 0
	return domain, s.sub[s.count-1], true
}
