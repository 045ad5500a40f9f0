package secdesc

import (
	"fmt"
	"slices"
	"strings"
)

// The safe-DACL gate: a DKM container's DACL is safe when no principal outside
// the allowed key readers can read a key, whether or not the DACL is the exact
// template. Keys live in the thumbnailPhoto attribute of contact objects below
// the container (CN=DC Manager <GUID>/CN=<key ID>), so what matters is what
// the container's ACEs grant, through inheritance, on those contacts.

// Schema GUIDs the gate checks, as the AD schema defines them ([MS-ADA3]
// 2.307 "Attribute thumbnailPhoto", [MS-ADSC] for the classes; the same values
// Samba 4.17 provisions, pinned by the controllers' integration tests against
// the live DC's schema).
var (
	// GUIDThumbnailPhoto is the schemaIDGUID of thumbnailPhoto (cn Picture),
	// the attribute that holds a key.
	GUIDThumbnailPhoto = MustParseGUID("8d3bca50-1d7e-11d0-a081-00aa006c33ed")
	// GUIDPersonalInformation is the rightsGuid of the Personal-Information
	// property set: thumbnailPhoto's attributeSecurityGUID, so read access to
	// the property set is read access to the key.
	GUIDPersonalInformation = MustParseGUID("77b5b886-944a-11d1-aebd-0000f80367c1")
	// GUIDClassContact is the schemaIDGUID of the contact class (key objects
	// and CryptoPolicy).
	GUIDClassContact = MustParseGUID("5cb41ed0-0e4c-11d0-a286-00aa003049e2")
	// GUIDClassContainer is the schemaIDGUID of the container class (the DKM
	// container and its DC Manager object).
	GUIDClassContainer = MustParseGUID("bf967a8b-0de6-11d0-a285-00aa003049e2")
	// GUIDClassOrganizationalPerson, GUIDClassPerson and GUIDClassTop are
	// contact's superclasses.
	GUIDClassOrganizationalPerson = MustParseGUID("bf967aa4-0de6-11d0-a285-00aa003049e2")
	GUIDClassPerson               = MustParseGUID("bf967aa7-0de6-11d0-a285-00aa003049e2")
	GUIDClassTop                  = MustParseGUID("bf967ab7-0de6-11d0-a285-00aa003049e2")
)

// keyClasses are the classes an inherited-object-type restriction may name
// and still reach a key object: contact and, in case a DC matched a
// superclass, its superclasses. Windows and Samba match the structural class
// exactly; counting the superclasses too keeps the check conservative.
var keyClasses = []GUID{GUIDClassContact, GUIDClassOrganizationalPerson, GUIDClassPerson, GUIDClassTop}

// subtreeClasses are the classes of every object below a DKM container: the
// key classes and container (DC Manager). Rewriting any of their DACLs
// exposes the keys below them.
var subtreeClasses = append(slices.Clone(keyClasses), GUIDClassContainer)

// KeyReaders is who may read a DKM container's keys: the template principals
// (SYSTEM, Enterprise Admins of ForestRoot, Domain Admins and Administrator of
// Domain, BUILTIN\Administrators) and Accounts (the service accounts and the
// operator's bind identity). A principal that stands for everybody (see
// BroadPrincipal) is never a reader, even when listed in Accounts. Enterprise
// Domain Controllers is not a reader either: the template grants it only
// tokenGroups, which does not expose a key.
type KeyReaders struct {
	Domain     SID
	ForestRoot SID
	Accounts   []SID
}

// Allowed reports whether s may read keys.
func (k KeyReaders) Allowed(s SID) bool {
	if s.IsZero() || BroadPrincipal(s) != "" {
		return false
	}
	if s == SIDLocalSystem || s == SIDBuiltinAdministrators {
		return true
	}
	if d, rid, ok := s.SplitDomainRID(); ok {
		if !k.Domain.IsZero() && d == k.Domain && (rid == RIDDomainAdmins || rid == RIDAdministrator) {
			return true
		}
		if !k.ForestRoot.IsZero() && d == k.ForestRoot && rid == RIDEnterpriseAdmins {
			return true
		}
	}
	return slices.Contains(k.Accounts, s)
}

// Exposure is one ACE through which a principal outside the key readers could
// read a key, with its SDDL and why.
type Exposure struct {
	ACE    ACE
	SDDL   string
	Reason string
}

// String is the ACE's SDDL followed by the reason.
func (e Exposure) String() string { return e.SDDL + " " + e.Reason }

// Safety is the verdict of CheckDACLSafety.
type Safety struct {
	// HasDACL is false when there is no descriptor or no DACL: a NULL DACL
	// grants everybody everything.
	HasDACL bool
	// Protected is SE_DACL_PROTECTED: nothing granted on the parent or above
	// is inherited.
	Protected bool
	// Exposures are the offending ACEs, in DACL order.
	Exposures []Exposure
}

