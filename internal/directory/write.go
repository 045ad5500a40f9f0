package directory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dkm-operator/dkm-operator/internal/secdesc"
	"github.com/go-ldap/ldap/v3"
)

// CreateContainer adds dn as a container whose nTSecurityDescriptor is sd, in the add request
// itself, so the object never exists with any other DACL. It returns the object as read back.
// A missing parent is KindParentMissing (ErrParentMissing); an existing object is
// KindAlreadyExists (ErrAlreadyExists). owner's record is written in the same add.
func (c *Client) CreateContainer(ctx context.Context, dn string, sd *secdesc.SecurityDescriptor, owner Owner) (Object, error) {
	if err := c.addWithSD(ctx, dn, "container", sd, owner, nil); err != nil {
		return Object{}, err
	}
	return c.readObject(ctx, dn)
}

// ReplaceDACL writes sd's DACL to dn with the SD flags control set to DACL only, so the owner,
// group and SACL are never touched. Only explicit ACEs are written (AD computes the inherited
// ones); sd's protection flag is kept.
func (c *Client) ReplaceDACL(ctx context.Context, dn string, sd *secdesc.SecurityDescriptor) error {
	if err := ValidateDN(dn); err != nil {
		return &Error{Op: "modify", DN: dn, Kind: KindInvalidDN, Err: err}
	}
	raw, err := secdesc.RepairDescriptor(sd).MarshalBinary()
	if err != nil {
		return &Error{Op: "modify", DN: dn, Kind: KindOther, Err: fmt.Errorf("encoding the DACL: %w", err)}
	}
	req := ldap.NewModifyRequest(dn, []ldap.Control{sdFlagsDACL()})
	req.Replace("nTSecurityDescriptor", []string{string(raw)})
	return c.run(ctx, "modify", dn, false, nil, func(conn *ldap.Conn) error { return conn.Modify(req) })
}

// CreateManager adds "CN=DC Manager <managerGUID>" (a container) under containerDN with
// secdesc.ChildDescriptor() and owner's record in the add, so it carries only the ACEs inherited
// from the container. The caller derives managerGUID from the container (keys.ManagerGUID), so
// a second writer's add fails with KindAlreadyExists instead of making a second DC Manager.
func (c *Client) CreateManager(ctx context.Context, containerDN, managerGUID string, owner Owner) (Object, error) {
	dn := ChildDN(containerDN, ManagerPrefix+managerGUID)
	if err := c.addWithSD(ctx, dn, "container", secdesc.ChildDescriptor(), owner, nil); err != nil {
		return Object{}, err
	}
	return c.readObject(ctx, dn)
}

// AddKey adds the key contact CN=<keyID> (l = keyID, thumbnailPhoto = blob) under managerDN,
// with secdesc.ChildDescriptor() and owner's record in the add. An existing key is never
// overwritten: it is KindAlreadyExists.
func (c *Client) AddKey(ctx context.Context, managerDN, keyID string, blob []byte, owner Owner) (KeyObject, error) {
	dn := ChildDN(managerDN, keyID)
	switch {
	case keyID == "":
		return KeyObject{}, &Error{Op: "add", DN: managerDN, Kind: KindConstraint, Err: errors.New("empty key ID")}
	case strings.EqualFold(keyID, PolicyName):
		return KeyObject{}, &Error{Op: "add", DN: dn, Kind: KindConstraint, Err: fmt.Errorf("%q is reserved for the policy contact", PolicyName)}
	case len(blob) == 0:
		return KeyObject{}, &Error{Op: "add", DN: dn, Kind: KindConstraint, Err: errors.New("empty key blob")}
	}
	attrs := map[string][]string{"l": {keyID}, "thumbnailPhoto": {string(blob)}}
	if err := c.addWithSD(ctx, dn, "contact", secdesc.ChildDescriptor(), owner, attrs, blob); err != nil {
		return KeyObject{}, err
	}
	obj, err := c.readObject(ctx, dn)
	if err != nil {
		return KeyObject{}, err
	}
	return KeyObject{Object: obj, ID: keyID, Blob: slices.Clone(blob)}, nil
}

