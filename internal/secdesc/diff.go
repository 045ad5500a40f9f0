package secdesc

import (
	"strings"
)

// DiffEntry is one ACE that is missing or unexpected, with its SDDL.
type DiffEntry struct {
	ACE  ACE
	SDDL string
}

// Diff is the drift of an actual DACL from a desired one.
type Diff struct {
	// Missing ACEs are desired but not present explicitly.
	Missing []DiffEntry
	// Unexpected ACEs are present explicitly but not desired.
	Unexpected []DiffEntry
	// WantProtected and GotProtected are the DACL protection flags; they
	// differ when AD would let inherited ACEs in (or the template does not
	// block them).
	WantProtected, GotProtected bool
}

// Empty reports whether there is no drift at all.
func (d Diff) Empty() bool {
	return len(d.Missing) == 0 && len(d.Unexpected) == 0 && d.WantProtected == d.GotProtected
}

// String summarises the drift in one line for events, logs and status, e.g.
// "missing (A;CI;...;;;S-1-5-21-...-1105); unexpected (A;;RPLCLORC;;;AU)".
func (d Diff) String() string {
	if d.Empty() {
		return "no drift"
	}
	var parts []string
	if len(d.Missing) > 0 {
		parts = append(parts, "missing "+joinSDDL(d.Missing))
	}
	if len(d.Unexpected) > 0 {
		parts = append(parts, "unexpected "+joinSDDL(d.Unexpected))
	}
	if d.WantProtected != d.GotProtected {
		if d.WantProtected {
			parts = append(parts, "DACL is not protected from inheritance")
		} else {
			parts = append(parts, "DACL is protected from inheritance")
		}
	}
	return strings.Join(parts, "; ")
}

func joinSDDL(entries []DiffEntry) string {
	var sb strings.Builder
	for _, e := range entries {
		sb.WriteString(e.SDDL)
	}
	return sb.String()
}

// aceKey is what makes two explicit ACEs the same for drift purposes: the
// INHERITED flag and binary padding do not count.
type aceKey struct {
	typ                 ACEType
	flags               ACEFlags
	mask                AccessMask
	sid                 SID
	objectFlags         ObjectFlags
	objectType          GUID
	inheritedObjectType GUID
	opaque              string
}

func keyOf(a ACE) aceKey {
	return aceKey{
		typ: a.Type, flags: a.Flags &^ ACEFlagInherited, mask: a.Mask, sid: a.SID,
		objectFlags: a.ObjectFlags, objectType: a.ObjectType, inheritedObjectType: a.InheritedObjectType,
		opaque: string(a.Opaque),
	}
}

// DiffDACL compares the explicit ACEs of actual's DACL with desired's, as
// multisets: order does not matter, inherited ACEs (flag ID) are ignored on
// both sides, and an ACE present twice where desired once is reported as
// unexpected. A nil descriptor or DACL counts as an empty, unprotected DACL.
// Entries are listed in the order they appear in their DACL; a is used to
// render them.
func DiffDACL(actual, desired *SecurityDescriptor, a Aliases) Diff {
	d := Diff{WantProtected: desired.IsDACLProtected(), GotProtected: actual.IsDACLProtected()}
	want := map[aceKey]int{}
	for _, ace := range explicitACEs(desired) {
		want[keyOf(ace)]++
	}
	for _, ace := range explicitACEs(actual) {
		k := keyOf(ace)
		if want[k] > 0 {
			want[k]--
			continue
		}
		d.Unexpected = append(d.Unexpected, DiffEntry{ACE: ace.Clone(), SDDL: FormatACE(ace, a)})
	}
	for _, ace := range explicitACEs(desired) {
		k := keyOf(ace)
		if want[k] > 0 {
			want[k]--
			d.Missing = append(d.Missing, DiffEntry{ACE: ace.Clone(), SDDL: FormatACE(ace, a)})
		}
	}
	return d
}

func explicitACEs(sd *SecurityDescriptor) []ACE {
	if sd == nil || sd.DACL == nil {
		return nil
	}
	var aces []ACE
	for _, ace := range sd.DACL.ACEs {
		if !ace.IsInherited() {
			aces = append(aces, ace)
		}
	}
	return aces
}

// RepairDescriptor returns the DACL-only descriptor that replaces a drifted
// DACL with the desired one; write it with the SD flags control set to 0x4 so
// the owner, group and SACL stay untouched. AD recomputes the inherited ACEs
// (none, when the DACL is protected).
func RepairDescriptor(desired *SecurityDescriptor) *SecurityDescriptor {
	if desired == nil {
		desired = &SecurityDescriptor{}
	}
	dacl := desired.DACL.Clone()
	if dacl == nil {
		dacl = NewACL()
	}
	// Inherited ACEs are the DC's to compute; only explicit ones are written.
	aces := dacl.ACEs[:0]
	for _, ace := range dacl.ACEs {
		if !ace.IsInherited() {
			aces = append(aces, ace)
		}
	}
	dacl.ACEs = aces
	keep := ControlDACLProtected | ControlDACLAutoInheritReq | ControlDACLAutoInherited
	return &SecurityDescriptor{
		Control: ControlSelfRelative | ControlDACLPresent | desired.Control&keep,
		DACL:    dacl,
	}
}
