package secdesc

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Descriptors captured from a real Samba 4.17 AD DC by
// testdata/samba/capture.py.

type sambaCapture struct {
	name, dn, sdFlags, sambaSDDL string
	raw                          []byte
}

type sambaFixture struct {
	domain, serviceAccount SID
	templateSDDL           string
	captures               []sambaCapture
}

func loadSambaFixture(t testing.TB) sambaFixture {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "samba", "descriptors.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var fx sambaFixture
	var cur *sambaCapture
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("descriptors.txt: bad line %q", line)
		}
		switch key {
		case "domain-sid":
			fx.domain = MustParseSID(value)
		case "service-account-sid":
			fx.serviceAccount = MustParseSID(value)
		case "template-sddl":
			fx.templateSDDL = value
		case "name":
			fx.captures = append(fx.captures, sambaCapture{name: value})
			cur = &fx.captures[len(fx.captures)-1]
		case "dn":
			cur.dn = value
		case "sd-flags":
			cur.sdFlags = value
		case "samba-sddl":
			cur.sambaSDDL = value
		case "base64":
			if cur.raw, err = base64.StdEncoding.DecodeString(value); err != nil {
				t.Fatalf("descriptors.txt %s: %v", cur.name, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if fx.domain.IsZero() || len(fx.captures) == 0 {
		t.Fatal("descriptors.txt: no domain SID or no captures")
	}
	return fx
}

func sambaCaptures(t testing.TB) []sambaCapture { return loadSambaFixture(t).captures }

func (fx sambaFixture) capture(t *testing.T, name string) sambaCapture {
	t.Helper()
	for _, c := range fx.captures {
		if c.name == name {
			return c
		}
	}
	t.Fatalf("no capture %q", name)
	return sambaCapture{}
}

// sddlControl keeps the control bits SDDL can express.
const sddlControl = ControlSelfRelative | ControlDACLPresent | ControlSACLPresent |
	ControlDACLProtected | ControlSACLProtected | ControlDACLAutoInherited | ControlSACLAutoInherited |
	ControlDACLAutoInheritReq | ControlSACLAutoInheritReq

func TestSambaExactRoundTrip(t *testing.T) {
	for _, c := range sambaCaptures(t) {
		t.Run(c.name, func(t *testing.T) {
			sd, err := ParseDescriptor(c.raw)
			if err != nil {
				t.Fatal(err)
			}
			if sd.Layout != (Layout{}) {
				t.Errorf("Samba layout parsed as %v, want the zero (Samba) layout", sd.Layout)
			}
			got, err := sd.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, c.raw) {
				t.Fatalf("MarshalBinary is not byte-exact (%d vs %d bytes)", len(got), len(c.raw))
			}
			// What the SD flags asked for is what came back.
			wantParts := map[string][4]bool{"15": {true, true, true, true}, "7": {true, true, false, true}, "4": {false, false, false, true}}[c.sdFlags]
			gotParts := [4]bool{!sd.Owner.IsZero(), !sd.Group.IsZero(), sd.SACL != nil, sd.DACL != nil}
			if gotParts != wantParts {
				t.Errorf("sd-flags %s: parts (owner, group, SACL, DACL) = %v, want %v", c.sdFlags, gotParts, wantParts)
			}
		})
	}
}

// TestSambaSDDLAgrees parses Samba's own SDDL of each descriptor and checks
// it describes exactly what the binary parser found.
func TestSambaSDDLAgrees(t *testing.T) {
	fx := loadSambaFixture(t)
	// Samba 4.17 resolves EA, SA, RO relative to the domain; in a single-domain
	// forest that is the forest root too.
	aliases := DomainAliases(fx.domain, fx.domain)
	for _, c := range fx.captures {
		t.Run(c.name, func(t *testing.T) {
			bin, err := ParseDescriptor(c.raw)
			if err != nil {
				t.Fatal(err)
			}
			text, err := ParseSDDL(c.sambaSDDL, aliases)
			if err != nil {
				t.Fatal(err)
			}
			want := bin.Clone()
			want.Control &= sddlControl
			if !text.Equal(want) {
				t.Errorf("Samba's SDDL and the binary disagree:\nSDDL:   %s\nbinary: %s", FormatSDDL(text, aliases), FormatSDDL(want, aliases))
			}
		})
	}
}

// TestSambaFormatParse checks Parse(Format(x)) == x on real descriptors,
// with aliases and with full SIDs, up to what SDDL cannot say.
func TestSambaFormatParse(t *testing.T) {
	fx := loadSambaFixture(t)
	for _, c := range fx.captures {
		t.Run(c.name, func(t *testing.T) {
			sd, err := ParseDescriptor(c.raw)
			if err != nil {
				t.Fatal(err)
			}
			want := sd.Clone()
			want.Control &= sddlControl
			for _, a := range []Aliases{DomainAliases(fx.domain, fx.domain), WellKnownAliases, PlainSIDs} {
				text := FormatSDDL(sd, a)
				back, err := ParseSDDL(text, a)
				if err != nil {
					t.Fatalf("ParseSDDL(FormatSDDL(x)): %v\n%s", err, text)
				}
				if !back.Equal(want) {
					t.Errorf("Parse(Format(x)) != x for aliases %+v", a)
				}
			}
		})
	}
}

// TestSambaSDDLDifferences pins down how our SDDL differs from Samba's for
// the same descriptor: only in the order of the right letters (we write them
// in ascending bit order, CCDCLC...; Samba writes RPWPCRCC...).
func TestSambaSDDLDifferences(t *testing.T) {
	fx := loadSambaFixture(t)
	aliases := DomainAliases(fx.domain, fx.domain)
	sawDifference := false
	for _, c := range fx.captures {
		sd, err := ParseDescriptor(c.raw)
		if err != nil {
			t.Fatal(err)
		}
		ours := FormatSDDL(sd, aliases)
		if ours != c.sambaSDDL {
			sawDifference = true
		}
		if a, b := canonicalRights(ours), canonicalRights(c.sambaSDDL); a != b {
			t.Errorf("%s: SDDL differs beyond right-letter order:\nours:  %s\nsamba: %s", c.name, a, b)
		}
	}
	if !sawDifference {
		t.Error("expected Samba's right-letter order to differ from ours somewhere")
	}
}

// canonicalRights sorts the two-letter tokens of every ACE's rights field.
func canonicalRights(sddl string) string {
	var out strings.Builder
	for i := 0; i < len(sddl); {
		if sddl[i] != '(' {
			out.WriteByte(sddl[i])
			i++
			continue
		}
		end := strings.IndexByte(sddl[i:], ')')
		fields := strings.Split(sddl[i+1:i+end], ";")
		if len(fields) > 2 && !strings.HasPrefix(fields[2], "0x") {
			var toks []string
			for j := 0; j+2 <= len(fields[2]); j += 2 {
				toks = append(toks, fields[2][j:j+2])
			}
			slices.Sort(toks)
			fields[2] = strings.Join(toks, "")
		}
		out.WriteString("(" + strings.Join(fields, ";") + ")")
		i += end + 1
	}
	return out.String()
}

// TestSambaStoresTemplateUnchanged: the DKM template, written to a new
// container (add) and to an existing one (modify with SD flags 4), was stored
// by Samba byte for byte as we marshal it, and diffs clean.
func TestSambaStoresTemplateUnchanged(t *testing.T) {
	fx := loadSambaFixture(t)
	tmpl, err := DKMTemplate(fx.domain, fx.domain, []SID{fx.serviceAccount})
	if err != nil {
		t.Fatal(err)
	}
	if got := FormatDACL(tmpl, PlainSIDs); got != fx.templateSDDL {
		t.Errorf("our template differs from the one capture.py wrote:\nours:    %s\ncaptured: %s", got, fx.templateSDDL)
	}
	ours, err := tmpl.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dkm-template-add/dacl", "dkm-template-modify/dacl", "dkm-template-add/all"} {
		t.Run(name, func(t *testing.T) {
			c := fx.capture(t, name)
			stored, err := ParseDescriptor(c.raw)
			if err != nil {
				t.Fatal(err)
			}
			if d := DiffDACL(stored, tmpl, DomainAliases(fx.domain, fx.domain)); !d.Empty() {
				t.Errorf("drift against the stored template: %s", d)
			}
			if !stored.DACL.Equal(tmpl.DACL) {
				t.Errorf("stored DACL is not byte-identical to the template's")
			}
			if c.sdFlags == "4" && !bytes.Equal(c.raw, ours) {
				t.Errorf("DACL-only read differs from our marshalled template:\nstored %x\nours   %x", c.raw, ours)
			}
		})
	}
}

