package secdesc

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
)

// Control is a security descriptor's control field ([MS-DTYP] 2.4.6).
type Control uint16

// Control flags.
const (
	ControlOwnerDefaulted     Control = 0x0001 // OD
	ControlGroupDefaulted     Control = 0x0002 // GD
	ControlDACLPresent        Control = 0x0004 // DP
	ControlDACLDefaulted      Control = 0x0008 // DD
	ControlSACLPresent        Control = 0x0010 // SP
	ControlSACLDefaulted      Control = 0x0020 // SD
	ControlDACLTrusted        Control = 0x0040 // DT
	ControlServerSecurity     Control = 0x0080 // SS
	ControlDACLAutoInheritReq Control = 0x0100 // DC; SDDL "AR" on D:
	ControlSACLAutoInheritReq Control = 0x0200 // SC; SDDL "AR" on S:
	ControlDACLAutoInherited  Control = 0x0400 // DI; SDDL "AI" on D:
	ControlSACLAutoInherited  Control = 0x0800 // SI; SDDL "AI" on S:
	ControlDACLProtected      Control = 0x1000 // PD; SDDL "P" on D:
	ControlSACLProtected      Control = 0x2000 // PS; SDDL "P" on S:
	ControlRMControlValid     Control = 0x4000 // RM: Sbz1 holds resource-manager bits
	ControlSelfRelative       Control = 0x8000 // SR
)

// Part names one of the four variable-length parts of a descriptor.
type Part uint8

const (
	PartOwner Part = iota + 1
	PartGroup
	PartSACL
	PartDACL
)

// Layout is the order in which the parts follow the 20-byte header in the
// self-relative form. [MS-DTYP] leaves it open; producers differ, and an exact
// round trip has to reproduce the producer's order. The zero Layout means
// LayoutSamba.
type Layout [4]Part

var (
	// LayoutSamba is the order Samba's NDR code writes (observed in every
	// descriptor a Samba 4.17 DC returned): owner, group, SACL, DACL.
	LayoutSamba = Layout{PartOwner, PartGroup, PartSACL, PartDACL}
	// LayoutWindows is the order Windows' SDDL conversion writes (the worked
	// example in [MS-DTYP] 2.5.1.4): SACL, DACL, owner, group.
	LayoutWindows = Layout{PartSACL, PartDACL, PartOwner, PartGroup}
)

func (l Layout) order() (Layout, error) {
	if l == (Layout{}) {
		return LayoutSamba, nil
	}
	var seen [5]bool
	for _, p := range l {
		if p < PartOwner || p > PartDACL || seen[p] {
			return Layout{}, fmt.Errorf("layout %v is not a permutation of owner, group, SACL, DACL", l)
		}
		seen[p] = true
	}
	return l, nil
}

const sdHeaderLen = 20

// SecurityDescriptor is a security descriptor in self-relative form. A zero
// Owner or Group, or a nil SACL or DACL, is absent (offset 0). A nil DACL
// with ControlDACLPresent set is a NULL DACL, which grants everyone
// everything. The Control bits are kept as read: setting a DACL does not set
// ControlDACLPresent by itself.
type SecurityDescriptor struct {
	// Sbz1 is reserved, or resource-manager bits when ControlRMControlValid.
	Sbz1    uint8
	Control Control
	Owner   SID
	Group   SID
	SACL    *ACL
	DACL    *ACL
	// Layout is the order of the parts in the binary form; ParseDescriptor
	// records the order it found, so re-marshalling is exact.
	Layout Layout
}

// IsDACLProtected reports whether the DACL blocks inheritance from parents.
func (sd *SecurityDescriptor) IsDACLProtected() bool {
	return sd != nil && sd.Control&ControlDACLProtected != 0
}

// Clone returns a deep copy.
func (sd *SecurityDescriptor) Clone() *SecurityDescriptor {
	if sd == nil {
		return nil
	}
	c := *sd
	c.SACL = sd.SACL.Clone()
	c.DACL = sd.DACL.Clone()
	return &c
}

// Equal reports whether sd and o have the same binary form.
func (sd *SecurityDescriptor) Equal(o *SecurityDescriptor) bool {
	if sd == nil || o == nil {
		return sd == o
	}
	if sd.Sbz1 != o.Sbz1 || sd.Control|ControlSelfRelative != o.Control|ControlSelfRelative ||
		sd.Owner != o.Owner || sd.Group != o.Group || !sd.SACL.Equal(o.SACL) || !sd.DACL.Equal(o.DACL) {
		return false
	}
	a, errA := sd.presentOrder()
	b, errB := o.presentOrder()
	return errA == nil && errB == nil && slices.Equal(a, b)
}

// presentOrder lists the parts sd has, in the order they are marshalled.
func (sd *SecurityDescriptor) presentOrder() ([]Part, error) {
	order, err := sd.Layout.order()
	if err != nil {
		return nil, err
	}
	var parts []Part
	for _, p := range order {
		if sd.has(p) {
			parts = append(parts, p)
		}
	}
	return parts, nil
}