// Safe reports whether keys may be written under the DACL.
func (s Safety) Safe() bool { return s.HasDACL && s.Protected && len(s.Exposures) == 0 }

// String explains an unsafe verdict in one line for conditions and events, the
// offending ACEs in SDDL; "safe" for a safe one.
func (s Safety) String() string {
	if s.Safe() {
		return "safe"
	}
	var parts []string
	switch {
	case !s.HasDACL:
		parts = append(parts, "there is no DACL (a NULL DACL grants everybody full control)")
	case !s.Protected:
		parts = append(parts, "the DACL is not protected, so ACEs granted on the parent and above are inherited")
	}
	for _, e := range s.Exposures {
		parts = append(parts, e.String())
	}
	return strings.Join(parts, "; ")
}

// CheckDACLSafety decides whether sd's DACL, on a DKM container, is safe: it
// is present and protected (SE_DACL_PROTECTED), and no allow ACE lets a
// principal outside readers read a key. An allow ACE exposes the keys when
// it is not for an allowed reader and
//
//   - it reaches the key objects: it is inheritable (CI or OI; NP is ignored,
//     conservatively) and has no inherited object type, or one naming contact
//     or a superclass of it; and it grants read of thumbnailPhoto: READ_PROPERTY
//     on every property (no object type), on thumbnailPhoto or on its property
//     set (Personal-Information), GENERIC_READ or GENERIC_ALL (full control
//     includes READ_PROPERTY); or
//   - it lets the principal rewrite a DACL (WRITE_DAC, WRITE_OWNER or
//     GENERIC_ALL, whatever its object type) on the container itself (the ACE
//     is not inherit-only) or on objects below it (inheritable to contact,
//     container or any class): the principal could grant itself read.
//
// An ACE that is effective on the container alone and grants only reads
// (e.g. (A;;RPLCLORC;;;AU)) does not expose a key: the container holds none.
// Deny ACEs are not evaluated: they never make an unsafe DACL safe. Every ACE
// counts, including any marked inherited. An allow ACE of a type this package
// does not model (callback, compound) cannot be evaluated and is an
// exposure. a renders the SDDL. CheckDACLSafety never fails and never panics:
// any parsed descriptor, even a hostile one, gets a verdict.
func CheckDACLSafety(sd *SecurityDescriptor, readers KeyReaders, a Aliases) Safety {
	var s Safety
	if sd == nil || sd.DACL == nil {
		return s
	}
	s.HasDACL = true
	s.Protected = sd.IsDACLProtected()
	for _, ace := range sd.DACL.ACEs {
		if reason := exposure(ace, readers, a); reason != "" {
			s.Exposures = append(s.Exposures, Exposure{ACE: ace.Clone(), SDDL: FormatACE(ace, a), Reason: reason})
		}
	}
	return s
}

// readRights grant read of a property (or of all of them).
const readRights = RightReadProperty | RightGenericRead | RightGenericAll

// controlRights let a principal change who may read: the DACL, or the owner
// (who may always write the DACL).
const controlRights = RightWriteDACL | RightWriteOwner | RightGenericAll

// exposure returns why ace lets someone outside readers read a key, or "".
func exposure(ace ACE, readers KeyReaders, a Aliases) string {
	switch {
	case !ace.Type.Modelled():
		if allowsUnmodelled(ace.Type) {
			return fmt.Sprintf("is an allow ACE of type %#02x, which the operator cannot evaluate: it may grant read of the key to anybody", uint8(ace.Type))
		}
		return ""
	case ace.Type != ACETypeAccessAllowed && ace.Type != ACETypeAccessAllowedObject:
		return "" // deny and audit ACEs grant nothing
	case readers.Allowed(ace.SID):
		return ""
	}
	onContainer := ace.Flags&ACEFlagInheritOnly == 0
	inheritable := ace.Flags&(ACEFlagContainerInherit|ACEFlagObjectInherit) != 0
	var iot *GUID
	if ace.Type.IsObject() && ace.ObjectFlags&InheritedObjectTypePresent != 0 {
		iot = &ace.InheritedObjectType
	}
	toKeys := inheritable && (iot == nil || slices.Contains(keyClasses, *iot))
	toSubtree := inheritable && (iot == nil || slices.Contains(subtreeClasses, *iot))

	var what []string
	if toKeys && ace.Mask&readRights != 0 && coversThumbnailPhoto(ace) {
		what = append(what, "read the key ("+readWhat(ace)+") on the key objects, by inheritance")
	}
	if ace.Mask&controlRights != 0 && (onContainer || toSubtree) {
		where := "the container"
		if !onContainer {
			where = "the objects below the container, by inheritance"
		} else if toSubtree {
			where = "the container and the objects below it"
		}
		what = append(what, "rewrite the DACL ("+controlWhat(ace.Mask)+") of "+where+", and so grant itself read of the key")
	}
	if len(what) == 0 {
		return ""
	}
	who := principalName(ace.SID, a)
	reason := "lets " + who + " " + strings.Join(what, " and ")
	if why := BroadPrincipal(ace.SID); why != "" {
		reason += "; " + why + " stands for everybody and is never an allowed key reader, not even as a service account"
	} else {
		reason += "; it is not a template principal, a service account or the operator"
	}
	return reason
}

