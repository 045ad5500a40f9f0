package secdesc

// AccessMask is an ACE's access mask ([MS-DTYP] 2.4.3) with the Active
// Directory meaning of its object-specific bits ([MS-ADTS] 5.1.3.2).
type AccessMask uint32

// Access rights, with their SDDL letters.
const (
	RightCreateChild          AccessMask = 0x00000001 // CC: ADS_RIGHT_DS_CREATE_CHILD
	RightDeleteChild          AccessMask = 0x00000002 // DC: ADS_RIGHT_DS_DELETE_CHILD
	RightListChildren         AccessMask = 0x00000004 // LC: ADS_RIGHT_ACTRL_DS_LIST
	RightSelfWrite            AccessMask = 0x00000008 // SW: ADS_RIGHT_DS_SELF (validated write)
	RightReadProperty         AccessMask = 0x00000010 // RP: ADS_RIGHT_DS_READ_PROP
	RightWriteProperty        AccessMask = 0x00000020 // WP: ADS_RIGHT_DS_WRITE_PROP
	RightDeleteTree           AccessMask = 0x00000040 // DT: ADS_RIGHT_DS_DELETE_TREE
	RightListObject           AccessMask = 0x00000080 // LO: ADS_RIGHT_DS_LIST_OBJECT
	RightControlAccess        AccessMask = 0x00000100 // CR: ADS_RIGHT_DS_CONTROL_ACCESS (extended rights)
	RightDelete               AccessMask = 0x00010000 // SD: DELETE
	RightReadControl          AccessMask = 0x00020000 // RC: READ_CONTROL
	RightWriteDACL            AccessMask = 0x00040000 // WD: WRITE_DAC
	RightWriteOwner           AccessMask = 0x00080000 // WO: WRITE_OWNER
	RightSynchronize          AccessMask = 0x00100000 // SYNCHRONIZE (no SDDL letter)
	RightAccessSystemSecurity AccessMask = 0x01000000 // ACCESS_SYSTEM_SECURITY (no SDDL letter)
	RightMaximumAllowed       AccessMask = 0x02000000 // MAXIMUM_ALLOWED (no SDDL letter)
	RightGenericAll           AccessMask = 0x10000000 // GA
	RightGenericExecute       AccessMask = 0x20000000 // GX
	RightGenericWrite         AccessMask = 0x40000000 // GW
	RightGenericRead          AccessMask = 0x80000000 // GR

	// RightsFullControl is what AD grants for "Full Control": every
	// directory-specific right plus the four standard rights
	// (CCDCLCSWRPWPDTLOCRSDRCWDWO). AD maps GENERIC_ALL to exactly this.
	RightsFullControl AccessMask = 0x000F01FF
)

// Has reports whether every right in want is granted by m.
func (m AccessMask) Has(want AccessMask) bool { return m&want == want }

// String is the SDDL rights string (see FormatMask).
func (m AccessMask) String() string { return FormatMask(m) }

// ACEFlags are the inheritance and audit flags of an ACE ([MS-DTYP] 2.4.4.1).
type ACEFlags uint8

// ACE flags, with their SDDL letters.
const (
	ACEFlagObjectInherit      ACEFlags = 0x01 // OI
	ACEFlagContainerInherit   ACEFlags = 0x02 // CI
	ACEFlagNoPropagateInherit ACEFlags = 0x04 // NP
	ACEFlagInheritOnly        ACEFlags = 0x08 // IO
	ACEFlagInherited          ACEFlags = 0x10 // ID: the ACE came from a parent
	ACEFlagSuccessfulAccess   ACEFlags = 0x40 // SA: audit successes (SACL only)
	ACEFlagFailedAccess       ACEFlags = 0x80 // FA: audit failures (SACL only)
)

// String is the SDDL flags string (see FormatACEFlags).
func (f ACEFlags) String() string { return FormatACEFlags(f) }
