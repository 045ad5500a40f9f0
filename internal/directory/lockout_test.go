package directory

import (
	"strings"
	"testing"
)

// AD answers a bind with invalidCredentials (49) for every refused logon and says why in the
// diagnostic's "data" code: 52e a wrong password, 775 an account locked out. Only the password
// is for the bind Secret to fix; a locked account needs a domain admin.
func TestAccountLockedOutIsItsOwnKind(t *testing.T) {
	locked := classify("bind", "op@DEMO.LOCAL",
		ldapErr(49, "80090308: LdapErr: DSID-0C09030B, comment: AcceptSecurityContext error, data 775, v893"))
	if got := locked.Kind.String(); got != "account_locked" {
		t.Fatalf("data 775: kind %s, want account_locked (%v)", got, locked)
	}
	if IsTransient(locked) {
		t.Errorf("a locked account is not transient")
	}
	if !strings.Contains(locked.Error(), "locked out") || !strings.Contains(locked.Error(), "data 775") {
		t.Errorf("message %q should say the account is locked out and keep AD's diagnostic", locked.Error())
	}
	for _, diag := range []string{
		"80090308: LdapErr: DSID-0C09030B, comment: AcceptSecurityContext error, data 52e, v893",
		"80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 533, v1db1", // disabled
		"", // no diagnostic at all
	} {
		if got := classify("bind", "op@DEMO.LOCAL", ldapErr(49, diag)).Kind.String(); got != "invalid_credentials" {
			t.Errorf("%q: kind %s, want invalid_credentials", diag, got)
		}
	}
}
