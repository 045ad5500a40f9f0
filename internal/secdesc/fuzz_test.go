package secdesc

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Fuzz targets for every parser of untrusted input. Seed corpora live in
// testdata/fuzz/<target>/ (regenerate them with
// SECDESC_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds).
// Run one with e.g. go test -run '^$' -fuzz '^FuzzParseDescriptor$' -fuzztime 30s.

// fuzzAliases resolves domain aliases against the domain of the Samba
// captures, so their SDDL seeds parse.
var fuzzAliases = DomainAliases(
	MustParseSID("S-1-5-21-896245435-3128150671-3582945228"),
	MustParseSID("S-1-5-21-896245435-3128150671-3582945228"))

func FuzzParseDescriptor(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		sd, err := ParseDescriptor(b)
		if err != nil {
			return
		}
		out, err := sd.MarshalBinary()
		if err != nil {
			t.Fatalf("a parsed descriptor does not marshal: %v", err)
		}
		again, err := ParseDescriptor(out)
		if err != nil {
			t.Fatalf("re-parse of the marshalled descriptor: %v", err)
		}
		if !again.Equal(sd) {
			t.Fatalf("parse(marshal(parse(x))) != parse(x)")
		}
		if out2, err := again.MarshalBinary(); err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("marshal is not a fixed point: %v", err)
		}
		// Every parsed descriptor prints as SDDL that parses back to what
		// SDDL can express of it.
		want := sddlNormal(sd)
		for _, a := range []Aliases{PlainSIDs, fuzzAliases} {
			text := FormatSDDL(sd, a)
			back, err := ParseSDDL(text, a)
			if err != nil {
				t.Fatalf("ParseSDDL(FormatSDDL(x)) failed: %v\n%s", err, text)
			}
			if !back.Equal(want) {
				t.Fatalf("ParseSDDL(FormatSDDL(x)) != x\n got %s\nwant %s", back, want)
			}
		}
	})
}

// sddlNormal is what SDDL can say about sd: no layout, padding, reserved
// fields or DEFAULTED/TRUSTED control bits; ACL revision 4; present flags
// that follow the ACLs written.
func sddlNormal(sd *SecurityDescriptor) *SecurityDescriptor {
	n := sd.Clone()
	n.Sbz1, n.Layout = 0, Layout{}
	n.Control &= sddlControl
	for _, p := range []struct {
		acl                   *ACL
		present, protectFlags Control
	}{
		{n.DACL, ControlDACLPresent, ControlDACLProtected | ControlDACLAutoInherited | ControlDACLAutoInheritReq},
		{n.SACL, ControlSACLPresent, ControlSACLProtected | ControlSACLAutoInherited | ControlSACLAutoInheritReq},
	} {
		if p.acl != nil {
			n.Control |= p.present
			p.acl.Revision, p.acl.sbz1, p.acl.sbz2, p.acl.trailer = ACLRevisionDS, 0, 0, nil
			for i := range p.acl.ACEs {
				p.acl.ACEs[i].trailer = nil
				p.acl.ACEs[i].ObjectFlags &= ObjectTypePresent | InheritedObjectTypePresent
			}
		}
		if n.Control&p.present == 0 {
			n.Control &^= p.protectFlags
		}
	}
	return n
}

func FuzzSIDFromBytes(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := SIDFromBytes(b)
		if err != nil {
			return
		}
		if !bytes.Equal(s.Bytes(), b) {
			t.Fatalf("Bytes() = %x, want the input %x", s.Bytes(), b)
		}
		back, err := ParseSID(s.String())
		if err != nil || back != s {
			t.Fatalf("ParseSID(String()) = %v, %v; want %v", back, err, s)
		}
	})
}

func FuzzParseSID(f *testing.F) {
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseSID(text)
		if err != nil {
			return
		}
		back, err := ParseSID(s.String())
		if err != nil || back != s {
			t.Fatalf("ParseSID(String()) = %v, %v; want %v", back, err, s)
		}
		bin, err := SIDFromBytes(s.Bytes())
		if err != nil || bin != s {
			t.Fatalf("SIDFromBytes(Bytes()) = %v, %v; want %v", bin, err, s)
		}
	})
}

