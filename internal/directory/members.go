package directory

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// Member is an account or group found in a group's membership.
type Member struct {
	DN             string
	SID            secdesc.SID
	SAMAccountName string
	Group          bool
}

// Members lists the direct members of the group at groupDN that this domain holds, found by
// their memberOf back link (one subtree search). Primary-group membership (Domain Users of
// every user) is not in memberOf and is not listed: callers treat such groups as everybody.
func (c *Client) Members(ctx context.Context, groupDN string) ([]Member, error) {
	if err := ValidateDN(groupDN); err != nil {
		return nil, &Error{Op: "search", DN: groupDN, Kind: KindInvalidDN, Err: err}
	}
	d, err := c.Domain(ctx)
	if err != nil {
		return nil, err
	}
	req := ldap.NewSearchRequest(d.DN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(&(objectSid=*)(memberOf="+ldap.EscapeFilter(groupDN)+"))", []string{"objectSid", "sAMAccountName", "objectClass"}, nil)
	res, err := c.search(ctx, req)
	if err != nil {
		return nil, err
	}
	out := make([]Member, 0, len(res.Entries))
	for _, e := range res.Entries {
		sid, err := secdesc.SIDFromBytes(rawAttr(e, "objectSid"))
		if err != nil {
			return nil, &Error{Op: "search", DN: e.DN, Kind: KindOther, Err: fmt.Errorf("objectSid: %w", err)}
		}
		out = append(out, Member{DN: e.DN, SID: sid, SAMAccountName: attrValue(e, "sAMAccountName"),
			Group: slices.ContainsFunc(attrValues(e, "objectClass"), func(c string) bool { return strings.EqualFold(c, "group") })})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.DN, b.DN) })
	return out, nil
}

// IsGroup reports whether the object at dn is a group.
func (c *Client) IsGroup(ctx context.Context, dn string) (bool, error) {
	e, err := c.searchOne(ctx, dn, ldap.ScopeBaseObject, "(objectClass=*)", "objectClass")
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(attrValues(e, "objectClass"), func(c string) bool { return strings.EqualFold(c, "group") }), nil
}
