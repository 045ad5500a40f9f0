package directory

import (
	"cmp"
	"slices"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// MaxNotificationsPerConn is how many change-notification searches one LDAP connection may
// hold: Windows AD's MaxNotificationPerConn query policy defaults to 5, and Samba enforces the
// same default (a sixth search ends with adminLimitExceeded, "MaxNotificationPerConn reached").
const MaxNotificationsPerConn = 5

// notifySearch is one change-notification search a watch group holds open.
type notifySearch struct {
	base  string
	scope int
	// deleted marks the one-level search on a naming context's Deleted Objects container
	// (with the show-deleted control): AD does not notify a subtree search of a deletion
	// below it, only of the tombstone appearing there, with lastKnownParent naming its old
	// parent.
	deleted bool
}

// request is the go-ldap search request for s. The filter is the only one AD allows for
// notifications; the attributes are what matching needs.
func (s notifySearch) request() *ldap.SearchRequest {
	controls := []ldap.Control{ldap.NewControlMicrosoftNotification()}
	if s.deleted {
		controls = append(controls, ldap.NewControlMicrosoftShowDeleted())
	}
	return ldap.NewSearchRequest(s.base, s.scope, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"objectGUID", "uSNChanged", "lastKnownParent", "isDeleted"}, controls)
}

// planSearches chooses the notification searches that see every change to the containers and
// everything below them: one subtree search per distinct parent of the containers (so N
// containers in one parent, the common case, cost one search), except that a container right
// below a naming context's root is watched itself (a subtree search on the root would deliver
// every change in the domain), plus one search per naming context on its Deleted Objects.
// The result is sorted, so an unchanged set of containers gives an equal plan. DNs that do not
// parse are skipped (the reconciler refuses them before it watches).
func planSearches(containers []string) []notifySearch {
	containers = slices.Sorted(slices.Values(containers)) // the first of equal DNs wins: be deterministic
	var bases []*ldap.DN
	ncs := map[string]string{}
	for _, c := range containers {
		dn, err := ParseDN(c)
		if err != nil || len(dn.RDNs) == 0 {
			continue
		}
		nc := namingContext(dn)
		if d := "CN=Deleted Objects," + FormatDN(nc); len(nc.RDNs) > 0 && ncs[strings.ToLower(d)] == "" {
			ncs[strings.ToLower(d)] = d
		}
		base := &ldap.DN{RDNs: dn.RDNs[1:]}
		if len(base.RDNs) <= len(nc.RDNs) {
			base = dn
		}
		bases = append(bases, base)
	}
	var plan []notifySearch
	for i, b := range bases {
		if coveredBy(b, bases, i) {
			continue
		}
		plan = append(plan, notifySearch{base: FormatDN(b), scope: ldap.ScopeWholeSubtree})
	}
	for _, d := range ncs {
		plan = append(plan, notifySearch{base: d, scope: ldap.ScopeSingleLevel, deleted: true})
	}
	slices.SortFunc(plan, func(a, b notifySearch) int {
		return cmp.Or(cmp.Compare(strings.ToLower(a.base), strings.ToLower(b.base)), cmp.Compare(a.scope, b.scope))
	})
	return slices.CompactFunc(plan, func(a, b notifySearch) bool {
		return strings.EqualFold(a.base, b.base) && a.scope == b.scope
	})
}

// coveredBy reports whether bases[i] lies within another base (an equal one counts once: the
// first wins).
func coveredBy(b *ldap.DN, bases []*ldap.DN, i int) bool {
	for j, other := range bases {
		switch {
		case j == i:
		case other.AncestorOfFold(b):
			return true
		case j < i && other.EqualFold(b):
			return true
		}
	}
	return false
}

// namingContext is the trailing DC= part of dn: the domain naming context a DKM container
// lives in.
func namingContext(dn *ldap.DN) *ldap.DN {
	i := len(dn.RDNs)
	for i > 0 && isDCRDN(dn.RDNs[i-1]) {
		i--
	}
	return &ldap.DN{RDNs: dn.RDNs[i:]}
}

func isDCRDN(rdn *ldap.RelativeDN) bool {
	return len(rdn.Attributes) == 1 && strings.EqualFold(rdn.Attributes[0].Type, "DC")
}

// changedDN is the DN a notification entry speaks of. A tombstone (an entry of the Deleted
// Objects search) is mapped back to where the object was: its RDN without AD's "\nDEL:<guid>"
// mangling, below lastKnownParent. ok is false for an entry that names nothing usable.
func changedDN(e *ldap.Entry) (*ldap.DN, bool) {
	dn, err := ldap.ParseDN(e.DN)
	if err != nil || len(dn.RDNs) == 0 {
		return nil, false
	}
	lkp := e.GetAttributeValue("lastKnownParent")
	if lkp == "" {
		return dn, true
	}
	parent, err := ldap.ParseDN(lkp)
	if err != nil {
		return nil, false
	}
	first := *dn.RDNs[0]
	attrs := make([]*ldap.AttributeTypeAndValue, len(first.Attributes))
	for i, a := range first.Attributes {
		v, _, _ := strings.Cut(a.Value, "\nDEL:")
		attrs[i] = &ldap.AttributeTypeAndValue{Type: a.Type, Value: v}
	}
	first.Attributes = attrs
	return &ldap.DN{RDNs: append([]*ldap.RelativeDN{&first}, parent.RDNs...)}, true
}

// within reports whether dn is container or lies below it.
func within(dn, container *ldap.DN) bool {
	return container.EqualFold(dn) || container.AncestorOfFold(dn)
}
