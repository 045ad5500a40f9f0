package testenv

import (
	"fmt"
	"strconv"

	"github.com/go-ldap/ldap/v3"
)

// Account lockout, as a domain admin sees and changes it: the domain's policy on the domain
// object (what `samba-tool domain passwordsettings set --account-lockout-threshold` writes),
// and an account's failed-logon state.

// SetLockoutThreshold sets the domain's account lockout threshold (lockoutThreshold; 0 turns
// lockout off) and returns the previous value, so a test can put it back.
func (dc *DC) SetLockoutThreshold(n int) (previous int, err error) {
	conn, err := dc.Dial()
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	res, err := conn.Search(ldap.NewSearchRequest(dc.BaseDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 10, false, "(objectClass=*)", []string{"lockoutThreshold"}, nil))
	if err != nil {
		return 0, fmt.Errorf("reading lockoutThreshold of %s: %w", dc.BaseDN, err)
	}
	if len(res.Entries) == 1 {
		previous, _ = strconv.Atoi(res.Entries[0].GetAttributeValue("lockoutThreshold"))
	}
	mod := ldap.NewModifyRequest(dc.BaseDN, nil)
	mod.Replace("lockoutThreshold", []string{strconv.Itoa(n)})
	if err := conn.Modify(mod); err != nil {
		return previous, fmt.Errorf("setting lockoutThreshold of %s to %d: %w", dc.BaseDN, n, err)
	}
	return previous, nil
}

// BadLogons reads an account's badPwdCount and lockoutTime (0 when it is not locked out).
func (dc *DC) BadLogons(dn string) (badPwdCount int, lockoutTime int64, err error) {
	conn, err := dc.Dial()
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	res, err := conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 10, false, "(objectClass=*)", []string{"badPwdCount", "lockoutTime"}, nil))
	if err != nil {
		return 0, 0, fmt.Errorf("reading badPwdCount of %s: %w", dn, err)
	}
	if len(res.Entries) != 1 {
		return 0, 0, fmt.Errorf("reading badPwdCount of %s: %d entries", dn, len(res.Entries))
	}
	e := res.Entries[0]
	if v := e.GetAttributeValue("badPwdCount"); v != "" {
		if badPwdCount, err = strconv.Atoi(v); err != nil {
			return 0, 0, fmt.Errorf("badPwdCount of %s: %w", dn, err)
		}
	}
	if v := e.GetAttributeValue("lockoutTime"); v != "" {
		if lockoutTime, err = strconv.ParseInt(v, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("lockoutTime of %s: %w", dn, err)
		}
	}
	return badPwdCount, lockoutTime, nil
}

// LockOut binds as the account with a wrong password n times, as a misconfigured client would,
// and returns the last bind's error.
func (dc *DC) LockOut(user string, n int) error {
	var last error
	for range n {
		conn, err := dc.DialAs(user, "Not-The-Password-1!")
		if err == nil {
			conn.Close()
			return fmt.Errorf("a wrong password bound as %s", user)
		}
		last = err
	}
	return last
}

// Unlock unlocks an account as a domain admin does (ADUC's "Unlock account", Unlock-ADAccount):
// lockoutTime is set to 0, which also resets badPwdCount.
func (dc *DC) Unlock(dn string) error {
	conn, err := dc.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	mod := ldap.NewModifyRequest(dn, nil)
	mod.Replace("lockoutTime", []string{"0"})
	if err := conn.Modify(mod); err != nil {
		return fmt.Errorf("unlocking %s: %w", dn, err)
	}
	return nil
}
