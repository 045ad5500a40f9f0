package secdesc

import (
	"cmp"
	"fmt"
	"slices"
)

// RightsAllButDelete is full control without DELETE (SD) and DELETE_TREE
// (DT): CCDCLCSWRPWPLOCRRCWDWO.
const RightsAllButDelete = RightsFullControl &^ (RightDelete | RightDeleteTree)

// DKMTemplate returns the descriptor to write (with SD flags 0x4, DACL only)
// on a DKM container: the ACEs of the container VMM 2012 creates, without
// Authenticated Users, in a protected DACL so nothing granted above it (on
// CN=System or the domain root) reaches the keys.
//
//  1. SYSTEM: full control, this object only.
//  2. Enterprise Domain Controllers: read tokenGroups on descendant user,
//     group and computer objects (three object ACEs, CI|IO).
//  3. Enterprise Admins (forest root RID 519): full control, CI.
//  4. Domain Admins (RID 512): full control, CI.
//  5. Administrator (RID 500): full control, CI.
//  6. BUILTIN\Administrators: full control but SD and DT, CI.
//  7. Each service account: full control, CI, sorted by SID string.
//
// Rights are specific, never generic: AD splits a CI ACE with generic rights
// into an inherit-only generic ACE plus a mapped specific one, so a generic
// template would never compare equal to what the DC stores. All ACEs allow,
// so this order is also canonical (deny first). A service account whose ACE
// would duplicate one above (e.g. the Administrator) adds nothing; groups
// that stand for everybody (Everyone, Authenticated Users, Domain Users, ...;
// see BroadPrincipal) are refused.
func DKMTemplate(domain, forestRoot SID, serviceAccounts []SID) (*SecurityDescriptor, error) {
	if !domain.IsDomainSID() {
		return nil, fmt.Errorf("DKM template: domain %q is not a domain SID (S-1-5-21-x-y-z)", domain)
	}
	if !forestRoot.IsDomainSID() {
		return nil, fmt.Errorf("DKM template: forest root %q is not a domain SID (S-1-5-21-x-y-z)", forestRoot)
	}
	rel := func(d SID, rid uint32) SID {
		s, _ := DomainRelativeSID(d, rid) // d was checked above
		return s
	}
	const ci = ACEFlagContainerInherit
	aces := []ACE{
		NewACE(ACETypeAccessAllowed, 0, RightsFullControl, SIDLocalSystem),
	}
	for _, class := range []GUID{GUIDClassUser, GUIDClassGroup, GUIDClassComputer} {
		aces = append(aces, NewObjectACE(ACETypeAccessAllowedObject, ci|ACEFlagInheritOnly, RightReadProperty,
			SIDEnterpriseDomainControllers, GUIDTokenGroups, class))
	}
	aces = append(aces,
		NewACE(ACETypeAccessAllowed, ci, RightsFullControl, rel(forestRoot, RIDEnterpriseAdmins)),
		NewACE(ACETypeAccessAllowed, ci, RightsFullControl, rel(domain, RIDDomainAdmins)),
		NewACE(ACETypeAccessAllowed, ci, RightsFullControl, rel(domain, RIDAdministrator)),
		NewACE(ACETypeAccessAllowed, ci, RightsAllButDelete, SIDBuiltinAdministrators),
	)

	accounts := slices.Clone(serviceAccounts)
	for i, s := range accounts {
		if s.IsZero() {
			return nil, fmt.Errorf("DKM template: service account %d has no SID", i)
		}
		if why := BroadPrincipal(s); why != "" {
			return nil, fmt.Errorf("DKM template: service account %d (%s) is %s; granting it full control would expose the keys", i, s, why)
		}
	}
	slices.SortFunc(accounts, func(a, b SID) int { return cmp.Compare(a.String(), b.String()) })
	for _, s := range slices.Compact(accounts) {
		ace := NewACE(ACETypeAccessAllowed, ci, RightsFullControl, s)
		if !slices.ContainsFunc(aces, ace.Equal) {
			aces = append(aces, ace)
		}
	}
	return &SecurityDescriptor{
		Control: ControlSelfRelative | ControlDACLPresent | ControlDACLProtected,
		DACL:    NewACL(aces...),
	}, nil
}

// BroadPrincipal names the well-known SIDs and groups that stand for
// everybody, or for every user, computer, logon or authentication of some
// kind, which must never be a service account; it returns "" for any other
// SID. Most of them have no object in AD (Everyone, Anonymous Logon, This
// Organization) or only a foreignSecurityPrincipal, so callers check a SID
// given as text here before looking it up. Domain Users, Domain Guests and
// Domain Computers are refused in every domain: a trusted domain's are just
// as broad.
func BroadPrincipal(s SID) string {
	if why, ok := broadPrincipals[s]; ok {
		return why
	}
	if _, rid, ok := s.SplitDomainRID(); ok {
		switch rid {
		case 513:
			return "Domain Users"
		case 514:
			return "Domain Guests"
		case 515:
			return "Domain Computers"
		}
	}
	return ""
}

// broadPrincipals are the well-known SIDs BroadPrincipal refuses, by the
// names Windows gives them ([MS-DTYP] 2.4.2.4).
var broadPrincipals = map[SID]string{
	SIDEveryone:           "Everyone",
	mustSID(2, 0):         "Local",
	mustSID(2, 1):         "Console Logon",
	mustSID(5, 1):         "Dialup",
	mustSID(5, 2):         "Network",
	mustSID(5, 3):         "Batch",
	mustSID(5, 4):         "Interactive",
	mustSID(5, 6):         "Service",
	mustSID(5, 7):         "Anonymous Logon",
	SIDAuthenticatedUsers: "Authenticated Users",
	mustSID(5, 13):        "Terminal Server Users",
	mustSID(5, 14):        "Remote Interactive Logon",
	mustSID(5, 15):        "This Organization",
	mustSID(5, 1000):      "Other Organization",
	mustSID(5, 64, 10):    "NTLM Authentication",
	mustSID(5, 64, 14):    "SChannel Authentication",
	mustSID(5, 64, 21):    "Digest Authentication",
	mustSID(5, 113):       "Local account",
	mustSID(5, 114):       "Local account and member of Administrators group",
	mustSID(18, 1):        "Authentication authority asserted identity",
	mustSID(18, 2):        "Service asserted identity",
	mustSID(5, 32, 545):   `BUILTIN\Users`,
	mustSID(5, 32, 546):   `BUILTIN\Guests`,
	mustSID(5, 32, 554):   `BUILTIN\Pre-Windows 2000 Compatible Access`,
}

// ChildDescriptor returns the descriptor to send in the add request of every
// object created inside a DKM container: an explicit, empty, unprotected DACL.
// AD then adds only the ACEs inherited from the container. Without it, AD
// applies the class's defaultSecurityDescriptor, whose explicit ACEs include
// Authenticated Users read access for containers and contacts (observed on
// Samba 4.17: (A;;RPLCLORC;;;AU)).
func ChildDescriptor() *SecurityDescriptor {
	return &SecurityDescriptor{
		Control: ControlSelfRelative | ControlDACLPresent,
		DACL:    NewACL(),
	}
}
