package secdesc

import (
	"slices"
	"testing"
)

func TestDiffDACL(t *testing.T) {
	aliases := DomainAliases(testDomain, testDomain)
	svc := MustParseSID("S-1-5-21-1-2-3-1105")
	desired, err := DKMTemplate(testDomain, testDomain, []SID{svc})
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(sd *SecurityDescriptor)) *SecurityDescriptor {
		sd := desired.Clone()
		f(sd)
		return sd
	}
	au := NewACE(ACETypeAccessAllowed, 0, RightReadProperty|RightListChildren|RightListObject|RightReadControl, SIDAuthenticatedUsers)
	last := len(desired.DACL.ACEs) - 1
	tests := []struct {
		name           string
		actual         *SecurityDescriptor
		wantMissing    []string
		wantUnexpected []string
		wantProtected  bool // GotProtected
		wantString     string
	}{
		{
			name: "identical", actual: desired.Clone(), wantProtected: true, wantString: "no drift",
		},
		{
			name: "reordered and auto-inherited flag set", wantProtected: true, wantString: "no drift",
			actual: mutate(func(sd *SecurityDescriptor) {
				slices.Reverse(sd.DACL.ACEs)
				sd.Control |= ControlDACLAutoInherited
			}),
		},
		{
			name: "inherited ACEs are ignored", wantProtected: true, wantString: "no drift",
			actual: mutate(func(sd *SecurityDescriptor) {
				inh := au
				inh.Flags |= ACEFlagInherited
				sd.DACL.ACEs = append(sd.DACL.ACEs, inh)
			}),
		},
		{
			name: "Authenticated Users added", wantProtected: true,
			actual:         mutate(func(sd *SecurityDescriptor) { sd.DACL.ACEs = append(sd.DACL.ACEs, au) }),
			wantUnexpected: []string{"(A;;LCRPLORC;;;AU)"},
			wantString:     "unexpected (A;;LCRPLORC;;;AU)",
		},
		{
			name: "service account removed", wantProtected: true,
			actual:      mutate(func(sd *SecurityDescriptor) { sd.DACL.ACEs = sd.DACL.ACEs[:last] }),
			wantMissing: []string{"(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;S-1-5-21-1-2-3-1105)"},
			wantString:  "missing (A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;S-1-5-21-1-2-3-1105)",
		},
		{
			name: "service account present only as inherited", wantProtected: true,
			actual:      mutate(func(sd *SecurityDescriptor) { sd.DACL.ACEs[last].Flags |= ACEFlagInherited }),
			wantMissing: []string{"(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;S-1-5-21-1-2-3-1105)"},
			wantString:  "missing (A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;S-1-5-21-1-2-3-1105)",
		},
		{
			name: "rights changed: one missing, one unexpected", wantProtected: true,
			actual:         mutate(func(sd *SecurityDescriptor) { sd.DACL.ACEs[0].Mask = RightReadProperty }),
			wantMissing:    []string{"(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;SY)"},
			wantUnexpected: []string{"(A;;RP;;;SY)"},
			wantString:     "missing (A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;SY); unexpected (A;;RP;;;SY)",
		},
		{
			name: "object type differs", wantProtected: true,
			actual: mutate(func(sd *SecurityDescriptor) { sd.DACL.ACEs[1].InheritedObjectType = GUIDClassComputer }),
			wantMissing: []string{
				"(OA;CIIO;RP;b7c69e6d-2cc7-11d2-854e-00a0c983f608;bf967aba-0de6-11d0-a285-00aa003049e2;ED)",
			},
			wantUnexpected: []string{
				"(OA;CIIO;RP;b7c69e6d-2cc7-11d2-854e-00a0c983f608;bf967a86-0de6-11d0-a285-00aa003049e2;ED)",
			},
			wantString: "missing (OA;CIIO;RP;b7c69e6d-2cc7-11d2-854e-00a0c983f608;bf967aba-0de6-11d0-a285-00aa003049e2;ED); unexpected (OA;CIIO;RP;b7c69e6d-2cc7-11d2-854e-00a0c983f608;bf967a86-0de6-11d0-a285-00aa003049e2;ED)",
		},
		{
			name: "duplicate ACE counts as unexpected", wantProtected: true,
			actual:         mutate(func(sd *SecurityDescriptor) { sd.DACL.ACEs = append(sd.DACL.ACEs, sd.DACL.ACEs[last]) }),
			wantUnexpected: []string{"(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;S-1-5-21-1-2-3-1105)"},
			wantString:     "unexpected (A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;S-1-5-21-1-2-3-1105)",
		},
		{
			name:       "not protected",
			actual:     mutate(func(sd *SecurityDescriptor) { sd.Control &^= ControlDACLProtected }),
			wantString: "DACL is not protected from inheritance",
		},
		{
			name:   "nil descriptor",
			actual: nil,
			wantMissing: func() []string {
				var s []string
				for _, a := range desired.DACL.ACEs {
					s = append(s, FormatACE(a, aliases))
				}
				return s
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DiffDACL(tt.actual, desired, aliases)
			if got := sddlOf(d.Missing); !slices.Equal(got, tt.wantMissing) {
				t.Errorf("Missing = %q, want %q", got, tt.wantMissing)
			}
			if got := sddlOf(d.Unexpected); !slices.Equal(got, tt.wantUnexpected) {
				t.Errorf("Unexpected = %q, want %q", got, tt.wantUnexpected)
			}
			if !d.WantProtected || d.GotProtected != tt.wantProtected {
				t.Errorf("protected want/got = %v/%v, want true/%v", d.WantProtected, d.GotProtected, tt.wantProtected)
			}
			empty := len(tt.wantMissing) == 0 && len(tt.wantUnexpected) == 0 && tt.wantProtected
			if d.Empty() != empty {
				t.Errorf("Empty() = %v, want %v", d.Empty(), empty)
			}
			if tt.wantString != "" && d.String() != tt.wantString {
				t.Errorf("String() = %q\nwant       %q", d.String(), tt.wantString)
			}
			for _, e := range append(d.Missing, d.Unexpected...) {
				if FormatACE(e.ACE, aliases) != e.SDDL {
					t.Errorf("entry SDDL %q does not match its ACE", e.SDDL)
				}
			}
		})
	}
}