// SetActiveKey moves the manager's CryptoPolicy contact (its displayName) from fromID to toID
// as a compare-and-swap, never a blind replace: with fromID empty it adds the contact (with
// secdesc.ChildDescriptor() and owner's record), which fails with KindAlreadyExists when another
// writer added it first; otherwise one modify deletes the value fromID and adds toID, which AD
// applies atomically or refuses (KindConflict) when displayName no longer is fromID.
func (c *Client) SetActiveKey(ctx context.Context, managerDN, fromID, toID string, owner Owner) error {
	if toID == "" {
		return &Error{Op: "modify", DN: managerDN, Kind: KindConstraint, Err: errors.New("empty key ID")}
	}
	dn := ChildDN(managerDN, PolicyName)
	if fromID == "" {
		return c.addWithSD(ctx, dn, "contact", secdesc.ChildDescriptor(), owner, map[string][]string{"displayName": {toID}})
	}
	return c.swapValue(ctx, dn, "displayName", fromID, toID)
}

// SetOwner moves dn's ownership record from the raw value from (empty: the object has none) to
// to, as a compare-and-swap like SetActiveKey: it fails with KindConflict (or
// KindAlreadyExists) when the record is no longer from.
func (c *Client) SetOwner(ctx context.Context, dn, from string, to Owner) error {
	if err := to.Validate(); err != nil {
		return &Error{Op: "modify", DN: dn, Kind: KindConstraint, Err: err}
	}
	return c.swapValue(ctx, dn, OwnerAttribute, from, to.String())
}

// swapValue replaces attr's value from with to in one modify (delete the old value, add the new
// one); from empty adds to and fails when the attribute already has a value.
func (c *Client) swapValue(ctx context.Context, dn, attr, from, to string) error {
	if err := ValidateDN(dn); err != nil {
		return &Error{Op: "modify", DN: dn, Kind: KindInvalidDN, Err: err}
	}
	req := ldap.NewModifyRequest(dn, nil)
	if from != "" {
		req.Delete(attr, []string{from})
	}
	req.Add(attr, []string{to})
	err := c.run(ctx, "modify", dn, false, nil, func(conn *ldap.Conn) error { return conn.Modify(req) })
	var e *Error
	if errors.As(err, &e) && e.Kind == KindConstraint {
		switch e.Code {
		case ldap.LDAPResultNoSuchAttribute, ldap.LDAPResultConstraintViolation, ldap.LDAPResultAttributeOrValueExists:
			// The old value is gone, or a value is there that we did not expect: someone else won.
			e.Kind = KindConflict
		}
	}
	return err
}

// ReplaceKeyBlob replaces a key contact's thumbnailPhoto (for re-wrapping under a new KEK).
func (c *Client) ReplaceKeyBlob(ctx context.Context, keyDN string, blob []byte) error {
	if err := ValidateDN(keyDN); err != nil {
		return &Error{Op: "modify", DN: keyDN, Kind: KindInvalidDN, Err: err}
	}
	if len(blob) == 0 {
		return &Error{Op: "modify", DN: keyDN, Kind: KindConstraint, Err: errors.New("empty key blob")}
	}
	req := ldap.NewModifyRequest(keyDN, nil)
	req.Replace("thumbnailPhoto", []string{string(blob)})
	return c.run(ctx, "modify", keyDN, false, [][]byte{blob}, func(conn *ldap.Conn) error { return conn.Modify(req) })
}

