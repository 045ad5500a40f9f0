package secdesc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// ACEType is the AceType of an ACE header ([MS-DTYP] 2.4.4.1).
type ACEType uint8

// The ACE types this package models field by field. Every other type is kept
// as opaque bytes (ACE.Opaque) so that descriptors round-trip exactly.
const (
	ACETypeAccessAllowed       ACEType = 0x00 // SDDL A
	ACETypeAccessDenied        ACEType = 0x01 // SDDL D
	ACETypeSystemAudit         ACEType = 0x02 // SDDL AU
	ACETypeAccessAllowedObject ACEType = 0x05 // SDDL OA
	ACETypeAccessDeniedObject  ACEType = 0x06 // SDDL OD
	ACETypeSystemAuditObject   ACEType = 0x07 // SDDL OU
)

// Modelled reports whether this package decodes the type's fields; ACEs of
// other types carry their body in ACE.Opaque.
func (t ACEType) Modelled() bool {
	switch t {
	case ACETypeAccessAllowed, ACETypeAccessDenied, ACETypeSystemAudit,
		ACETypeAccessAllowedObject, ACETypeAccessDeniedObject, ACETypeSystemAuditObject:
		return true
	}
	return false
}

// IsObject reports whether the type is an object ACE, which may name an
// object type and an inherited object type by GUID.
func (t ACEType) IsObject() bool {
	return t == ACETypeAccessAllowedObject || t == ACETypeAccessDeniedObject || t == ACETypeSystemAuditObject
}

// ObjectFlags says which GUIDs an object ACE carries ([MS-DTYP] 2.4.4.3).
type ObjectFlags uint32

const (
	// ObjectTypePresent: ObjectType is present; the ACE applies to that
	// property, property set, extended right or child class.
	ObjectTypePresent ObjectFlags = 0x1
	// InheritedObjectTypePresent: InheritedObjectType is present; the ACE is
	// inherited only by objects of that class.
	InheritedObjectTypePresent ObjectFlags = 0x2
)

const (
	aceHeaderLen = 4
	maxACELen    = 0xFFFF
)

// ACE is an access control entry. Mask and SID apply to every modelled type;
// ObjectFlags, ObjectType and InheritedObjectType only to object types. For
// types that are not Modelled, Opaque holds everything after the 4-byte
// header and the other fields stay zero.
type ACE struct {
	Type                ACEType
	Flags               ACEFlags
	Mask                AccessMask
	SID                 SID
	ObjectFlags         ObjectFlags
	ObjectType          GUID
	InheritedObjectType GUID
	Opaque              []byte

	// trailer holds bytes that AceSize covers beyond the modelled fields,
	// kept only so that re-marshalling is exact.
	trailer []byte
}

// NewACE returns a non-object ACE.
func NewACE(t ACEType, flags ACEFlags, mask AccessMask, sid SID) ACE {
	return ACE{Type: t, Flags: flags, Mask: mask, SID: sid}
}

// NewObjectACE returns an object ACE; a zero GUID leaves its field absent.
func NewObjectACE(t ACEType, flags ACEFlags, mask AccessMask, sid SID, objectType, inheritedObjectType GUID) ACE {
	a := ACE{Type: t, Flags: flags, Mask: mask, SID: sid, ObjectType: objectType, InheritedObjectType: inheritedObjectType}
	if !objectType.IsZero() {
		a.ObjectFlags |= ObjectTypePresent
	}
	if !inheritedObjectType.IsZero() {
		a.ObjectFlags |= InheritedObjectTypePresent
	}
	return a
}

// IsInherited reports whether the ACE was inherited from a parent object.
func (a ACE) IsInherited() bool { return a.Flags&ACEFlagInherited != 0 }

// Equal reports whether a and b are the same ACE, byte for byte.
func (a ACE) Equal(b ACE) bool {
	return a.Type == b.Type && a.Flags == b.Flags && a.Mask == b.Mask && a.SID == b.SID &&
		a.ObjectFlags == b.ObjectFlags && a.ObjectType == b.ObjectType &&
		a.InheritedObjectType == b.InheritedObjectType &&
		bytes.Equal(a.Opaque, b.Opaque) && bytes.Equal(a.trailer, b.trailer)
}

// Clone returns a deep copy.
func (a ACE) Clone() ACE {
	a.Opaque = cloneBytes(a.Opaque)
	a.trailer = cloneBytes(a.trailer)
	return a
}

func cloneBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return bytes.Clone(b)
}

// Len is the ACE's binary length (its AceSize).
func (a ACE) Len() int {
	if !a.Type.Modelled() {
		return aceHeaderLen + len(a.Opaque) + len(a.trailer)
	}
	n := aceHeaderLen + 4 + a.SID.Len() + len(a.trailer)
	if a.Type.IsObject() {
		n += 4
		if a.ObjectFlags&ObjectTypePresent != 0 {
			n += GUIDLen
		}
		if a.ObjectFlags&InheritedObjectTypePresent != 0 {
			n += GUIDLen
		}
	}
	return n
}

