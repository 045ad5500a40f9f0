package directory

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dkm-operator/dkm-operator/internal/secdesc"
	"github.com/go-ldap/ldap/v3"
)

// Principal is a resolved account or group.
type Principal struct {
	Name           string // the name as given to ResolvePrincipal
	SAMAccountName string // e.g. svc-vmm, or HOST$ for a computer
	SID            secdesc.SID
	DN             string
}

// ResolvePrincipal finds an account or group of this domain by DOMAIN\name (NetBIOS or DNS
// domain name), name@realm (userPrincipalName, or the implicit UPN sAMAccountName@dnsName),
// a plain sAMAccountName, SID text (S-1-5-21-...), or its DN. Results are cached for the
// pool's principal TTL; failures are not. A name that matches nothing, or more than one
// object, is a terminal error matching ErrUnknownPrincipal that quotes the name.
func (c *Client) ResolvePrincipal(ctx context.Context, name string) (Principal, error) {
	in := strings.TrimSpace(name)
	key := strings.ToLower(in)
	if p, ok := c.principals.get(key); ok {
		p.Name = name
		return p, nil
	}
	if in == "" {
		return Principal{}, unknownPrincipal(name, "", "empty name")
	}
	d, err := c.Domain(ctx)
	if err != nil {
		return Principal{}, err
	}
	q, err := principalQuery(in, d)
	if err != nil {
		return Principal{}, err
	}
	req := ldap.NewSearchRequest(q.base, q.scope, ldap.NeverDerefAliases, 0, 0, false,
		"(&(objectSid=*)"+q.filter+")", []string{"objectSid", "sAMAccountName", "userPrincipalName"}, nil)
	res, err := c.search(ctx, req)
	if errors.Is(err, ErrNoSuchObject) && q.scope == ldap.ScopeBaseObject {
		return Principal{}, unknownPrincipal(name, q.base, "no such object")
	}
	if err != nil {
		return Principal{}, err
	}
	entries := res.Entries
	if q.preferUPN != "" && len(entries) > 1 {
		// name@realm matched both a userPrincipalName and a sAMAccountName: the UPN wins.
		for _, e := range entries {
			if strings.EqualFold(attrValue(e, "userPrincipalName"), q.preferUPN) {
				entries = []*ldap.Entry{e}
				break
			}
		}
	}
	switch len(entries) {
	case 0:
		return Principal{}, unknownPrincipal(name, q.base, "no object matches "+q.filter)
	case 1:
	default:
		return Principal{}, unknownPrincipal(name, q.base, fmt.Sprintf("%d objects match %s", len(entries), q.filter))
	}
	e := entries[0]
	sid, err := secdesc.SIDFromBytes(rawAttr(e, "objectSid"))
	if err != nil {
		return Principal{}, &Error{Op: "resolve", DN: e.DN, Kind: KindOther, Err: fmt.Errorf("objectSid: %w", err)}
	}
	p := Principal{Name: name, SAMAccountName: attrValue(e, "sAMAccountName"), SID: sid, DN: e.DN}
	c.principals.put(key, p)
	return p, nil
}

type principalSearch struct {
	base, filter string
	scope        int
	preferUPN    string
}

func principalQuery(in string, d Domain) (principalSearch, error) {
	q := principalSearch{base: d.DN, scope: ldap.ScopeWholeSubtree}
	switch {
	case len(in) > 4 && strings.EqualFold(in[:4], "S-1-"):
		sid, err := secdesc.ParseSID(in)
		if err != nil {
			return q, unknownPrincipal(in, "", "not a valid SID: "+err.Error())
		}
		q.filter = "(objectSid=" + escapeBinaryFilter(sid.Bytes()) + ")"
	case strings.Contains(in, `\`):
		dom, acct, _ := strings.Cut(in, `\`)
		if !strings.EqualFold(dom, d.NetBIOSName) && !strings.EqualFold(dom, d.DNSName) {
			return q, unknownPrincipal(in, "", fmt.Sprintf("domain %s is not this directory's domain (%s)", QuoteName(dom), d.NetBIOSName))
		}
		if acct == "" {
			return q, unknownPrincipal(in, "", "empty account name")
		}
		q.filter = "(sAMAccountName=" + ldap.EscapeFilter(acct) + ")"
	case strings.Contains(in, "@"):
		at := strings.LastIndex(in, "@")
		acct, realm := in[:at], in[at+1:]
		q.filter = "(userPrincipalName=" + ldap.EscapeFilter(in) + ")"
		if strings.EqualFold(realm, d.DNSName) && acct != "" {
			// AD's implicit UPN: sAMAccountName@dnsName works for accounts without a UPN.
			q.filter = "(|" + q.filter + "(sAMAccountName=" + ldap.EscapeFilter(acct) + "))"
			q.preferUPN = in
		}
	case strings.Contains(in, "=") && ValidateDN(in) == nil:
		q.base, q.scope, q.filter = in, ldap.ScopeBaseObject, "(objectClass=*)"
	default:
		q.filter = "(sAMAccountName=" + ldap.EscapeFilter(in) + ")"
	}
	return q, nil
}

func escapeBinaryFilter(b []byte) string {
	var s strings.Builder
	for _, x := range b {
		fmt.Fprintf(&s, "\\%02x", x)
	}
	return s.String()
}

func unknownPrincipal(name, base, why string) *Error {
	return &Error{Op: "resolve", DN: base, Kind: KindUnknownPrincipal, Err: fmt.Errorf("%s: %s", QuoteName(name), why)}
}

// principalCache is a small TTL cache of resolved names.
type principalCache struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[string]cachedPrincipal
}

type cachedPrincipal struct {
	p       Principal
	expires time.Time
}

const maxCachedPrincipals = 1024

func (pc *principalCache) get(key string) (Principal, bool) {
	if pc.ttl <= 0 {
		return Principal{}, false
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	e, ok := pc.m[key]
	if !ok || pc.now().After(e.expires) {
		delete(pc.m, key)
		return Principal{}, false
	}
	return e.p, true
}

func (pc *principalCache) put(key string, p Principal) {
	if pc.ttl <= 0 {
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	now := pc.now()
	if pc.m == nil {
		pc.m = map[string]cachedPrincipal{}
	}
	if len(pc.m) >= maxCachedPrincipals {
		for k, e := range pc.m {
			if now.After(e.expires) {
				delete(pc.m, k)
			}
		}
		if len(pc.m) >= maxCachedPrincipals {
			clear(pc.m)
		}
	}
	pc.m[key] = cachedPrincipal{p: p, expires: now.Add(pc.ttl)}
}
