// Package directory is the operator's only door to Active Directory: LDAP over TLS (ldaps://
// or ldap:// with StartTLS) with github.com/go-ldap/ldap/v3, one shared connection per
// identity (Pool, Client), failover across domain controllers, SID resolution, and the few
// reads and writes DKM needs on its container, the "DC Manager <GUID>" object and the key
// contacts.
//
// Three rules hold for every write: new objects carry their security descriptor in the add
// request (a key is never readable outside the template, not even for a moment); only the
// DACL is ever read or written (SD flags control 0x4); and nothing is overwritten (an
// existing key is KindAlreadyExists).
//
// Errors are classified here, once: every error is an *Error with a Kind (IsTransient,
// KindOf, and errors.Is with ErrUnknownPrincipal, ErrParentMissing, ErrAlreadyExists,
// ErrNoSuchObject). Messages name the operation and DN and never carry passwords or key bytes.
package directory
