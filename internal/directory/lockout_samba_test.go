package directory

import (
	"strings"
	"testing"
	"time"

	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

// A Client whose bind AD refused never binds again by itself, however long it is kept and
// asked: only RetryBind (the caller's decision, e.g. a changed Secret) lets it try once more.
// Every bind with a wrong password counts towards the account's lockout.
func TestRefusedBindIsNeverRetriedByItself(t *testing.T) {
	dc := needDC(t)
	lockoutThreshold(t, dc, 5) // Samba counts failed logons only when lockout is on
	u := createUser(t, dc, "nobind")
	cfg := configAs(dc, u.UPN(dc), "Wr0ng-"+u.Password)
	p := NewPool()
	t.Cleanup(p.Close)
	now := time.Unix(1_000_000, 0)
	p.now = func() time.Time { return now }

	c, err := p.Client(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Observe(testCtx(t), "CN=System,"+dc.BaseDN); KindOf(err) != KindInvalidCredentials {
		t.Fatalf("wrong password: %v, want invalid credentials", err)
	}
	// Asked again and again over ten minutes (as reconciles of several DKMContainers sharing
	// the identity would), through the pool each time: still the one bind.
	for range 20 {
		now = now.Add(30 * time.Second)
		again, err := p.Client(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := again.Observe(testCtx(t), "CN=System,"+dc.BaseDN); KindOf(err) != KindInvalidCredentials {
			t.Fatalf("after %s: %v, want the remembered invalid credentials", now.Sub(time.Unix(1_000_000, 0)), err)
		}
	}
	if n := c.Ops()["bind"]; n != 1 {
		t.Fatalf("%d binds with the refused password over ten minutes, want 1", n)
	}
	if bad, _, err := dc.BadLogons(u.DN); err != nil || bad != 1 {
		t.Errorf("badPwdCount = %d (%v), want 1", bad, err)
	}
	t.Logf("after 20 requests over 10 minutes: %d bind, badPwdCount 1", c.Ops()["bind"])
}

// RetryBind forgets a refusal seen at or before the given time, so the caller that saw it may try
// once more; a refusal remembered after that time (another caller already tried again) stays.
func TestRetryBindTriesOnceMore(t *testing.T) {
	dc := needDC(t)
	u := createUser(t, dc, "retry")
	cfg := configAs(dc, u.UPN(dc), "Wr0ng-"+u.Password)
	p := NewPool()
	t.Cleanup(p.Close)
	now := time.Unix(2_000_000, 0)
	p.now = func() time.Time { return now }
	c, err := p.Client(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, first := c.Observe(testCtx(t), "CN=System,"+dc.BaseDN)
	if KindOf(first) != KindInvalidCredentials {
		t.Fatalf("wrong password: %v", first)
	}
	seen := now
	now = now.Add(time.Minute)
	c.RetryBind(seen)
	if _, err := c.Observe(testCtx(t), "CN=System,"+dc.BaseDN); KindOf(err) != KindInvalidCredentials {
		t.Fatalf("retry: %v", err)
	}
	// A second caller that saw the first refusal asks too: the refusal it saw is gone, the one
	// remembered now is newer, so it gets that one without a bind.
	c.RetryBind(seen)
	if _, err := c.Observe(testCtx(t), "CN=System,"+dc.BaseDN); KindOf(err) != KindInvalidCredentials {
		t.Fatalf("second retry: %v", err)
	}
	if n := c.Ops()["bind"]; n != 2 {
		t.Fatalf("%d binds, want 2 (the first and one retry)", n)
	}
}

// An account AD has locked out is refused with "data 775" whatever the password: with the right
// one it is AccountLocked, not a wrong password, so the operator does not tell the admin to
// change a Secret that is correct.
func TestLockedOutAccount(t *testing.T) {
	dc := needDC(t)
	lockoutThreshold(t, dc, 5)
	u := createUser(t, dc, "locked")
	if err := dc.LockOut(u.UPN(dc), 5); err != nil && !strings.Contains(err.Error(), "data 52e") && !strings.Contains(err.Error(), "data 775") {
		t.Fatalf("locking the account out: %v", err)
	}
	bad, lockoutTime, err := dc.BadLogons(u.DN)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after 5 wrong passwords: badPwdCount %d, lockoutTime %d", bad, lockoutTime)
	if lockoutTime == 0 {
		t.Fatalf("the account is not locked out after 5 wrong passwords with lockoutThreshold 5")
	}

	c := newTestClient(t, configAs(dc, u.UPN(dc), u.Password))
	_, err = c.Observe(testCtx(t), "CN=System,"+dc.BaseDN)
	t.Logf("right password, locked account: %v", err)
	if got := KindOf(err).String(); got != "account_locked" {
		t.Fatalf("kind %s, want account_locked: %v", got, err)
	}
	if strings.Contains(err.Error(), u.Password) {
		t.Errorf("the password leaked into the error")
	}

	// Unlocked by an admin, the same password works.
	if err := dc.Unlock(u.DN); err != nil {
		t.Fatal(err)
	}
	c2 := newTestClient(t, configAs(dc, u.UPN(dc), u.Password))
	if _, err := c2.Observe(testCtx(t), "CN=System,"+dc.BaseDN); err != nil {
		t.Fatalf("after unlocking: %v", err)
	}
}

// lockoutThreshold turns account lockout on for the test's duration, as many domains have it.
func lockoutThreshold(t *testing.T, dc *testenv.DC, n int) {
	t.Helper()
	previous, err := dc.SetLockoutThreshold(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := dc.SetLockoutThreshold(previous); err != nil {
			t.Errorf("restoring lockoutThreshold: %v", err)
		}
	})
}
