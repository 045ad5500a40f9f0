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
// that stand for everybody (Everyone, Authenticated Users, Domain Users, ...)
// are refused.
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
		if why := broadPrincipal(s, domain); why != "" {
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

// broadPrincipal names the well-known groups that stand for "everybody" (or
// every user or computer of the domain), which must never be a service
// account; it returns "" for any other SID.
func broadPrincipal(s, domain SID) string {
	switch s {
	case SIDEveryone:
		return "Everyone"
	case SIDAuthenticatedUsers:
		return "Authenticated Users"
	case mustSID(5, 7):
		return "Anonymous Logon"
	case mustSID(5, 2):
		return "Network"
	case mustSID(5, 4):
		return "Interactive"
	case mustSID(5, 32, 545):
		return `BUILTIN\Users`
	case mustSID(5, 32, 546):
		return `BUILTIN\Guests`
	}
	if d, rid, ok := s.SplitDomainRID(); ok && d == domain {
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
