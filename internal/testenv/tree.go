package testenv

import (
	"fmt"
	"slices"

	"github.com/go-ldap/ldap/v3"
)

// DeleteTree deletes dn and everything below it as Administrator, deepest first, the way a
// person would lose a DKM container in AD (tests of KeyLost and restores, and the demo's drill).
func (dc *DC) DeleteTree(dn string) error {
	conn, err := dc.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	res, err := conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"1.1"}, nil))
	if err != nil {
		return fmt.Errorf("listing %s: %w", dn, err)
	}
	depth := func(e *ldap.Entry) int {
		p, err := ldap.ParseDN(e.DN)
		if err != nil {
			return 0
		}
		return len(p.RDNs)
	}
	slices.SortFunc(res.Entries, func(a, b *ldap.Entry) int { return depth(b) - depth(a) })
	for _, e := range res.Entries {
		if err := conn.Del(ldap.NewDelRequest(e.DN, nil)); err != nil {
			return fmt.Errorf("deleting %s: %w", e.DN, err)
		}
	}
	return nil
}
