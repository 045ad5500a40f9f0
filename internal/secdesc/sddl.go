package secdesc

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// SDDL ([MS-DTYP] 2.5.1) is this package's text form for status, events, logs
// and test fixtures. Formatting is deterministic: rights and flags are written
// in ascending bit order, GUIDs in lowercase, SIDs as aliases or S-1-... .
//
// Where SDDL cannot express a binary detail (ACL revision and padding, the
// DEFAULTED/TRUSTED control bits, part order), the text form leaves it out;
// ParseSDDL then yields the form AD itself stores (ACL revision 4,
// ControlSelfRelative). Object-ACE flag bits other than the two presence bits
// are not expressible either. Two extensions keep every ACE printable: a mask
// or flag set that has bits without a letter is written in hex (0x...), and an
// ACE of a type this package does not model is written as
// (0xTT;flags;;;;#hexbody).

// Aliases controls which SID aliases FormatSDDL writes and which ParseSDDL
// accepts. The fixed aliases (SY, BA, AU, ED, ...) are always accepted; the
// domain-relative ones (DA, LA, DU, ...) need Domain, and the forest-root ones
// (EA, SA, EK, RO) need ForestRoot.
type Aliases struct {
	// Domain is the domain SID (S-1-5-21-x-y-z) for DA, DU, LA, ...; zero
	// disables those aliases.
	Domain SID
	// ForestRoot is the forest root domain's SID for EA, SA, EK, RO; zero
	// disables those aliases. In a single-domain forest it equals Domain.
	ForestRoot SID
	// FullSIDs makes FormatSDDL write every SID as S-1-...; ParseSDDL is not
	// affected.
	FullSIDs bool
}

var (
	// WellKnownAliases formats with the fixed aliases only: SY, BA, AU, ED...
	WellKnownAliases = Aliases{}
	// PlainSIDs formats every SID in full.
	PlainSIDs = Aliases{FullSIDs: true}
)

// DomainAliases returns Aliases for a domain and its forest root.
func DomainAliases(domain, forestRoot SID) Aliases {
	return Aliases{Domain: domain, ForestRoot: forestRoot}
}

// fixedAliases are the SDDL aliases of SIDs that do not depend on a domain
// ([MS-DTYP] 2.5.1.1; the same set Samba 4.17 accepts).
var fixedAliases = map[string]string{
	"AA": "S-1-5-32-579", "AC": "S-1-15-2-1", "AN": "S-1-5-7", "AO": "S-1-5-32-548",
	"AS": "S-1-18-1", "AU": "S-1-5-11", "BA": "S-1-5-32-544", "BG": "S-1-5-32-546",
	"BO": "S-1-5-32-551", "BU": "S-1-5-32-545", "CD": "S-1-5-32-574", "CG": "S-1-3-1",
	"CO": "S-1-3-0", "CY": "S-1-5-32-569", "ED": "S-1-5-9", "ER": "S-1-5-32-573",
	"ES": "S-1-5-32-576", "HA": "S-1-5-32-578", "HI": "S-1-16-12288", "IS": "S-1-5-32-568",
	"IU": "S-1-5-4", "LS": "S-1-5-19", "LU": "S-1-5-32-559", "LW": "S-1-16-4096",
	"ME": "S-1-16-8192", "MP": "S-1-16-8448", "MS": "S-1-5-32-577", "MU": "S-1-5-32-558",
	"NO": "S-1-5-32-556", "NS": "S-1-5-20", "NU": "S-1-5-2", "OW": "S-1-3-4",
	"PO": "S-1-5-32-550", "PS": "S-1-5-10", "PU": "S-1-5-32-547", "RA": "S-1-5-32-575",
	"RC": "S-1-5-12", "RD": "S-1-5-32-555", "RE": "S-1-5-32-552", "RM": "S-1-5-32-580",
	"RU": "S-1-5-32-554", "SI": "S-1-16-16384", "SO": "S-1-5-32-549", "SS": "S-1-18-2",
	"SU": "S-1-5-6", "SY": "S-1-5-18", "UD": "S-1-5-84-0-0-0-0-0", "WD": "S-1-1-0",
	"WR": "S-1-5-33",
}

