package directory

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// Rights are the bound identity's effective rights on one object, as AD computes them
// (allowedChildClassesEffective, sDRightsEffective, allowedAttributesEffective).
type Rights struct {
	// Read: the object's attributes are readable (its objectClass came back).
	Read bool
	// WriteProperties: the ordinary attributes are writable (allowedAttributesEffective
	// lists description and displayName), as a "Write" or "Full Control" delegation grants.
	WriteProperties bool
	// CreateChild maps each class the identity may create below the object to true, keyed by
	// lDAPDisplayName as the DC returns it (e.g. "container", "contact"); see CanCreate.
	CreateChild map[string]bool
	// WriteDACL: sDRightsEffective includes DACL_SECURITY_INFORMATION (WRITE_DAC).
	WriteDACL bool
	// SDRights is sDRightsEffective itself: 1 owner, 2 group, 4 DACL, 8 SACL.
	SDRights uint32
	// WritableAttributes is allowedAttributesEffective.
	WritableAttributes []string
}

// Bits of sDRightsEffective (SECURITY_INFORMATION).
const (
	sdRightOwner = 0x1
	sdRightGroup = 0x2
	sdRightDACL  = 0x4
	sdRightSACL  = 0x8
)

// writeProbeAttributes are container attributes a real Write delegation makes writable.
var writeProbeAttributes = []string{"description", "displayName"}

// CanCreate reports whether the identity may create objects of class below the object
// (case-insensitive).
func (r Rights) CanCreate(class string) bool {
	if r.CreateChild[class] {
		return true
	}
	for k, ok := range r.CreateChild {
		if ok && strings.EqualFold(k, class) {
			return true
		}
	}
	return false
}

// Missing names, for people, what DKM needs on its container and the identity lacks: "Read",
// "Write", "Create container objects", "Create contact objects", and with needDACL
// "Modify permissions (WRITE_DAC)". Empty means nothing is missing.
func (r Rights) Missing(needDACL bool) []string {
	var out []string
	if !r.Read {
		out = append(out, "Read")
	}
	if !r.WriteProperties {
		out = append(out, "Write")
	}
	if !r.CanCreate("container") {
		out = append(out, "Create container objects")
	}
	if !r.CanCreate("contact") {
		out = append(out, "Create contact objects")
	}
	if needDACL && !r.WriteDACL {
		out = append(out, "Modify permissions (WRITE_DAC)")
	}
	return out
}

// EffectiveRights reads the bound identity's effective rights on dn. An object the identity
// cannot see is KindNoSuchObject, exactly as a missing one.
func (c *Client) EffectiveRights(ctx context.Context, dn string) (Rights, error) {
	if err := ValidateDN(dn); err != nil {
		return Rights{}, &Error{Op: "search", DN: dn, Kind: KindInvalidDN, Err: err}
	}
	req := ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)",
		[]string{"objectClass", "allowedChildClassesEffective", "sDRightsEffective", "allowedAttributesEffective"}, nil)
	res, err := c.search(ctx, req)
	if err != nil {
		return Rights{}, err
	}
	if len(res.Entries) != 1 {
		return Rights{}, &Error{Op: "search", DN: dn, Kind: KindNoSuchObject, Err: fmt.Errorf("%d entries", len(res.Entries))}
	}
	return rightsOf(res.Entries[0])
}

func rightsOf(e *ldap.Entry) (Rights, error) {
	r := Rights{
		Read:               len(attrValues(e, "objectClass")) > 0,
		CreateChild:        map[string]bool{},
		WritableAttributes: attrValues(e, "allowedAttributesEffective"),
	}
	for _, class := range attrValues(e, "allowedChildClassesEffective") {
		r.CreateChild[class] = true
	}
	if v := attrValue(e, "sDRightsEffective"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return Rights{}, &Error{Op: "search", DN: e.DN, Kind: KindOther, Err: fmt.Errorf("malformed sDRightsEffective %q", v)}
		}
		r.SDRights = uint32(n)
	}
	r.WriteDACL = r.SDRights&sdRightDACL != 0
	r.WriteProperties = true
	for _, want := range writeProbeAttributes {
		if !containsFold(r.WritableAttributes, want) {
			r.WriteProperties = false
		}
	}
	return r, nil
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
