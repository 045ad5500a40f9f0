package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

func ldapErr(code uint16, msg string) error {
	return &ldap.Error{ResultCode: code, Err: errors.New(msg)}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   string
		err  error
		want Kind
	}{
		{"invalid credentials", "bind", ldapErr(49, "80090308: LdapErr: data 52e"), KindInvalidCredentials},
		{"insufficient access", "modify", ldapErr(50, "denied"), KindInsufficientAccess},
		{"no such object on search", "search", ldapErr(32, "gone"), KindNoSuchObject},
		{"no such object on add is a missing parent", "add", ldapErr(32, "parent does not exist"), KindParentMissing},
		{"already exists", "add", ldapErr(68, "exists"), KindAlreadyExists},
		{"invalid DN syntax", "search", ldapErr(34, "bad dn"), KindInvalidDN},
		{"naming violation", "add", ldapErr(64, "bad rdn"), KindInvalidDN},
		{"constraint", "modify", ldapErr(19, "too long"), KindConstraint},
		{"invalid attribute syntax", "modify", ldapErr(21, "syntax"), KindConstraint},
		{"object class violation", "add", ldapErr(65, "class"), KindConstraint},
		{"not allowed on non-leaf", "delete", ldapErr(66, "children"), KindConstraint},
		{"size limit exceeded", "search", ldapErr(4, "Size limit exceeded"), KindSizeLimit},
		{"busy", "search", ldapErr(51, "busy"), KindTransient},
		{"unavailable", "search", ldapErr(52, "unavailable"), KindTransient},
		{"server down", "search", ldapErr(81, "down"), KindTransient},
		{"go-ldap network error", "search", ldapErr(ldap.ErrorNetwork, "ldap: connection timed out"), KindTransient},
		{"unwilling, permanent", "modify", ldapErr(53, "0000052D: Constraint violation - password"), KindOther},
		{"unwilling, shutting down", "search", ldapErr(53, "the DSA is shutting down"), KindTransient},
		{"strong auth required", "bind", ldapErr(8, "strong auth"), KindConfig},
		{"operations error", "search", ldapErr(1, "ops"), KindOther},
		{"connection refused", "dial", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, KindTransient},
		{"connection reset", "search", fmt.Errorf("read: %w", syscall.ECONNRESET), KindTransient},
		{"EOF", "search", io.EOF, KindTransient},
		{"reader gone", "search", errors.New("unable to read LDAP response packet: EOF"), KindTransient},
		{"deadline", "search", context.DeadlineExceeded, KindTransient},
		{"unknown authority", "dial", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, KindTLS},
		{"hostname mismatch", "dial", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "x"}, KindTLS},
		{"StartTLS verification (flattened by go-ldap)", "starttls",
			ldapErr(ldap.ErrorNetwork, "TLS handshake failed (tls: failed to verify certificate: x509: certificate signed by unknown authority)"), KindTLS},
		{"StartTLS reset mid-handshake", "starttls", ldapErr(ldap.ErrorNetwork, "TLS handshake failed (read tcp: connection reset by peer)"), KindTransient},
		{"anything else", "search", errors.New("mystery"), KindOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := classify(tc.op, "CN=x,DC=demo,DC=local", tc.err)
			if e.Kind != tc.want {
				t.Fatalf("kind = %s, want %s (%v)", e.Kind, tc.want, e)
			}
			if KindOf(e) != tc.want || IsTransient(e) != (tc.want == KindTransient) {
				t.Errorf("KindOf/IsTransient disagree with Kind %s", e.Kind)
			}
			wrapped := fmt.Errorf("reconcile: %w", e)
			if KindOf(wrapped) != tc.want {
				t.Errorf("KindOf through wrapping = %s", KindOf(wrapped))
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	e := classify("search", "CN=VMMDKM,CN=System,DC=demo,DC=local",
		ldapErr(50, "00002098: Insufficient access"))
	want := "search CN=VMMDKM,CN=System,DC=demo,DC=local: insufficient access (LDAP 50): 00002098: Insufficient access"
	if e.Error() != want {
		t.Errorf("message\n got %s\nwant %s", e.Error(), want)
	}
	var lerr *ldap.Error
	if !errors.As(e, &lerr) || lerr.ResultCode != 50 {
		t.Errorf("the *ldap.Error is not reachable with errors.As: %v", e)
	}

	tlsErr := classify("dial", "ldaps://dc1:636", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}})
	if !strings.Contains(tlsErr.Error(), "caBundleSecretRef") {
		t.Errorf("a TLS error should point at caBundleSecretRef: %s", tlsErr)
	}
}

func TestSentinels(t *testing.T) {
	for _, tc := range []struct {
		kind     Kind
		sentinel error
	}{
		{KindUnknownPrincipal, ErrUnknownPrincipal},
		{KindParentMissing, ErrParentMissing},
		{KindAlreadyExists, ErrAlreadyExists},
		{KindNoSuchObject, ErrNoSuchObject},
	} {
		err := fmt.Errorf("wrapped: %w", &Error{Op: "x", Kind: tc.kind})
		if !errors.Is(err, tc.sentinel) {
			t.Errorf("%s does not match %v", tc.kind, tc.sentinel)
		}
		if errors.Is(&Error{Op: "x", Kind: KindOther}, tc.sentinel) {
			t.Errorf("KindOther matches %v", tc.sentinel)
		}
	}
}

func TestSecretsAreRedacted(t *testing.T) {
	secret := []byte("\x00\x01key-bytes-\xffhere")
	e := classify("add", "CN=k,DC=x", ldapErr(19, "value "+string(secret)+" rejected"), secret)
	if strings.Contains(e.Error(), string(secret)) || strings.Contains(e.Error(), "key-bytes") {
		t.Errorf("the secret leaked: %q", e.Error())
	}
	var lerr *ldap.Error
	if errors.As(e, &lerr) && strings.Contains(lerr.Error(), "key-bytes") {
		t.Errorf("the secret leaked through the wrapped *ldap.Error: %q", lerr.Error())
	}
	long := classify("search", "", ldapErr(80, strings.Repeat("é", 600)))
	if len(long.Error()) > 700 {
		t.Errorf("diagnostics are not truncated: %d bytes", len(long.Error()))
	}
}

func TestKindStrings(t *testing.T) {
	seen := map[string]bool{}
	for k := KindOther; k <= KindConfig; k++ {
		s := k.String()
		if s == "" || seen[s] || strings.ContainsAny(s, " -") {
			t.Errorf("kind %d: bad or duplicate label %q", k, s)
		}
		seen[s] = true
	}
}
