package controllers

import (
	"github.com/go-ldap/ldap/v3"
	. "github.com/onsi/gomega"

	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// These helpers read and change AD with plain go-ldap as Administrator — "another tool" from the
// operator's point of view — so assertions do not rest on the code under test.

func sdFlagsDACL() ldap.Control {
	return &ldap.ControlMicrosoftSDFlags{Criticality: true, ControlValue: 0x4}
}

func adSearch(base string, scope int, filter string, attrs ...string) []*ldap.Entry {
	conn, err := dc.Dial()
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	res, err := conn.Search(ldap.NewSearchRequest(base, scope, ldap.NeverDerefAliases, 0, 30, false,
		filter, attrs, []ldap.Control{sdFlagsDACL()}))
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return nil
	}
	Expect(err).NotTo(HaveOccurred())
	return res.Entries
}

func adExists(dn string) bool {
	return len(adSearch(dn, ldap.ScopeBaseObject, "(objectClass=*)", "objectGUID")) == 1
}

// adDACL reads an object's DACL.
func adDACL(dn string) *secdesc.SecurityDescriptor {
	entries := adSearch(dn, ldap.ScopeBaseObject, "(objectClass=*)", "nTSecurityDescriptor")
	Expect(entries).To(HaveLen(1), "object %s", dn)
	sd, err := secdesc.ParseDescriptor(entries[0].GetRawAttributeValue("nTSecurityDescriptor"))
	Expect(err).NotTo(HaveOccurred())
	return sd
}

// adSetDACL writes an object's DACL (SD flags 0x4).
func adSetDACL(dn string, sd *secdesc.SecurityDescriptor) {
	raw, err := sd.MarshalBinary()
	Expect(err).NotTo(HaveOccurred())
	conn, err := dc.Dial()
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	mod := ldap.NewModifyRequest(dn, []ldap.Control{sdFlagsDACL()})
	mod.Replace("nTSecurityDescriptor", []string{string(raw)})
	Expect(conn.Modify(mod)).To(Succeed())
}

// adAddACE appends an ACE given in SDDL to an object's DACL.
func adAddACE(dn, aceSDDL string) {
	sd := adDACL(dn)
	ace, err := secdesc.ParseACE(aceSDDL, secdesc.WellKnownAliases)
	Expect(err).NotTo(HaveOccurred())
	sd.DACL.ACEs = append(sd.DACL.ACEs, ace)
	adSetDACL(dn, sd)
}

// adManagers lists the DC Manager objects in a container.
func adManagers(containerDN string) []*ldap.Entry {
	return adSearch(containerDN, ldap.ScopeSingleLevel, "(&(objectClass=container)(cn=DC Manager *))", "cn")
}

// adKeys lists the key contacts (l and thumbnailPhoto) below a container.
func adKeys(containerDN string) []*ldap.Entry {
	return adSearch(containerDN, ldap.ScopeWholeSubtree, "(&(objectClass=contact)(l=*))", "l", "thumbnailPhoto")
}

// adDeleteTree deletes an object and everything below it, children first.
func adDeleteTree(dn string) {
	entries := adSearch(dn, ldap.ScopeWholeSubtree, "(objectClass=*)", "1.1")
	conn, err := dc.Dial()
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	// Deepest first: sort by the number of RDNs, descending.
	for depth := 10; depth >= 0; depth-- {
		for _, e := range entries {
			parsed, err := ldap.ParseDN(e.DN)
			Expect(err).NotTo(HaveOccurred())
			if len(parsed.RDNs) == depth {
				Expect(conn.Del(ldap.NewDelRequest(e.DN, nil))).To(Succeed())
			}
		}
	}
}

// adCreateContainer creates a container as Administrator with the given DACL in SDDL
// (domain aliases resolved), as a domain admin pre-creating it for Adopt would.
func adCreateContainer(dn, daclSDDL string) {
	domain := secdesc.MustParseSID(dc.DomainSID)
	sd, err := secdesc.ParseSDDL(daclSDDL, secdesc.DomainAliases(domain, domain))
	Expect(err).NotTo(HaveOccurred())
	raw, err := sd.MarshalBinary()
	Expect(err).NotTo(HaveOccurred())
	conn, err := dc.Dial()
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	add := ldap.NewAddRequest(dn, []ldap.Control{sdFlagsDACL()})
	add.Attribute("objectClass", []string{"container"})
	add.Attribute("nTSecurityDescriptor", []string{string(raw)})
	Expect(conn.Add(add)).To(Succeed())
}
