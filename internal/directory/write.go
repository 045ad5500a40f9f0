package directory

import (
	"cmp"
	"context"
	"crypto/rand"
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
// KindAlreadyExists (ErrAlreadyExists).
func (c *Client) CreateContainer(ctx context.Context, dn string, sd *secdesc.SecurityDescriptor) (Object, error) {
	if err := c.addWithSD(ctx, dn, "container", sd, nil); err != nil {
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

// CreateManager adds "CN=DC Manager <new random GUID>" (a container) under containerDN with
// secdesc.ChildDescriptor() in the add, so it carries only the ACEs inherited from the
// container.
func (c *Client) CreateManager(ctx context.Context, containerDN string) (Object, error) {
	id, err := randomGUID()
	if err != nil {
		return Object{}, &Error{Op: "add", DN: containerDN, Kind: KindOther, Err: err}
	}
	dn := ChildDN(containerDN, ManagerPrefix+id.String())
	if err := c.addWithSD(ctx, dn, "container", secdesc.ChildDescriptor(), nil); err != nil {
		return Object{}, err
	}
	return c.readObject(ctx, dn)
}

// AddKey adds the key contact CN=<keyID> (l = keyID, thumbnailPhoto = blob) under managerDN,
// with secdesc.ChildDescriptor() in the add. An existing key is never overwritten: it is
// KindAlreadyExists.
func (c *Client) AddKey(ctx context.Context, managerDN, keyID string, blob []byte) (KeyObject, error) {
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
	if err := c.addWithSD(ctx, dn, "contact", secdesc.ChildDescriptor(), attrs, blob); err != nil {
		return KeyObject{}, err
	}
	obj, err := c.readObject(ctx, dn)
	if err != nil {
		return KeyObject{}, err
	}
	return KeyObject{Object: obj, ID: keyID, Blob: slices.Clone(blob)}, nil
}

// SetActiveKey points the manager's CryptoPolicy contact at keyID (its displayName), creating
// the contact (with secdesc.ChildDescriptor() in the add) when it does not exist yet.
func (c *Client) SetActiveKey(ctx context.Context, managerDN, keyID string) error {
	if keyID == "" {
		return &Error{Op: "modify", DN: managerDN, Kind: KindConstraint, Err: errors.New("empty key ID")}
	}
	dn := ChildDN(managerDN, PolicyName)
	modify := func() error {
		req := ldap.NewModifyRequest(dn, nil)
		req.Replace("displayName", []string{keyID})
		return c.run(ctx, "modify", dn, false, nil, func(conn *ldap.Conn) error { return conn.Modify(req) })
	}
	// The contact usually exists (it is created once, then rotated): modify first.
	err := modify()
	if !errors.Is(err, ErrNoSuchObject) {
		return err
	}
	err = c.addWithSD(ctx, dn, "contact", secdesc.ChildDescriptor(), map[string][]string{"displayName": {keyID}})
	if errors.Is(err, ErrAlreadyExists) {
		return modify() // someone else created it in between
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

// DeleteTree deletes dn and everything below it, with the tree-delete control
// (1.2.840.113556.1.4.805) when the DC supports it, else child by child, deepest first.
// A dn that does not exist is not an error (deleting is idempotent).
func (c *Client) DeleteTree(ctx context.Context, dn string) error {
	if err := ValidateDN(dn); err != nil {
		return &Error{Op: "delete", DN: dn, Kind: KindInvalidDN, Err: err}
	}
	del := func(target string, ctrls []ldap.Control) error {
		req := ldap.NewDelRequest(target, ctrls)
		return c.run(ctx, "delete", target, false, nil, func(conn *ldap.Conn) error { return conn.Del(req) })
	}
	if !c.noTreeDelete {
		err := del(dn, []ldap.Control{ldap.NewControlSubtreeDelete()})
		var e *Error
		if err == nil || errors.Is(err, ErrNoSuchObject) {
			return nil
		}
		if !errors.As(err, &e) || (e.Code != ldap.LDAPResultUnavailableCriticalExtension && e.Code != ldap.LDAPResultUnwillingToPerform) {
			return err
		}
	}
	// No tree delete here: list the subtree and delete the deepest objects first.
	res, err := c.search(ctx, ldap.NewSearchRequest(dn, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"1.1"}, nil))
	if errors.Is(err, ErrNoSuchObject) {
		return nil
	}
	if err != nil {
		return err
	}
	type item struct {
		dn    string
		depth int
	}
	var items []item
	for _, entry := range res.Entries {
		parsed, perr := ParseDN(entry.DN)
		if perr != nil {
			return &Error{Op: "delete", DN: entry.DN, Kind: KindOther, Err: perr}
		}
		items = append(items, item{entry.DN, len(parsed.RDNs)})
	}
	slices.SortFunc(items, func(a, b item) int { return cmp.Compare(b.depth, a.depth) })
	for _, it := range items {
		if err := del(it.dn, nil); err != nil && !errors.Is(err, ErrNoSuchObject) {
			return err
		}
	}
	return nil
}

// addWithSD adds dn with the given structural class and nTSecurityDescriptor in the same
// request. secrets are redacted from any error the server returns.
func (c *Client) addWithSD(ctx context.Context, dn, class string, sd *secdesc.SecurityDescriptor, attrs map[string][]string, secrets ...[]byte) error {
	if err := ValidateDN(dn); err != nil {
		return &Error{Op: "add", DN: dn, Kind: KindInvalidDN, Err: err}
	}
	if sd == nil {
		// Never let AD apply the class default (which grants Authenticated Users read).
		return &Error{Op: "add", DN: dn, Kind: KindOther, Err: errors.New("no security descriptor for the new object")}
	}
	raw, err := sd.MarshalBinary()
	if err != nil {
		return &Error{Op: "add", DN: dn, Kind: KindOther, Err: fmt.Errorf("encoding the security descriptor: %w", err)}
	}
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{class})
	req.Attribute("nTSecurityDescriptor", []string{string(raw)})
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
		[]string{"nTSecurityDescriptor", "objectGUID", "uSNChanged", "whenCreated"}, []ldap.Control{sdFlagsDACL()})
	res, err := c.search(ctx, req)
	if err != nil {
		return Object{}, err
	}
	if len(res.Entries) != 1 {
		return Object{}, &Error{Op: "search", DN: dn, Kind: KindNoSuchObject, Err: fmt.Errorf("%d entries", len(res.Entries))}
	}
	return objectOf(res.Entries[0])
}

// randomGUID returns a random version-4 GUID.
func randomGUID() (secdesc.GUID, error) {
	var g secdesc.GUID
	if _, err := rand.Read(g[:]); err != nil {
		return g, fmt.Errorf("generating a GUID: %w", err)
	}
	g[6] = g[6]&0x0f | 0x40
	g[8] = g[8]&0x3f | 0x80
	return g, nil
}
