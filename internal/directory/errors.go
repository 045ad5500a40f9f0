package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"
)

// Kind classifies a directory error by what the caller should do about it.
type Kind int

const (
	// KindOther is a terminal error that fits no other kind (e.g. protocolError,
	// or unwillingToPerform for a permanent reason).
	KindOther Kind = iota
	// KindTransient is worth retrying: the DC is unreachable, busy, unavailable or slow.
	KindTransient
	// KindInvalidCredentials: the bind identity or password is wrong (LDAP 49).
	KindInvalidCredentials
	// KindAccountLocked: the bind account is locked out after too many failed logons (LDAP 49
	// with AD's "data 775"); a domain admin must unlock it. Binding again, with any password,
	// fails until then.
	KindAccountLocked
	// KindInsufficientAccess: the bound identity lacks a right (LDAP 50).
	KindInsufficientAccess
	// KindNoSuchObject: the object does not exist or is invisible to the identity (LDAP 32).
	KindNoSuchObject
	// KindParentMissing: an add failed because the new object's parent does not exist.
	KindParentMissing
	// KindAlreadyExists: an add failed because the object exists (LDAP 68).
	KindAlreadyExists
	// KindInvalidDN: a DN is malformed (LDAP 34, or rejected before sending).
	KindInvalidDN
	// KindConstraint: the server refused a value or the object's shape (LDAP 16-21, 64-69).
	KindConstraint
	// KindUnknownPrincipal: an account name or SID resolves to nothing.
	KindUnknownPrincipal
	// KindTLS: the DC's certificate cannot be verified with the configured CA bundle.
	KindTLS
	// KindConfig: the Config is unusable (URL scheme, plain LDAP not allowed, ...).
	KindConfig
	// KindConflict: a compare-and-swap modify found another value than the one it expected
	// (another writer changed it first).
	KindConflict
	// KindSizeLimit: the DC stopped a search at its size limit (LDAP 4): more entries match
	// than it returns for one search (MaxPageSize without paging, or MaxResultSetSize).
	// Retrying does not help; an administrator must raise the limit.
	KindSizeLimit
)

var kindNames = [...]string{
	KindOther:              "other",
	KindTransient:          "transient",
	KindInvalidCredentials: "invalid_credentials",
	KindAccountLocked:      "account_locked",
	KindInsufficientAccess: "insufficient_access",
	KindNoSuchObject:       "no_such_object",
	KindParentMissing:      "parent_missing",
	KindAlreadyExists:      "already_exists",
	KindInvalidDN:          "invalid_dn",
	KindConstraint:         "constraint",
	KindUnknownPrincipal:   "unknown_principal",
	KindTLS:                "tls",
	KindConfig:             "config",
	KindConflict:           "conflict",
	KindSizeLimit:          "size_limit",
}

// String is a stable snake_case name, usable as a metric label.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// describe is the human phrase that starts an error message of this kind.
func (k Kind) describe() string {
	switch k {
	case KindTransient:
		return "directory unavailable"
	case KindInvalidCredentials:
		return "invalid credentials"
	case KindAccountLocked:
		return "account locked out (a domain admin must unlock it)"
	case KindInsufficientAccess:
		return "insufficient access"
	case KindNoSuchObject:
		return "no such object"
	case KindParentMissing:
		return "parent object does not exist"
	case KindAlreadyExists:
		return "object already exists"
	case KindInvalidDN:
		return "invalid DN"
	case KindConstraint:
		return "constraint violation"
	case KindUnknownPrincipal:
		return "unknown principal"
	case KindTLS:
		return "TLS certificate verification failed (check caBundleSecretRef and the DC's certificate)"
	case KindConfig:
		return "invalid directory configuration"
	case KindConflict:
		return "changed by another writer"
	case KindSizeLimit:
		return "size limit exceeded (more entries match than the DC returns for one search; check its MaxPageSize and MaxResultSetSize query policy)"
	default:
		return "directory error"
	}
}

// Sentinels for errors.Is. An *Error matches the sentinel of its Kind.
var (
	ErrUnknownPrincipal = errors.New("unknown principal")
	ErrParentMissing    = errors.New("parent object does not exist")
	ErrAlreadyExists    = errors.New("object already exists")
	ErrNoSuchObject     = errors.New("no such object")
	// ErrClosed is returned by a Client whose Pool was closed.
	ErrClosed = errors.New("directory pool closed")
)

