package secdesc

import (
	"encoding/hex"
	"fmt"
)

// GUID is a 128-bit identifier held in the byte order of its canonical text
// form (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx). On the wire, in object ACEs
// and in objectGUID/schemaIDGUID values, Windows stores the first three
// fields little-endian; Bytes and GUIDFromBytes convert. The zero value is
// the nil GUID.
type GUID [16]byte

// GUIDLen is the length of a GUID's binary form.
const GUIDLen = 16

// Schema GUIDs used by the DKM template.
var (
	// GUIDTokenGroups is the schemaIDGUID of the tokenGroups attribute.
	GUIDTokenGroups = MustParseGUID("b7c69e6d-2cc7-11d2-854e-00a0c983f608")
	// GUIDClassUser is the schemaIDGUID of the user class.
	GUIDClassUser = MustParseGUID("bf967aba-0de6-11d0-a285-00aa003049e2")
	// GUIDClassGroup is the schemaIDGUID of the group class.
	GUIDClassGroup = MustParseGUID("bf967a9c-0de6-11d0-a285-00aa003049e2")
	// GUIDClassComputer is the schemaIDGUID of the computer class.
	GUIDClassComputer = MustParseGUID("bf967a86-0de6-11d0-a285-00aa003049e2")
)

// wireOrder maps wire byte i to text byte wireOrder[i]: Data1 (4 bytes),
// Data2 and Data3 (2 bytes each) are little-endian on the wire, Data4 is not.
var wireOrder = [GUIDLen]int{3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15}

// ParseGUID parses the canonical 36-character text form, in either case.
func ParseGUID(text string) (GUID, error) {
	var g GUID
	if len(text) != 36 || text[8] != '-' || text[13] != '-' || text[18] != '-' || text[23] != '-' {
		return g, fmt.Errorf("GUID %q: want the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", text)
	}
	digits := text[0:8] + text[9:13] + text[14:18] + text[19:23] + text[24:36]
	if _, err := hex.Decode(g[:], []byte(digits)); err != nil {
		return GUID{}, fmt.Errorf("GUID %q: %w", text, err)
	}
	return g, nil
}

// MustParseGUID is ParseGUID for constants and tests: it panics on error.
func MustParseGUID(text string) GUID {
	g, err := ParseGUID(text)
	if err != nil {
		panic(err)
	}
	return g
}

// GUIDFromBytes decodes the 16-byte wire form (first three fields
// little-endian), as objectGUID and object ACEs carry it.
func GUIDFromBytes(b []byte) (GUID, error) {
	var g GUID
	if len(b) != GUIDLen {
		return g, fmt.Errorf("GUID: %d bytes, want %d", len(b), GUIDLen)
	}
	for i, j := range wireOrder {
		g[j] = b[i]
	}
	return g, nil
}

// Bytes returns the 16-byte wire form (first three fields little-endian).
func (g GUID) Bytes() []byte { return g.appendBinary(nil) }

func (g GUID) appendBinary(b []byte) []byte {
	for _, j := range wireOrder {
		b = append(b, g[j])
	}
	return b
}

// IsZero reports whether g is the nil GUID.
func (g GUID) IsZero() bool { return g == GUID{} }

// String returns the canonical lowercase text form.
func (g GUID) String() string {
	h := hex.EncodeToString(g[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// MarshalText implements encoding.TextMarshaler.
func (g GUID) MarshalText() ([]byte, error) { return []byte(g.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (g *GUID) UnmarshalText(text []byte) error {
	v, err := ParseGUID(string(text))
	if err != nil {
		return err
	}
	*g = v
	return nil
}