// domainAliases are relative to the object's domain.
var domainAliases = map[string]uint32{
	"LA": 500, "LG": 501, "DA": 512, "DU": 513, "DG": 514, "DC": 515, "DD": 516,
	"CA": 517, "PA": 520, "CN": 522, "AP": 525, "KA": 526, "RS": 553,
}

// forestAliases are relative to the forest root domain.
var forestAliases = map[string]uint32{
	"RO": 498, "SA": 518, "EA": 519, "EK": 527,
}

// Reverse tables, built once.
var (
	sidToFixedAlias = map[SID]string{}
	ridToDomain     = map[uint32]string{}
	ridToForest     = map[uint32]string{}
)

func init() {
	for alias, text := range fixedAliases {
		sidToFixedAlias[MustParseSID(text)] = alias
	}
	for alias, rid := range domainAliases {
		ridToDomain[rid] = alias
	}
	for alias, rid := range forestAliases {
		ridToForest[rid] = alias
	}
}

func (a Aliases) formatSID(s SID) string {
	if a.FullSIDs {
		return s.String()
	}
	if alias, ok := sidToFixedAlias[s]; ok {
		return alias
	}
	if domain, rid, ok := s.SplitDomainRID(); ok {
		if alias, ok := ridToForest[rid]; ok && domain == a.ForestRoot {
			return alias
		}
		if alias, ok := ridToDomain[rid]; ok && domain == a.Domain {
			return alias
		}
	}
	return s.String()
}

// Letters for masks and flags, in ascending bit order (the order Format uses).
var (
	rightLetters = []struct {
		letters string
		mask    AccessMask
	}{
		{"CC", RightCreateChild}, {"DC", RightDeleteChild}, {"LC", RightListChildren},
		{"SW", RightSelfWrite}, {"RP", RightReadProperty}, {"WP", RightWriteProperty},
		{"DT", RightDeleteTree}, {"LO", RightListObject}, {"CR", RightControlAccess},
		{"SD", RightDelete}, {"RC", RightReadControl}, {"WD", RightWriteDACL},
		{"WO", RightWriteOwner}, {"GA", RightGenericAll}, {"GX", RightGenericExecute},
		{"GW", RightGenericWrite}, {"GR", RightGenericRead},
	}
	// Whole-mask names that ParseSDDL accepts but FormatSDDL never writes
	// (file and registry rights; AD does not use them).
	compositeRights = map[string]AccessMask{
		"FA": 0x001F01FF, "FR": 0x00120089, "FW": 0x00120116, "FX": 0x001200A0,
		"KA": 0x000F003F, "KR": 0x00020019, "KW": 0x00020006, "KX": 0x00020019,
	}
	flagLetters = []struct {
		letters string
		flag    ACEFlags
	}{
		{"OI", ACEFlagObjectInherit}, {"CI", ACEFlagContainerInherit},
		{"NP", ACEFlagNoPropagateInherit}, {"IO", ACEFlagInheritOnly},
		{"ID", ACEFlagInherited}, {"SA", ACEFlagSuccessfulAccess}, {"FA", ACEFlagFailedAccess},
	}
	typeLetters = map[ACEType]string{
		ACETypeAccessAllowed: "A", ACETypeAccessDenied: "D", ACETypeSystemAudit: "AU",
		ACETypeAccessAllowedObject: "OA", ACETypeAccessDeniedObject: "OD", ACETypeSystemAuditObject: "OU",
	}
)

const allLetteredRights = RightsFullControl | RightGenericAll | RightGenericExecute | RightGenericWrite | RightGenericRead

// FormatMask writes a mask as SDDL right letters (CCDCLC...), or in hex when
// it has bits without a letter, or is 0.
func FormatMask(m AccessMask) string {
	if m == 0 || m&^allLetteredRights != 0 {
		return fmt.Sprintf("0x%x", uint32(m))
	}
	var sb strings.Builder
	for _, r := range rightLetters {
		if m&r.mask != 0 {
			sb.WriteString(r.letters)
		}
	}
	return sb.String()
}