func sddlOf(entries []DiffEntry) []string {
	var s []string
	for _, e := range entries {
		s = append(s, e.SDDL)
	}
	return s
}

func TestDiffUnprotectedWanted(t *testing.T) {
	want := &SecurityDescriptor{Control: ControlDACLPresent, DACL: NewACL()}
	got := &SecurityDescriptor{Control: ControlDACLPresent | ControlDACLProtected, DACL: NewACL()}
	d := DiffDACL(got, want, WellKnownAliases)
	if d.Empty() || d.String() != "DACL is protected from inheritance" {
		t.Errorf("Diff = %q, Empty = %v", d, d.Empty())
	}
}

func TestRepairDescriptor(t *testing.T) {
	desired, err := DKMTemplate(testDomain, testDomain, []SID{MustParseSID("S-1-5-21-1-2-3-1105")})
	if err != nil {
		t.Fatal(err)
	}
	// A desired descriptor carrying more than a DACL: repair writes the DACL only.
	withExtras := desired.Clone()
	withExtras.Owner = SIDBuiltinAdministrators
	withExtras.SACL = NewACL()
	withExtras.Control |= ControlSACLPresent | ControlOwnerDefaulted
	inh := NewACE(ACETypeAccessAllowed, ACEFlagInherited, RightReadProperty, SIDAuthenticatedUsers)
	withExtras.DACL.ACEs = append(withExtras.DACL.ACEs, inh)

	for _, in := range []*SecurityDescriptor{desired, withExtras} {
		r := RepairDescriptor(in)
		if !r.Equal(desired) {
			t.Errorf("RepairDescriptor = %s\nwant %s", r, desired)
		}
		if d := DiffDACL(r, desired, WellKnownAliases); !d.Empty() {
			t.Errorf("repair leaves drift: %s", d)
		}
		r.DACL.ACEs[0].Mask = 0 // must not share memory with the input
		if in.DACL.ACEs[0].Mask != RightsFullControl {
			t.Error("RepairDescriptor shares its DACL with the input")
		}
	}
	if r := RepairDescriptor(nil); r.DACL == nil || len(r.DACL.ACEs) != 0 || r.Control != ControlSelfRelative|ControlDACLPresent {
		t.Errorf("RepairDescriptor(nil) = %+v", r)
	}
}