func FuzzParseSDDL(f *testing.F) {
	f.Fuzz(func(t *testing.T, text string) {
		sd, err := ParseSDDL(text, fuzzAliases)
		if err != nil {
			return
		}
		for _, a := range []Aliases{fuzzAliases, PlainSIDs, WellKnownAliases} {
			formatted := FormatSDDL(sd, a)
			back, err := ParseSDDL(formatted, a)
			if err != nil {
				t.Fatalf("ParseSDDL(FormatSDDL(x)): %v\n%s", err, formatted)
			}
			if !back.Equal(sd) {
				t.Fatalf("Parse(Format(x)) != x\n got %s\nwant %s", back, sd)
			}
			if again := FormatSDDL(back, a); again != formatted {
				t.Fatalf("FormatSDDL is not a fixed point:\n%s\n%s", formatted, again)
			}
		}
		// What SDDL describes also survives the binary form, if it fits.
		raw, err := sd.MarshalBinary()
		if err != nil {
			return // e.g. an ACL above 64 KiB
		}
		bin, err := ParseDescriptor(raw)
		if err != nil || !bin.Equal(sd) {
			t.Fatalf("binary round trip of parsed SDDL = %v, %v", bin, err)
		}
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz from the Samba captures and
// the test vectors; it runs only when asked.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("SECDESC_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set SECDESC_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz")
	}
	write := func(target, name, literal string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "go test fuzz v1\n" + literal + "\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bytesLit := func(b []byte) string { return fmt.Sprintf("[]byte(%q)", b) }
	stringLit := func(s string) string { return fmt.Sprintf("string(%q)", s) }
	seedName := func(s string) string { return "seed-" + strings.NewReplacer("/", "-", " ", "-").Replace(s) }

	fx := loadSambaFixture(t)
	tmpl, err := DKMTemplate(fx.domain, fx.domain, []SID{fx.serviceAccount})
	if err != nil {
		t.Fatal(err)
	}
	tmplRaw, _ := tmpl.MarshalBinary()
	childRaw, _ := ChildDescriptor().MarshalBinary()
	descriptors := map[string][]byte{
		"msdtyp-example": unhex(t, msdtypExample),
		"dkm-template":   tmplRaw,
		"child":          childRaw,
		"truncated":      unhex(t, msdtypExample)[:60],
	}
	sddls := map[string]string{
		"dkm-template-plain":   FormatSDDL(tmpl, PlainSIDs),
		"dkm-template-aliases": FormatSDDL(tmpl, fuzzAliases),
		"opaque-and-hex":       "O:SYS:PARAI(0x11;0x20;;;;#0100000001010000)(AU;SAFA;0x1f01ff;;;WD)D:PNO_ACCESS_CONTROL",
		"windows-style":        "O:BAG:BAD:P(A;CIOI;GRGX;;;BU)(A;CIOI;GA;;;BA)(A;CIOI;GA;;;SY)(A;CIOI;GA;;;CO)S:P(AU;FA;GR;;;WD)",
	}
	for _, c := range fx.captures {
		descriptors[c.name] = c.raw
		sddls[c.name] = c.sambaSDDL
	}
	for name, b := range descriptors {
		write("FuzzParseDescriptor", seedName(name), bytesLit(b))
	}
	for name, s := range sddls {
		write("FuzzParseSDDL", seedName(name), stringLit(s))
	}
	sids := []string{"S-1-5-18", "S-1-5-32-544", "S-1-1-0", "S-1-5", "S-1-0x010000000000-7",
		fx.domain.String(), fx.serviceAccount.String(), "S-1-5-1-2-3-4-5-6-7-8-9-10-11-12-13-14-15"}
	for i, s := range sids {
		write("FuzzParseSID", fmt.Sprintf("seed-%d", i), stringLit(s))
		write("FuzzSIDFromBytes", fmt.Sprintf("seed-%d", i), bytesLit(MustParseSID(s).Bytes()))
	}
	write("FuzzParseSID", "seed-bad-hex", stringLit("S-1-0xZZ-1"))
	write("FuzzSIDFromBytes", "seed-bad-count", bytesLit([]byte{1, 16, 0, 0, 0, 0, 0, 5}))
}
