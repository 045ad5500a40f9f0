package directory

import (
	"context"
	"fmt"
	"strings"

	"github.com/dkm-operator/dkm-operator/internal/secdesc"
	"github.com/go-ldap/ldap/v3"
)

// Domain describes the directory's domain and forest, as the template and principal
// resolution need them.
type Domain struct {
	DN            string // defaultNamingContext, e.g. DC=demo,DC=local
	ForestRootDN  string // rootDomainNamingContext
	DNSName       string // e.g. demo.local
	NetBIOSName   string // e.g. DEMO
	SID           secdesc.SID
	ForestRootSID secdesc.SID
}

// Domain reads the rootDSE, the objectSid of the domain and forest root naming contexts and
// the domain's crossRef (NetBIOS and DNS names). The result is cached after the first success.
func (c *Client) Domain(ctx context.Context) (Domain, error) {
	c.domainMu.Lock()
	defer c.domainMu.Unlock()
	if c.domain != nil {
		return *c.domain, nil
	}
	d, err := c.readDomain(ctx)
	if err != nil {
		return Domain{}, err
	}
	c.domain = &d
	return d, nil
}

func (c *Client) readDomain(ctx context.Context) (Domain, error) {
	root, err := c.searchOne(ctx, "", ldap.ScopeBaseObject, "(objectClass=*)",
		"defaultNamingContext", "rootDomainNamingContext", "configurationNamingContext")
	if err != nil {
		return Domain{}, err
	}
	d := Domain{
		DN:           attrValue(root, "defaultNamingContext"),
		ForestRootDN: attrValue(root, "rootDomainNamingContext"),
	}
	config := attrValue(root, "configurationNamingContext")
	if d.DN == "" || d.ForestRootDN == "" || config == "" {
		return Domain{}, &Error{Op: "search", DN: "rootDSE", Kind: KindOther,
			Err: fmt.Errorf("the rootDSE lacks defaultNamingContext, rootDomainNamingContext or configurationNamingContext")}
	}
	if d.SID, err = c.readSID(ctx, d.DN); err != nil {
		return Domain{}, err
	}
	d.ForestRootSID = d.SID
	if !strings.EqualFold(d.ForestRootDN, d.DN) {
		if d.ForestRootSID, err = c.readSID(ctx, d.ForestRootDN); err != nil {
			return Domain{}, err
		}
	}
	partitions := "CN=Partitions," + config
	ref, err := c.searchOne(ctx, partitions, ldap.ScopeSingleLevel,
		"(&(objectClass=crossRef)(nCName="+ldap.EscapeFilter(d.DN)+"))", "nETBIOSName", "dnsRoot")
	if err != nil {
		return Domain{}, err
	}
	d.NetBIOSName = attrValue(ref, "nETBIOSName")
	d.DNSName = attrValue(ref, "dnsRoot")
	if d.NetBIOSName == "" || d.DNSName == "" {
		return Domain{}, &Error{Op: "search", DN: partitions, Kind: KindInsufficientAccess,
			Err: fmt.Errorf("the crossRef of %s has no readable nETBIOSName or dnsRoot", d.DN)}
	}
	return d, nil
}

func (c *Client) readSID(ctx context.Context, dn string) (secdesc.SID, error) {
	e, err := c.searchOne(ctx, dn, ldap.ScopeBaseObject, "(objectClass=*)", "objectSid")
	if err != nil {
		return secdesc.SID{}, err
	}
	sid, err := secdesc.SIDFromBytes(rawAttr(e, "objectSid"))
	if err != nil {
		return secdesc.SID{}, &Error{Op: "search", DN: dn, Kind: KindInsufficientAccess,
			Err: fmt.Errorf("objectSid missing or unreadable: %w", err)}
	}
	return sid, nil
}

// searchOne runs a search that must return exactly one entry.
func (c *Client) searchOne(ctx context.Context, base string, scope int, filter string, attrs ...string) (*ldap.Entry, error) {
	res, err := c.search(ctx, ldap.NewSearchRequest(base, scope, ldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil))
	if err != nil {
		return nil, err
	}
	if len(res.Entries) != 1 {
		return nil, &Error{Op: "search", DN: base, Kind: KindNoSuchObject,
			Err: fmt.Errorf("%d entries match %s", len(res.Entries), filter)}
	}
	return res.Entries[0], nil
}