const allLetteredFlags = ACEFlags(0xFF) &^ 0x20

// FormatACEFlags writes ACE flags as SDDL letters (OICI...), or in hex when a
// bit has no letter.
func FormatACEFlags(f ACEFlags) string {
	if f&^allLetteredFlags != 0 {
		return fmt.Sprintf("0x%x", uint8(f))
	}
	var sb strings.Builder
	for _, l := range flagLetters {
		if f&l.flag != 0 {
			sb.WriteString(l.letters)
		}
	}
	return sb.String()
}

// FormatACE writes one ACE in SDDL, e.g. (A;CI;CCDC...;;;DA).
func FormatACE(ace ACE, a Aliases) string {
	var sb strings.Builder
	writeACE(&sb, ace, a)
	return sb.String()
}

func writeACE(sb *strings.Builder, ace ACE, a Aliases) {
	sb.WriteByte('(')
	if !ace.Type.Modelled() {
		fmt.Fprintf(sb, "0x%02x;%s;;;;#%s)", uint8(ace.Type), FormatACEFlags(ace.Flags), hex.EncodeToString(ace.Opaque))
		return
	}
	sb.WriteString(typeLetters[ace.Type])
	sb.WriteByte(';')
	sb.WriteString(FormatACEFlags(ace.Flags))
	sb.WriteByte(';')
	sb.WriteString(FormatMask(ace.Mask))
	sb.WriteByte(';')
	if ace.ObjectFlags&ObjectTypePresent != 0 {
		sb.WriteString(ace.ObjectType.String())
	}
	sb.WriteByte(';')
	if ace.ObjectFlags&InheritedObjectTypePresent != 0 {
		sb.WriteString(ace.InheritedObjectType.String())
	}
	sb.WriteByte(';')
	sb.WriteString(a.formatSID(ace.SID))
	sb.WriteByte(')')
}

// writeACL writes "D:" or "S:" with its flags and ACEs. A present but NULL
// ACL is NO_ACCESS_CONTROL.
func writeACL(sb *strings.Builder, prefix string, acl *ACL, c, protected, autoInheritReq, autoInherited Control, a Aliases) {
	sb.WriteString(prefix)
	if c&protected != 0 {
		sb.WriteString("P")
	}
	if c&autoInheritReq != 0 {
		sb.WriteString("AR")
	}
	if c&autoInherited != 0 {
		sb.WriteString("AI")
	}
	if acl == nil {
		sb.WriteString("NO_ACCESS_CONTROL")
		return
	}
	for _, ace := range acl.ACEs {
		writeACE(sb, ace, a)
	}
}

// FormatSDDL writes a whole descriptor: O:, G:, D:, S: for the parts it has.
func FormatSDDL(sd *SecurityDescriptor, a Aliases) string {
	if sd == nil {
		return ""
	}
	var sb strings.Builder
	if !sd.Owner.IsZero() {
		sb.WriteString("O:" + a.formatSID(sd.Owner))
	}
	if !sd.Group.IsZero() {
		sb.WriteString("G:" + a.formatSID(sd.Group))
	}
	sb.WriteString(FormatDACL(sd, a))
	if sd.SACL != nil || sd.Control&ControlSACLPresent != 0 {
		writeACL(&sb, "S:", sd.SACL, sd.Control, ControlSACLProtected, ControlSACLAutoInheritReq, ControlSACLAutoInherited, a)
	}
	return sb.String()
}

// FormatDACL writes only the DACL part, e.g. D:P(A;;...;;;SY)(...); it is
// empty when sd has no DACL.
func FormatDACL(sd *SecurityDescriptor, a Aliases) string {
	if sd == nil || sd.DACL == nil && sd.Control&ControlDACLPresent == 0 {
		return ""
	}
	var sb strings.Builder
	writeACL(&sb, "D:", sd.DACL, sd.Control, ControlDACLProtected, ControlDACLAutoInheritReq, ControlDACLAutoInherited, a)
	return sb.String()
}