// Error is every error this package returns: which operation on which DN failed, and how
// to treat it. Messages never carry passwords or attribute values the operator wrote.
type Error struct {
	Op   string // bind, search, add, modify, delete, dial, starttls, resolve, config, ...
	DN   string // the object, bind identity or URL the operation was about; may be empty
	Kind Kind
	Code int // LDAP result code, 0 when the error did not come from the server
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if dnErr, ok := e.Err.(*DNError); ok {
		// The DN error quotes the DN and says what is wrong with it already.
		b.WriteString(": ")
		b.WriteString(dnErr.Error())
		return b.String()
	}
	if e.DN != "" {
		b.WriteString(" ")
		b.WriteString(e.DN)
	}
	b.WriteString(": ")
	b.WriteString(e.Kind.describe())
	if e.Code != 0 {
		fmt.Fprintf(&b, " (LDAP %d)", e.Code)
	}
	if e.Err != nil {
		msg := e.Err.Error()
		if lerr, ok := e.Err.(*ldap.Error); ok && lerr.Err != nil {
			msg = lerr.Err.Error() // the server's diagnostic, without go-ldap's "LDAP Result Code" preamble
		}
		if msg != "" {
			b.WriteString(": ")
			b.WriteString(msg)
		}
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrParentMissing) and friends work by Kind.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrUnknownPrincipal:
		return e.Kind == KindUnknownPrincipal
	case ErrParentMissing:
		return e.Kind == KindParentMissing
	case ErrAlreadyExists:
		return e.Kind == KindAlreadyExists
	case ErrNoSuchObject:
		return e.Kind == KindNoSuchObject
	}
	return false
}

// KindOf returns the Kind of err, KindOther for errors not from this package, and
// KindTransient for context cancellation and deadlines.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	var dnErr *DNError
	if errors.As(err, &dnErr) {
		return KindInvalidDN
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return KindTransient
	}
	return KindOther
}

// IsTransient reports whether retrying err later may succeed without anyone changing anything.
func IsTransient(err error) bool { return err != nil && KindOf(err) == KindTransient }

// classify turns whatever go-ldap, net or crypto/tls returned into an *Error. secrets are
// redacted from the server's diagnostic (servers have been known to echo values back).
func classify(op, dn string, err error, secrets ...[]byte) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	out := &Error{Op: op, DN: dn, Err: err}
	var lerr *ldap.Error
	if errors.As(err, &lerr) {
		out.Kind = kindOfLDAP(op, lerr)
		if lerr.ResultCode < ldap.ErrorNetwork {
			out.Code = int(lerr.ResultCode)
		}
		// Keep the *ldap.Error type for callers, but only with a cleaned-up diagnostic.
		diag := ""
		if lerr.Err != nil {
			diag = sanitize(lerr.Err.Error(), secrets)
		}
		out.Err = &ldap.Error{ResultCode: lerr.ResultCode, MatchedDN: lerr.MatchedDN, Err: errors.New(diag)}
		if lerr.ResultCode == ldap.ErrorNetwork && isTLSVerification(err) {
			out.Kind = KindTLS
		}
		return out
	}
	switch {
	case isTLSVerification(err):
		out.Kind = KindTLS
	case isNetwork(err):
		out.Kind = KindTransient
	default:
		out.Kind = KindOther
		out.Err = errors.New(sanitize(err.Error(), secrets))
	}
	return out
}

