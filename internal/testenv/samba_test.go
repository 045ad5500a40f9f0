package testenv

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// TestDC proves the Samba fixture is a real AD DC: LDAPS simple bind as Administrator, the
// domain's objectSid, and a wrong password refused with invalidCredentials.
func TestDC(t *testing.T) {
	dc, err := StartDC(context.Background(), DCOptions{})
	if err != nil {
		t.Fatalf("starting the DC: %v", err)
	}
	t.Cleanup(dc.Close)

	if !strings.HasPrefix(dc.DomainSID, "S-1-5-21-") {
		t.Errorf("domain SID = %q, want an S-1-5-21- domain SID", dc.DomainSID)
	}

	t.Run("wrong password is invalid credentials", func(t *testing.T) {
		_, err := dc.DialAs(dc.AdminUser, "not-the-password")
		var lerr *ldap.Error
		if !errors.As(err, &lerr) || lerr.ResultCode != ldap.LDAPResultInvalidCredentials {
			t.Fatalf("bind with a wrong password: got %v, want LDAP result 49 (invalid credentials)", err)
		}
	})

	t.Run("new user binds by UPN and down-level name", func(t *testing.T) {
		u, err := dc.CreateUser("smoke-user", "Sm0ke!Passw0rd")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(u.SID, dc.DomainSID+"-") {
			t.Errorf("user SID %s is not in the domain %s", u.SID, dc.DomainSID)
		}
		for _, name := range []string{u.UPN(dc), u.DownLevel(dc), u.DN} {
			conn, err := dc.DialAs(name, u.Password)
			if err != nil {
				t.Errorf("bind as %s: %v", name, err)
				continue
			}
			conn.Close()
		}
	})

	t.Run("stop and start keep the data", func(t *testing.T) {
		if err := dc.Stop(); err != nil {
			t.Fatal(err)
		}
		if _, err := dc.Dial(); err == nil {
			t.Fatal("dial succeeded while the DC was stopped")
		}
		if err := dc.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := dc.DialAs("smoke-user@"+dc.Realm, "Sm0ke!Passw0rd"); err != nil {
			t.Fatalf("bind after restart: %v", err)
		}
	})
}

// TestTwoDCsAtOnce proves two fixtures run side by side on distinct loopback addresses.
func TestTwoDCsAtOnce(t *testing.T) {
	a, err := StartDC(context.Background(), DCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	b, err := StartDC(context.Background(), DCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if a.Address == b.Address {
		t.Fatalf("both DCs on %s", a.Address)
	}
	for _, dc := range []*DC{a, b} {
		conn, err := dc.Dial()
		if err != nil {
			t.Fatalf("bind to %s: %v", dc.URL, err)
		}
		conn.Close()
	}
}