// coversThumbnailPhoto reports whether an ACE's object type, if any, includes
// thumbnailPhoto: none (every property), thumbnailPhoto itself or its
// property set. GENERIC_ALL and GENERIC_READ with an object type apply to
// that object type only, like READ_PROPERTY.
func coversThumbnailPhoto(ace ACE) bool {
	if !ace.Type.IsObject() || ace.ObjectFlags&ObjectTypePresent == 0 {
		return true
	}
	return ace.ObjectType == GUIDThumbnailPhoto || ace.ObjectType == GUIDPersonalInformation
}

func readWhat(ace ACE) string {
	var right string
	switch {
	case ace.Mask&RightGenericAll != 0:
		right = "GENERIC_ALL"
	case ace.Mask&RightGenericRead != 0:
		right = "GENERIC_READ"
	case ace.Mask.Has(RightsFullControl):
		right = "full control"
	default:
		right = "READ_PROPERTY"
	}
	if !ace.Type.IsObject() || ace.ObjectFlags&ObjectTypePresent == 0 {
		return right + " on every property, thumbnailPhoto included"
	}
	if ace.ObjectType == GUIDThumbnailPhoto {
		return right + " on thumbnailPhoto"
	}
	return right + " on the Personal-Information property set, which holds thumbnailPhoto"
}

func controlWhat(m AccessMask) string {
	var rights []string
	for _, r := range []struct {
		mask AccessMask
		name string
	}{{RightWriteDACL, "WRITE_DAC"}, {RightWriteOwner, "WRITE_OWNER"}, {RightGenericAll, "GENERIC_ALL"}} {
		if m&r.mask != 0 {
			rights = append(rights, r.name)
		}
	}
	return strings.Join(rights, ", ")
}

// principalName names a SID for a person: a broad group by its name, any
// other SID by its SDDL alias or S-1-... form.
func principalName(s SID, a Aliases) string {
	if why := BroadPrincipal(s); why != "" {
		return why
	}
	switch s {
	case SIDEnterpriseDomainControllers:
		return "Enterprise Domain Controllers"
	case SIDCreatorOwner:
		return "Creator Owner"
	case SIDPrincipalSelf:
		return "Principal Self"
	}
	return a.formatSID(s)
}

// allowsUnmodelled reports whether an ACE type this package keeps opaque can
// grant access: the compound and callback allow types, and any type newer
// than [MS-DTYP] 2.4.4.1 lists (conservatively). Alarm, audit, deny-callback,
// label, resource-attribute and scoped-policy ACEs grant nothing.
func allowsUnmodelled(t ACEType) bool {
	switch t {
	case 0x04, 0x09, 0x0B: // ACCESS_ALLOWED_COMPOUND, ACCESS_ALLOWED_CALLBACK, ACCESS_ALLOWED_CALLBACK_OBJECT
		return true
	}
	return t > 0x13
}

// EffectiveKeyAccess says what ace, in the DACL of a key object itself (explicit or inherited,
// as AD computed it), lets its principal do to the key: read it (READ_PROPERTY on every
// property, on thumbnailPhoto or on its property set, GENERIC_READ, GENERIC_ALL), or rewrite
// the object's DACL or owner and so grant itself read. It is "" for an ACE that does neither,
// that is inherit-only (it does not apply to the object), or that is not an allow ACE. An allow
// ACE of a type this package does not model is assumed to allow everything.
func EffectiveKeyAccess(ace ACE) string {
	switch {
	case !ace.Type.Modelled():
		if allowsUnmodelled(ace.Type) {
			return fmt.Sprintf("an allow ACE of type %#02x, which cannot be evaluated", uint8(ace.Type))
		}
		return ""
	case ace.Type != ACETypeAccessAllowed && ace.Type != ACETypeAccessAllowedObject, ace.Flags&ACEFlagInheritOnly != 0:
		return ""
	}
	var what []string
	if ace.Mask&readRights != 0 && coversThumbnailPhoto(ace) {
		what = append(what, "read ("+readWhat(ace)+")")
	}
	if ace.Mask&controlRights != 0 {
		what = append(what, "rewrite the DACL ("+controlWhat(ace.Mask)+")")
	}
	return strings.Join(what, " and ")
}