// validate reports an ACE that cannot be encoded as it stands.
func (a ACE) validate() error {
	if !a.Type.Modelled() {
		if a.Mask != 0 || !a.SID.IsZero() || a.ObjectFlags != 0 || !a.ObjectType.IsZero() || !a.InheritedObjectType.IsZero() {
			return fmt.Errorf("ACE type %#02x is kept as opaque bytes: set Opaque, not Mask, SID or object fields", uint8(a.Type))
		}
	} else {
		if len(a.Opaque) != 0 {
			return fmt.Errorf("ACE type %#02x is modelled: Opaque must be nil", uint8(a.Type))
		}
		if a.SID.IsZero() {
			return errors.New("ACE has no SID")
		}
		if !a.Type.IsObject() && (a.ObjectFlags != 0 || !a.ObjectType.IsZero() || !a.InheritedObjectType.IsZero()) {
			return fmt.Errorf("ACE type %#02x is not an object ACE but has object type fields", uint8(a.Type))
		}
		if a.ObjectFlags&ObjectTypePresent == 0 && !a.ObjectType.IsZero() {
			return errors.New("object ACE has an ObjectType but not the ObjectTypePresent flag")
		}
		if a.ObjectFlags&InheritedObjectTypePresent == 0 && !a.InheritedObjectType.IsZero() {
			return errors.New("object ACE has an InheritedObjectType but not the InheritedObjectTypePresent flag")
		}
	}
	if n := a.Len(); n > maxACELen {
		return fmt.Errorf("ACE is %d bytes, more than the %d an AceSize can express", n, maxACELen)
	}
	return nil
}

func (a ACE) appendBinary(b []byte) ([]byte, error) {
	if err := a.validate(); err != nil {
		return nil, err
	}
	b = append(b, byte(a.Type), byte(a.Flags))
	b = binary.LittleEndian.AppendUint16(b, uint16(a.Len()))
	if !a.Type.Modelled() {
		b = append(b, a.Opaque...)
		return append(b, a.trailer...), nil
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(a.Mask))
	if a.Type.IsObject() {
		b = binary.LittleEndian.AppendUint32(b, uint32(a.ObjectFlags))
		if a.ObjectFlags&ObjectTypePresent != 0 {
			b = a.ObjectType.appendBinary(b)
		}
		if a.ObjectFlags&InheritedObjectTypePresent != 0 {
			b = a.InheritedObjectType.appendBinary(b)
		}
	}
	b = a.SID.appendBinary(b)
	return append(b, a.trailer...), nil
}

// decodeACE decodes the ACE starting at b[off:], bounded by b's length, and
// returns it with its AceSize. Offsets in errors are relative to b.
func decodeACE(b []byte, off int) (ACE, int, error) {
	if len(b)-off < aceHeaderLen {
		return ACE{}, 0, fmt.Errorf("ACE at offset %d: need a %d-byte header, %d bytes left", off, aceHeaderLen, len(b)-off)
	}
	a := ACE{Type: ACEType(b[off]), Flags: ACEFlags(b[off+1])}
	size := int(binary.LittleEndian.Uint16(b[off+2:]))
	if size < aceHeaderLen {
		return ACE{}, 0, fmt.Errorf("ACE at offset %d: AceSize %d is smaller than the header", off, size)
	}
	if size > len(b)-off {
		return ACE{}, 0, fmt.Errorf("ACE at offset %d: AceSize %d overruns the ACL (%d bytes left)", off, size, len(b)-off)
	}
	end := off + size
	if !a.Type.Modelled() {
		a.Opaque = cloneBytes(b[off+aceHeaderLen : end])
		return a, size, nil
	}
	body := b[:end] // bound every field read by AceSize
	pos := off + aceHeaderLen
	if end-pos < 4 {
		return ACE{}, 0, fmt.Errorf("ACE at offset %d: AceSize %d has no room for the access mask", off, size)
	}
	a.Mask = AccessMask(binary.LittleEndian.Uint32(body[pos:]))
	pos += 4
	if a.Type.IsObject() {
		if end-pos < 4 {
			return ACE{}, 0, fmt.Errorf("ACE at offset %d: AceSize %d has no room for the object flags", off, size)
		}
		a.ObjectFlags = ObjectFlags(binary.LittleEndian.Uint32(body[pos:]))
		pos += 4
		for _, f := range []struct {
			flag ObjectFlags
			dst  *GUID
			name string
		}{{ObjectTypePresent, &a.ObjectType, "ObjectType"}, {InheritedObjectTypePresent, &a.InheritedObjectType, "InheritedObjectType"}} {
			if a.ObjectFlags&f.flag == 0 {
				continue
			}
			if end-pos < GUIDLen {
				return ACE{}, 0, fmt.Errorf("ACE at offset %d: %s at offset %d overruns AceSize %d", off, f.name, pos, size)
			}
			*f.dst, _ = GUIDFromBytes(body[pos : pos+GUIDLen])
			pos += GUIDLen
		}
	}
	sid, n, err := decodeSID(body, pos)
	if err != nil {
		return ACE{}, 0, fmt.Errorf("ACE at offset %d: %w", off, err)
	}
	a.SID = sid
	a.trailer = cloneBytes(body[pos+n : end])
	return a, size, nil
}