// DeleteOwned deletes what owner created at and below the object whose objectGUID is root:
// every object whose record names owner with origin created, deepest first, each addressed by
// its objectGUID (<GUID=...>), so an object renamed or replaced since it was read is never
// deleted through a stale DN. Objects without that record (a person's, another owner's, or one
// owner merely claimed) and replication conflict objects (IsConflictName) are left, and so are
// their ancestors; left lists them. A root that no longer exists is not an error.
func (c *Client) DeleteOwned(ctx context.Context, root secdesc.GUID, owner Owner) (left []string, err error) {
	base := "<GUID=" + root.String() + ">"
	res, err := c.search(ctx, ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"objectGUID", OwnerAttribute}, nil))
	if errors.Is(err, ErrNoSuchObject) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	type item struct {
		dn    string
		guid  secdesc.GUID
		depth int
		owned bool
	}
	var items []item
	for _, entry := range res.Entries {
		parsed, perr := ParseDN(entry.DN)
		if perr != nil {
			return nil, &Error{Op: "delete", DN: entry.DN, Kind: KindOther, Err: perr}
		}
		it := item{dn: entry.DN, depth: len(parsed.RDNs)}
		if it.guid, perr = secdesc.GUIDFromBytes(rawAttr(entry, "objectGUID")); perr != nil {
			return nil, &Error{Op: "delete", DN: entry.DN, Kind: KindInsufficientAccess, Err: fmt.Errorf("objectGUID unreadable: %w", perr)}
		}
		rec, perr := ParseOwner(attrValue(entry, OwnerAttribute))
		// A replication conflict object may hold the only copy of a key some replica used: it
		// is a person's decision, never deleted here (nor anything above it).
		it.owned = perr == nil && rec.Equal(owner) && !rec.Claimed && !inConflict(parsed, &ldap.DN{})
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, b item) int { return cmp.Compare(b.depth, a.depth) })
	for _, it := range items {
		if !it.owned {
			left = append(left, it.dn)
			continue
		}
		req := ldap.NewDelRequest("<GUID="+it.guid.String()+">", nil)
		err := c.run(ctx, "delete", it.dn, false, nil, func(conn *ldap.Conn) error { return conn.Del(req) })
		switch {
		case err == nil, errors.Is(err, ErrNoSuchObject):
		case KindOf(err) == KindConstraint: // notAllowedOnNonLeaf: something left inside it
			left = append(left, it.dn)
		default:
			return left, err
		}
	}
	return left, nil
}

// addWithSD adds dn with the given structural class and nTSecurityDescriptor in the same
// request. secrets are redacted from any error the server returns.
func (c *Client) addWithSD(ctx context.Context, dn, class string, sd *secdesc.SecurityDescriptor, owner Owner, attrs map[string][]string, secrets ...[]byte) error {
	if err := ValidateDN(dn); err != nil {
		return &Error{Op: "add", DN: dn, Kind: KindInvalidDN, Err: err}
	}
	if sd == nil {
		// Never let AD apply the class default (which grants Authenticated Users read).
		return &Error{Op: "add", DN: dn, Kind: KindOther, Err: errors.New("no security descriptor for the new object")}
	}
	if err := owner.Validate(); err != nil {
		// Every object the operator makes carries its record: an object without one is not ours.
		return &Error{Op: "add", DN: dn, Kind: KindOther, Err: err}
	}
	raw, err := sd.MarshalBinary()
	if err != nil {
		return &Error{Op: "add", DN: dn, Kind: KindOther, Err: fmt.Errorf("encoding the security descriptor: %w", err)}
	}
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{class})
	req.Attribute("nTSecurityDescriptor", []string{string(raw)})
	req.Attribute(OwnerAttribute, []string{owner.String()})
	names := make([]string, 0, len(attrs))
	for name := range attrs {
		names = append(names, name)
	}
	slices.Sort(names) // deterministic requests
	for _, name := range names {
		req.Attribute(name, attrs[name])
	}
	return c.run(ctx, "add", dn, false, secrets, func(conn *ldap.Conn) error { return conn.Add(req) })
}

// readObject reads back one object's common attributes (DACL only).
func (c *Client) readObject(ctx context.Context, dn string) (Object, error) {
	req := ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)",
		[]string{"nTSecurityDescriptor", "objectGUID", "uSNChanged", "whenCreated", "objectClass", OwnerAttribute}, []ldap.Control{sdFlagsDACL()})
	res, err := c.search(ctx, req)
	if err != nil {
		return Object{}, err
	}
	if len(res.Entries) != 1 {
		return Object{}, &Error{Op: "search", DN: dn, Kind: KindNoSuchObject, Err: fmt.Errorf("%d entries", len(res.Entries))}
	}
	return objectOf(res.Entries[0])
}
