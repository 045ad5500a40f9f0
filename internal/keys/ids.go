package keys

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
)

// KeyID names one key version: a GUID, generated as a random version-4 GUID,
// written in lowercase canonical form (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx).
// The bytes are in the order of that text (RFC 9562), which is also the order
// in which the envelope binds them.
//
// A key ID is not secret; it appears in AD (attribute l, CryptoPolicy
// displayName), in status and in replica Secrets.
type KeyID [16]byte

// NewKeyID returns a random version-4 key ID from crypto/rand.
func NewKeyID() (KeyID, error) {
	return newKeyID(rand.Reader)
}

func newKeyID(random io.Reader) (KeyID, error) {
	var id KeyID
	if _, err := io.ReadFull(random, id[:]); err != nil {
		return KeyID{}, fmt.Errorf("generating key ID: %w", err)
	}
	id[6] = id[6]&0x0f | 0x40 // version 4
	id[8] = id[8]&0x3f | 0x80 // RFC 9562 variant
	return id, nil
}

// FirstKeyID derives the ID of a container's first key from its DC Manager's objectGUID: a
// name-based (version 5, SHA-1) GUID, so every writer that creates the first key under the same
// DC Manager picks the same ID and AD lets only one of them add it. Later versions are random.
func FirstKeyID(manager ObjectGUID) KeyID {
	return nameBasedID(firstKeyNamespace, manager[:])
}

// ManagerGUID derives the GUID of a container's "DC Manager <GUID>" object name from the
// container's objectGUID, so writers racing to create it on one DC collide on one DN: the second
// add fails with entryAlreadyExists and its writer adopts the first's object.
func ManagerGUID(container ObjectGUID) KeyID {
	return nameBasedID(managerNamespace, container[:])
}

// managerNamespace is the name-space GUID of ManagerGUID (itself random, fixed forever).
var managerNamespace = [16]byte{0xa7, 0x31, 0x9e, 0x04, 0x6c, 0x52, 0x4b, 0x1d, 0x8e, 0x60, 0xf3, 0x2b, 0x95, 0xc8, 0x17, 0x4a}

// firstKeyNamespace is the name-space GUID of FirstKeyID (itself random, fixed forever).
var firstKeyNamespace = [16]byte{0x5b, 0x0e, 0x2c, 0x8a, 0x41, 0x7d, 0x4e, 0x93, 0x9c, 0x1f, 0x6a, 0x35, 0xd2, 0x84, 0x07, 0xe1}

// nameBasedID is RFC 9562's version-5 GUID of name in namespace.
func nameBasedID(namespace [16]byte, name []byte) KeyID {
	h := sha1.New()
	h.Write(namespace[:])
	h.Write(name)
	var id KeyID
	copy(id[:], h.Sum(nil))
	id[6] = id[6]&0x0f | 0x50 // version 5
	id[8] = id[8]&0x3f | 0x80 // RFC 9562 variant
	return id
}

// ParseKeyID parses a GUID in canonical text form. Upper and lower case are
// both accepted, because tools that touch AD do not agree on case; String
// always returns lower case. Any GUID version is accepted so that keys
// adopted from an existing DKM container load.
func ParseKeyID(s string) (KeyID, error) {
	b, ok := parseGUIDText(s)
	if !ok {
		return KeyID{}, fmt.Errorf("%w %s: want a GUID such as 3f2504e0-4f89-41d3-9a0c-0305e82c3301", ErrInvalidKeyID, quoteShort(s))
	}
	return KeyID(b), nil
}

// IsZero reports whether id is the nil GUID, which never names a key.
func (id KeyID) IsZero() bool { return id == KeyID{} }

// String returns the lowercase canonical text form.
func (id KeyID) String() string { return formatGUIDText(id) }

// MarshalText implements encoding.TextMarshaler.
func (id KeyID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *KeyID) UnmarshalText(text []byte) error {
	parsed, err := ParseKeyID(string(text))
	if err != nil {
		return err
	}
	*id = parsed
	return nil
}

// ObjectGUID is an AD objectGUID exactly as the directory returns it: 16
// bytes in Microsoft's wire order, where the first three fields are
// little-endian. The envelope binds these 16 bytes as they are.
type ObjectGUID [16]byte

// ObjectGUIDFromBytes takes the raw objectGUID attribute value.
func ObjectGUIDFromBytes(b []byte) (ObjectGUID, error) {
	if len(b) != len(ObjectGUID{}) {
		return ObjectGUID{}, fmt.Errorf("%w: %d bytes, want 16", ErrInvalidObjectGUID, len(b))
	}
	return ObjectGUID(b), nil
}

// ParseObjectGUID parses the text form AD tools show
// (Get-ADObject ... | Select ObjectGUID), case-insensitively.
func ParseObjectGUID(s string) (ObjectGUID, error) {
	b, ok := parseGUIDText(s)
	if !ok {
		return ObjectGUID{}, fmt.Errorf("%w %s: want a GUID such as 3f2504e0-4f89-41d3-9a0c-0305e82c3301", ErrInvalidObjectGUID, quoteShort(s))
	}
	return ObjectGUID(swapGUIDByteOrder(b)), nil
}

// IsZero reports whether g is the nil GUID.
func (g ObjectGUID) IsZero() bool { return g == ObjectGUID{} }

// String returns the lowercase text form AD tools show for this objectGUID.
func (g ObjectGUID) String() string { return formatGUIDText(swapGUIDByteOrder(g)) }

// MarshalText implements encoding.TextMarshaler.
func (g ObjectGUID) MarshalText() ([]byte, error) { return []byte(g.String()), nil }

// swapGUIDByteOrder converts between Microsoft wire order and text order by
// reversing the first three fields (4, 2 and 2 bytes). It is its own inverse.
func swapGUIDByteOrder(b [16]byte) [16]byte {
	out := b
	out[0], out[1], out[2], out[3] = b[3], b[2], b[1], b[0]
	out[4], out[5] = b[5], b[4]
	out[6], out[7] = b[7], b[6]
	return out
}

// guidHyphens are the positions of the hyphens in a canonical GUID.
var guidHyphens = [...]int{8, 13, 18, 23}

func parseGUIDText(s string) ([16]byte, bool) {
	var out [16]byte
	if len(s) != 36 {
		return out, false
	}
	for _, i := range guidHyphens {
		if s[i] != '-' {
			return out, false
		}
	}
	digits := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(out[:], []byte(digits)); err != nil {
		return out, false
	}
	return out, true
}

func formatGUIDText(b [16]byte) string {
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// quoteShort quotes untrusted text for an error message, cut short so that a
// garbage attribute value cannot flood a condition message.
func quoteShort(s string) string {
	const limit = 48
	if len(s) > limit {
		return fmt.Sprintf("%q...", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}
