package secdesc

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// ACLRevision is an ACL's AclRevision ([MS-DTYP] 2.4.5).
type ACLRevision uint8

const (
	// ACLRevisionNT allows only non-object ACE types.
	ACLRevisionNT ACLRevision = 2
	// ACLRevisionDS allows object ACEs too. Active Directory (Windows and
	// Samba) stores every ACL with this revision.
	ACLRevisionDS ACLRevision = 4
)

const (
	aclHeaderLen = 8
	maxACLLen    = 0xFFFF
)

// ACL is an access control list: a DACL or a SACL.
type ACL struct {
	Revision ACLRevision
	ACEs     []ACE

	// Reserved fields and bytes that AclSize covers after the last ACE, kept
	// only so that re-marshalling is exact.
	sbz1    uint8
	sbz2    uint16
	trailer []byte
}

// NewACL returns an ACL with revision ACLRevisionDS, as AD stores them.
func NewACL(aces ...ACE) *ACL {
	return &ACL{Revision: ACLRevisionDS, ACEs: aces}
}

// Len is the ACL's binary length (its AclSize).
func (acl *ACL) Len() int {
	n := aclHeaderLen + len(acl.trailer)
	for _, a := range acl.ACEs {
		n += a.Len()
	}
	return n
}

// Equal reports whether acl and o are the same ACL, byte for byte; nil
// equals only nil.
func (acl *ACL) Equal(o *ACL) bool {
	if acl == nil || o == nil {
		return acl == o
	}
	if acl.Revision != o.Revision || acl.sbz1 != o.sbz1 || acl.sbz2 != o.sbz2 ||
		!bytes.Equal(acl.trailer, o.trailer) || len(acl.ACEs) != len(o.ACEs) {
		return false
	}
	for i := range acl.ACEs {
		if !acl.ACEs[i].Equal(o.ACEs[i]) {
			return false
		}
	}
	return true
}

// Clone returns a deep copy; Clone of nil is nil.
func (acl *ACL) Clone() *ACL {
	if acl == nil {
		return nil
	}
	c := *acl
	c.trailer = cloneBytes(acl.trailer)
	c.ACEs = nil
	for _, a := range acl.ACEs {
		c.ACEs = append(c.ACEs, a.Clone())
	}
	return &c
}

func validRevision(r ACLRevision) bool { return r >= ACLRevisionNT && r <= ACLRevisionDS }

func (acl *ACL) appendBinary(b []byte) ([]byte, error) {
	if !validRevision(acl.Revision) {
		return nil, fmt.Errorf("ACL revision %d, want %d to %d", acl.Revision, ACLRevisionNT, ACLRevisionDS)
	}
	if len(acl.ACEs) > 0xFFFF {
		return nil, fmt.Errorf("ACL has %d ACEs, more than an AceCount can express", len(acl.ACEs))
	}
	size := acl.Len()
	if size > maxACLLen {
		return nil, fmt.Errorf("ACL is %d bytes, more than the %d an AclSize can express", size, maxACLLen)
	}
	b = append(b, byte(acl.Revision), acl.sbz1)
	b = binary.LittleEndian.AppendUint16(b, uint16(size))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(acl.ACEs)))
	b = binary.LittleEndian.AppendUint16(b, acl.sbz2)
	for i, a := range acl.ACEs {
		if a.Type.IsObject() && acl.Revision < ACLRevisionDS {
			return nil, fmt.Errorf("ACE %d: object ACE in an ACL of revision %d (needs %d)", i, acl.Revision, ACLRevisionDS)
		}
		var err error
		if b, err = a.appendBinary(b); err != nil {
			return nil, fmt.Errorf("ACE %d: %w", i, err)
		}
	}
	return append(b, acl.trailer...), nil
}

// decodeACL decodes the ACL starting at b[off:] and returns it with its
// AclSize. Offsets in errors are relative to b.
func decodeACL(b []byte, off int) (*ACL, int, error) {
	if off < 0 || off > len(b) || len(b)-off < aclHeaderLen {
		return nil, 0, fmt.Errorf("ACL at offset %d: need an %d-byte header, %d bytes available", off, aclHeaderLen, max(len(b)-off, 0))
	}
	acl := &ACL{
		Revision: ACLRevision(b[off]),
		sbz1:     b[off+1],
		sbz2:     binary.LittleEndian.Uint16(b[off+6:]),
	}
	if !validRevision(acl.Revision) {
		return nil, 0, fmt.Errorf("ACL at offset %d: revision %d, want %d to %d", off, acl.Revision, ACLRevisionNT, ACLRevisionDS)
	}
	size := int(binary.LittleEndian.Uint16(b[off+2:]))
	count := int(binary.LittleEndian.Uint16(b[off+4:]))
	if size < aclHeaderLen {
		return nil, 0, fmt.Errorf("ACL at offset %d: AclSize %d is smaller than the header", off, size)
	}
	if size > len(b)-off {
		return nil, 0, fmt.Errorf("ACL at offset %d: AclSize %d overruns the descriptor (%d bytes left)", off, size, len(b)-off)
	}
	end := off + size
	within := b[:end] // no ACE may reach past AclSize
	pos := off + aclHeaderLen
	for i := range count {
		a, n, err := decodeACE(within, pos)
		if err != nil {
			return nil, 0, fmt.Errorf("ACL at offset %d, ACE %d of %d: %w", off, i, count, err)
		}
		if a.Type.IsObject() && acl.Revision < ACLRevisionDS {
			return nil, 0, fmt.Errorf("ACL at offset %d, ACE %d at offset %d: object ACE in an ACL of revision %d (needs %d)", off, i, pos, acl.Revision, ACLRevisionDS)
		}
		acl.ACEs = append(acl.ACEs, a)
		pos += n
	}
	acl.trailer = cloneBytes(b[pos:end])
	return acl, size, nil
}
