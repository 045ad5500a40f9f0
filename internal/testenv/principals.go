package testenv

import (
	"encoding/binary"
	"fmt"
	"unicode/utf16"

	"github.com/go-ldap/ldap/v3"
)

// Principal is an AD account or group the fixture created.
type Principal struct {
	Name     string // sAMAccountName
	DN       string
	SID      string
	Password string // empty for groups
}

// UPN is the user principal name to bind with.
func (p Principal) UPN(dc *DC) string { return p.Name + "@" + dc.Realm }

// DownLevel is DOMAIN\name.
func (p Principal) DownLevel(dc *DC) string { return dc.NetBIOS + `\` + p.Name }

// CreateUser adds an enabled user in CN=Users with the given password (set over LDAPS, as AD
// requires) and returns it with its SID.
func (dc *DC) CreateUser(name, password string) (Principal, error) {
	dn := fmt.Sprintf("CN=%s,CN=Users,%s", ldap.EscapeDN(name), dc.BaseDN)
	add := ldap.NewAddRequest(dn, nil)
	add.Attribute("objectClass", []string{"top", "person", "organizationalPerson", "user"})
	add.Attribute("sAMAccountName", []string{name})
	add.Attribute("userPrincipalName", []string{name + "@" + dc.Realm})
	add.Attribute("unicodePwd", []string{string(unicodePassword(password))})
	add.Attribute("userAccountControl", []string{"512"}) // NORMAL_ACCOUNT, enabled
	if err := dc.add(add); err != nil {
		return Principal{}, err
	}
	return dc.principal(name, dn, password)
}

// CreateGroup adds a global security group in CN=Users.
func (dc *DC) CreateGroup(name string, members ...Principal) (Principal, error) {
	dn := fmt.Sprintf("CN=%s,CN=Users,%s", ldap.EscapeDN(name), dc.BaseDN)
	add := ldap.NewAddRequest(dn, nil)
	add.Attribute("objectClass", []string{"top", "group"})
	add.Attribute("sAMAccountName", []string{name})
	if len(members) > 0 {
		var dns []string
		for _, m := range members {
			dns = append(dns, m.DN)
		}
		add.Attribute("member", dns)
	}
	if err := dc.add(add); err != nil {
		return Principal{}, err
	}
	return dc.principal(name, dn, "")
}

func (dc *DC) add(req *ldap.AddRequest) error {
	conn, err := dc.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Add(req); err != nil {
		return fmt.Errorf("adding %s: %w", req.DN, err)
	}
	return nil
}

func (dc *DC) principal(name, dn, password string) (Principal, error) {
	conn, err := dc.Dial()
	if err != nil {
		return Principal{}, err
	}
	defer conn.Close()
	res, err := conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 10, false, "(objectClass=*)", []string{"objectSid"}, nil))
	if err != nil {
		return Principal{}, fmt.Errorf("reading objectSid of %s: %w", dn, err)
	}
	sid, err := SIDString(res.Entries[0].GetRawAttributeValue("objectSid"))
	if err != nil {
		return Principal{}, err
	}
	return Principal{Name: name, DN: dn, SID: sid, Password: password}, nil
}

// unicodePassword is AD's unicodePwd encoding: the quoted password in UTF-16LE.
func unicodePassword(password string) []byte {
	u := utf16.Encode([]rune(`"` + password + `"`))
	b := make([]byte, 2*len(u))
	for i, r := range u {
		binary.LittleEndian.PutUint16(b[2*i:], r)
	}
	return b
}