// TestSambaChildrenGetClassDefaults records why ChildDescriptor exists:
// objects created under the template without a descriptor carry explicit
// ACEs from their class's defaultSecurityDescriptor, Authenticated Users
// included, next to the ACEs inherited from the template.
func TestSambaChildrenGetClassDefaults(t *testing.T) {
	fx := loadSambaFixture(t)
	tmpl, err := DKMTemplate(fx.domain, fx.domain, []SID{fx.serviceAccount})
	if err != nil {
		t.Fatal(err)
	}
	var inheritable int
	for _, a := range tmpl.DACL.ACEs {
		if a.Flags&ACEFlagContainerInherit != 0 {
			inheritable++
		}
	}
	for _, name := range []string{"dkm-manager/dacl", "dkm-cryptopolicy/dacl"} {
		sd, err := ParseDescriptor(fx.capture(t, name).raw)
		if err != nil {
			t.Fatal(err)
		}
		var inherited int
		hasAU := false
		for _, a := range sd.DACL.ACEs {
			if a.IsInherited() {
				inherited++
			} else if a.SID == SIDAuthenticatedUsers {
				hasAU = true
			}
		}
		if inherited != inheritable || !hasAU {
			t.Errorf("%s: %d inherited ACEs (want %d), explicit Authenticated Users ACE: %v", name, inherited, inheritable, hasAU)
		}
	}
}
