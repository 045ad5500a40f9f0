// Package secdesc models Windows NT security descriptors as Active Directory
// stores them in nTSecurityDescriptor: SIDs, GUIDs, ACEs, ACLs and the
// self-relative descriptor of [MS-DTYP] 2.4, with an exact binary codec, an
// SDDL text form for status, events, logs and tests, the DKM container's DACL
// template, and a diff of an actual DACL against the template.
//
// Binary parsing is written for untrusted input: every length and offset is
// checked before use, errors name the offset and the field that was malformed,
// and everything a parsed descriptor carries (part order, padding, reserved
// fields, ACE types this package does not model) is kept, so re-marshalling a
// descriptor read from a domain controller reproduces its bytes exactly.
//
// The package uses only the standard library. The evaluated third-party
// libraries (github.com/TheManticoreProject/winacl,
// github.com/huner2/go-sddlparse/v2) cannot be fetched through the module
// proxy available to this project.
package secdesc
