package directory

import (
	"context"
	"fmt"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// ServerInfo says which domain controller answered and which DC is the domain's PDC emulator,
// so that every writer can converge on one DC (AD is multi-master: two writes of one name on
// two DCs become a replication conflict, one on one DC is refused as entryAlreadyExists).
type ServerInfo struct {
	// ServiceName is the rootDSE's dsServiceName: the DN of the answering DC's NTDS Settings
	// object. It names the DC whatever address it was reached by.
	ServiceName string
	// PDC is the fSMORoleOwner of the domain naming context's head: the NTDS Settings DN of the
	// PDC emulator, in the same form as ServiceName. Empty when the bind identity cannot read it.
	PDC string
}

// IsPDC reports whether the answering DC is the PDC emulator.
func (i ServerInfo) IsPDC() bool { return i.PDC != "" && SameDN(i.ServiceName, i.PDC) }

// Name is the answering DC's name for people (ServerName of ServiceName).
func (i ServerInfo) Name() string { return ServerName(i.ServiceName) }

// ServerName is the server's CN in an NTDS Settings DN ("DC1" in
// "CN=NTDS Settings,CN=DC1,CN=Servers,..."), or dn itself when it is not of that form.
func ServerName(dn string) string {
	parsed, err := ParseDN(dn)
	if err != nil || len(parsed.RDNs) < 2 || !strings.EqualFold(rdnValue(parsed), "NTDS Settings") {
		return dn
	}
	return rdnValue(&ldap.DN{RDNs: parsed.RDNs[1:]})
}

// SameDN compares two DNs as AD does (case-insensitively, escaping normalised); DNs that do
// not parse are compared as strings.
func SameDN(a, b string) bool {
	pa, errA := ParseDN(a)
	pb, errB := ParseDN(b)
	if errA != nil || errB != nil {
		return strings.EqualFold(a, b)
	}
	return pa.EqualFold(pb)
}

// ServerInfo reads the answering DC's dsServiceName (rootDSE) and the domain head's
// fSMORoleOwner: two searches. It is not cached: the caller caches the choice of DC it makes
// from it, and asks again after a connection failure.
func (c *Client) ServerInfo(ctx context.Context) (ServerInfo, error) {
	root, err := c.searchOne(ctx, "", ldap.ScopeBaseObject, "(objectClass=*)", "dsServiceName", "defaultNamingContext")
	if err != nil {
		return ServerInfo{}, err
	}
	info := ServerInfo{ServiceName: attrValue(root, "dsServiceName")}
	nc := attrValue(root, "defaultNamingContext")
	if info.ServiceName == "" || nc == "" {
		return ServerInfo{}, &Error{Op: "search", DN: "rootDSE", Kind: KindOther,
			Err: fmt.Errorf("the rootDSE lacks dsServiceName or defaultNamingContext")}
	}
	head, err := c.searchOne(ctx, nc, ldap.ScopeBaseObject, "(objectClass=*)", "fSMORoleOwner")
	if err != nil {
		return ServerInfo{}, err
	}
	info.PDC = attrValue(head, "fSMORoleOwner")
	return info, nil
}