func kindOfLDAP(op string, lerr *ldap.Error) Kind {
	switch lerr.ResultCode {
	case ldap.LDAPResultInvalidCredentials:
		if accountLockedOut(lerr) {
			return KindAccountLocked
		}
		return KindInvalidCredentials
	case ldap.LDAPResultInsufficientAccessRights:
		return KindInsufficientAccess
	case ldap.LDAPResultNoSuchObject:
		if op == "add" {
			return KindParentMissing
		}
		return KindNoSuchObject
	case ldap.LDAPResultEntryAlreadyExists:
		return KindAlreadyExists
	case ldap.LDAPResultSizeLimitExceeded:
		return KindSizeLimit
	case ldap.LDAPResultInvalidDNSyntax, ldap.LDAPResultNamingViolation:
		return KindInvalidDN
	case ldap.LDAPResultNoSuchAttribute, ldap.LDAPResultUndefinedAttributeType,
		ldap.LDAPResultInappropriateMatching, ldap.LDAPResultConstraintViolation,
		ldap.LDAPResultAttributeOrValueExists, ldap.LDAPResultInvalidAttributeSyntax,
		ldap.LDAPResultObjectClassViolation, ldap.LDAPResultNotAllowedOnNonLeaf,
		ldap.LDAPResultNotAllowedOnRDN, ldap.LDAPResultObjectClassModsProhibited:
		return KindConstraint
	case ldap.LDAPResultBusy, ldap.LDAPResultUnavailable, ldap.LDAPResultTimeLimitExceeded,
		ldap.LDAPResultAdminLimitExceeded, ldap.LDAPResultServerDown, ldap.LDAPResultTimeout,
		ldap.LDAPResultConnectError, ldap.ErrorNetwork:
		return KindTransient
	case ldap.LDAPResultUnwillingToPerform:
		if transientUnwilling(lerr) {
			return KindTransient
		}
		return KindOther
	case ldap.LDAPResultStrongAuthRequired, ldap.LDAPResultConfidentialityRequired,
		ldap.LDAPResultAuthMethodNotSupported, ldap.LDAPResultInappropriateAuthentication,
		ldap.ErrorEmptyPassword:
		return KindConfig
	}
	return KindOther
}

// accountLockedOut: AD refuses every bind of a locked-out account with invalidCredentials and
// says why in the diagnostic's Win32 error code, "data 775" (ERROR_ACCOUNT_LOCKED_OUT), as
// Samba does too: e.g. "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext
// error, data 775, v1db1".
func accountLockedOut(lerr *ldap.Error) bool {
	return lerr.Err != nil && dataAccountLockedOut.MatchString(lerr.Err.Error())
}

var dataAccountLockedOut = regexp.MustCompile(`(?i)\bdata 775\b`)

// transientUnwilling: AD answers unwillingToPerform (53) for permanent refusals (password
// policy, deleting a non-leaf, ...) and for a DC that is shutting down or not yet ready.
// Only the latter is worth retrying.
func transientUnwilling(lerr *ldap.Error) bool {
	if lerr.Err == nil {
		return false
	}
	msg := strings.ToLower(lerr.Err.Error())
	for _, s := range []string{"shutting down", "busy", "try again", "not ready", "unavailable", "000020af"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func isTLSVerification(err error) bool {
	var (
		verr  *tls.CertificateVerificationError
		uae   x509.UnknownAuthorityError
		hne   x509.HostnameError
		cie   x509.CertificateInvalidError
		rhe   tls.RecordHeaderError
		alert tls.AlertError
	)
	if errors.As(err, &verr) || errors.As(err, &uae) || errors.As(err, &hne) ||
		errors.As(err, &cie) || errors.As(err, &rhe) || errors.As(err, &alert) {
		return true
	}
	// go-ldap's StartTLS flattens the handshake error into text ("TLS handshake failed (...)").
	msg := err.Error()
	return strings.Contains(msg, "TLS handshake failed") &&
		(strings.Contains(msg, "x509:") || strings.Contains(msg, "certificate") || strings.Contains(msg, "tls:"))
}

func isNetwork(err error) bool {
	var nerr net.Error
	return errors.As(err, &nerr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		// go-ldap reports a connection that died under a pending request as plain text.
		strings.Contains(err.Error(), "unable to read LDAP response packet") ||
		strings.Contains(err.Error(), "unable to send request")
}

// connectionBroken reports whether err means the connection itself is unusable, so the
// Client must drop it and dial again.
func connectionBroken(conn *ldap.Conn, err error) bool {
	if conn != nil && conn.IsClosing() {
		return true
	}
	var lerr *ldap.Error
	if errors.As(err, &lerr) {
		switch lerr.ResultCode {
		case ldap.ErrorNetwork, ldap.LDAPResultServerDown, ldap.LDAPResultConnectError, ldap.LDAPResultUnavailable:
			return true
		}
		return false
	}
	return isNetwork(err) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// sanitize keeps a server diagnostic printable and short, and cuts out any secret it echoes.
func sanitize(msg string, secrets [][]byte) string {
	for _, s := range secrets {
		if len(s) >= 4 {
			msg = strings.ReplaceAll(msg, string(s), "[redacted]")
		}
	}
	msg = strings.Map(func(r rune) rune {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, msg)
	const max = 512
	if len(msg) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "..."
	}
	return msg
}

func configError(format string, args ...any) *Error {
	return &Error{Op: "config", Kind: KindConfig, Err: fmt.Errorf(format, args...)}
}