func (sd *SecurityDescriptor) has(p Part) bool {
	switch p {
	case PartOwner:
		return !sd.Owner.IsZero()
	case PartGroup:
		return !sd.Group.IsZero()
	case PartSACL:
		return sd.SACL != nil
	case PartDACL:
		return sd.DACL != nil
	}
	return false
}

// MarshalBinary returns the self-relative binary form, as nTSecurityDescriptor
// holds it. ControlSelfRelative is always set.
func (sd *SecurityDescriptor) MarshalBinary() ([]byte, error) {
	parts, err := sd.presentOrder()
	if err != nil {
		return nil, err
	}
	b := make([]byte, sdHeaderLen, 256)
	b[0] = 1
	b[1] = sd.Sbz1
	binary.LittleEndian.PutUint16(b[2:], uint16(sd.Control|ControlSelfRelative))
	for _, p := range parts {
		off := uint32(len(b))
		switch p {
		case PartOwner:
			b = sd.Owner.appendBinary(b)
		case PartGroup:
			b = sd.Group.appendBinary(b)
		case PartSACL:
			if b, err = sd.SACL.appendBinary(b); err != nil {
				return nil, fmt.Errorf("SACL: %w", err)
			}
		case PartDACL:
			if b, err = sd.DACL.appendBinary(b); err != nil {
				return nil, fmt.Errorf("DACL: %w", err)
			}
		}
		binary.LittleEndian.PutUint32(b[4+4*offsetSlot(p):], off)
	}
	return b, nil
}

// offsetSlot is the index of a part's offset in the header (after
// revision, Sbz1 and control): owner, group, SACL, DACL.
func offsetSlot(p Part) int { return int(p - PartOwner) }

// UnmarshalBinary implements encoding.BinaryUnmarshaler with ParseDescriptor.
func (sd *SecurityDescriptor) UnmarshalBinary(b []byte) error {
	v, err := ParseDescriptor(b)
	if err != nil {
		return err
	}
	*sd = *v
	return nil
}

// ParseDescriptor decodes a self-relative security descriptor, e.g. an
// nTSecurityDescriptor value. It accepts descriptors without some parts, as
// AD returns them for a read with the SD flags control (e.g. DACL only).
// Bytes not covered by any part are not kept.
func ParseDescriptor(b []byte) (*SecurityDescriptor, error) {
	if len(b) < sdHeaderLen {
		return nil, fmt.Errorf("security descriptor: %d bytes, the header alone is %d", len(b), sdHeaderLen)
	}
	if b[0] != 1 {
		return nil, fmt.Errorf("security descriptor: revision %d at offset 0, want 1", b[0])
	}
	sd := &SecurityDescriptor{Sbz1: b[1], Control: Control(binary.LittleEndian.Uint16(b[2:]))}
	if sd.Control&ControlSelfRelative == 0 {
		return nil, fmt.Errorf("security descriptor: control %#04x at offset 2 lacks SE_SELF_RELATIVE; only the self-relative form can be parsed", uint16(sd.Control))
	}
	type located struct {
		part Part
		off  int
	}
	var found []located
	for p := PartOwner; p <= PartDACL; p++ {
		field := 4 + 4*offsetSlot(p)
		off := binary.LittleEndian.Uint32(b[field:])
		if off == 0 {
			continue
		}
		if off < sdHeaderLen || uint64(off) >= uint64(len(b)) {
			return nil, fmt.Errorf("security descriptor: %s offset %d (at offset %d) is outside the %d bytes after the header", partName(p), off, field, len(b))
		}
		var err error
		switch p {
		case PartOwner:
			sd.Owner, _, err = decodeSID(b, int(off))
		case PartGroup:
			sd.Group, _, err = decodeSID(b, int(off))
		case PartSACL:
			sd.SACL, _, err = decodeACL(b, int(off))
		case PartDACL:
			sd.DACL, _, err = decodeACL(b, int(off))
		}
		if err != nil {
			return nil, fmt.Errorf("security descriptor: %s: %w", partName(p), err)
		}
		found = append(found, located{p, int(off)})
	}
	// Remember the producer's order unless it is the default one.
	slices.SortStableFunc(found, func(x, y located) int { return cmp.Compare(x.off, y.off) })
	var order []Part
	for _, f := range found {
		order = append(order, f.part)
	}
	if !isSubsequence(order, LayoutSamba[:]) {
		var l Layout
		n := copy(l[:], order)
		for _, p := range LayoutSamba {
			if !slices.Contains(order, p) {
				l[n] = p
				n++
			}
		}
		sd.Layout = l
	}
	return sd, nil
}

// isSubsequence reports whether sub appears in seq in the same relative order.
func isSubsequence(sub, seq []Part) bool {
	i := 0
	for _, p := range seq {
		if i < len(sub) && sub[i] == p {
			i++
		}
	}
	return i == len(sub)
}

func partName(p Part) string {
	switch p {
	case PartOwner:
		return "owner"
	case PartGroup:
		return "group"
	case PartSACL:
		return "SACL"
	case PartDACL:
		return "DACL"
	}
	return fmt.Sprintf("part %d", uint8(p))
}

// String returns the SDDL form with every SID written in full.
func (sd *SecurityDescriptor) String() string { return FormatSDDL(sd, PlainSIDs) }
