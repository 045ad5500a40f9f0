package secdesc

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLiveSamba writes the template to a real Samba AD DC database and reads
// it back. It provisions a throwaway domain (about 10-15 s), so it runs only
// with SECDESC_SAMBA=1 and samba installed (Debian package samba, as root):
//
//	SECDESC_SAMBA=1 go test -run TestLiveSamba -v ./internal/secdesc/
//
// No samba server is started: testdata/samba/ldbshell.py opens sam.ldb
// directly, so writes pass through the same dsdb modules as LDAP writes.
func TestLiveSamba(t *testing.T) {
	if os.Getenv("SECDESC_SAMBA") == "" {
		t.Skip("set SECDESC_SAMBA=1 to run against a throwaway Samba AD DC database")
	}
	for _, tool := range []string{"samba-tool", "/usr/bin/python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	provision := exec.CommandContext(ctx, "samba-tool", "domain", "provision",
		"--realm=DEMO.LOCAL", "--domain=DEMO", "--server-role=dc", "--dns-backend=NONE",
		"--use-rfc2307", "--adminpass=Passw0rd!Admin", "--targetdir="+dir,
		"--option=interfaces=lo", "--option=bind interfaces only=yes")
	if out, err := provision.CombinedOutput(); err != nil {
		t.Fatalf("provision: %v\n%s", err, out)
	}
	sh := startLDBShell(ctx, t, dir)

	domain := MustParseSID(sh.do(t, "domain"))
	svc := MustParseSID(sh.do(t, "adduser", "svc-dkm"))
	tmpl, err := DKMTemplate(domain, domain, []SID{svc})
	if err != nil {
		t.Fatal(err)
	}
	aliases := DomainAliases(domain, domain)
	want, err := tmpl.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(sd *SecurityDescriptor) string {
		b, err := sd.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(b)
	}
	read := func(dn string) *SecurityDescriptor {
		raw, err := base64.StdEncoding.DecodeString(sh.do(t, "read", dn))
		if err != nil {
			t.Fatal(err)
		}
		sd, err := ParseDescriptor(raw)
		if err != nil {
			t.Fatalf("%s: %v", dn, err)
		}
		if out, _ := sd.MarshalBinary(); string(out) != string(raw) {
			t.Errorf("%s: re-marshal is not byte-exact", dn)
		}
		return sd
	}

	const dkm = "CN=VMMDKM,CN=System,BASE"
	sh.do(t, "add", dkm, "container", b64(tmpl))
	const existing = "CN=VMMDKM-existing,CN=System,BASE"
	sh.do(t, "add", existing, "container", "-")
	sh.do(t, "modify", existing, b64(tmpl))
	for _, dn := range []string{dkm, existing} {
		stored := read(dn)
		if d := DiffDACL(stored, tmpl, aliases); !d.Empty() {
			t.Errorf("%s: drift right after writing the template: %s", dn, d)
		}
		if raw, _ := stored.MarshalBinary(); string(raw) != string(want) {
			t.Errorf("%s: Samba stored\n%s\nwe wrote\n%s", dn, FormatSDDL(stored, aliases), FormatSDDL(tmpl, aliases))
		}
	}

	// Children created with ChildDescriptor carry only inherited ACEs.
	const manager = "CN=DC Manager 5c6f0b2e-4a33-4a8e-9a57-0e0b8e0f4d21," + dkm
	sh.do(t, "add", manager, "container", b64(ChildDescriptor()))
	sh.do(t, "add", "CN=CryptoPolicy,"+manager, "contact", b64(ChildDescriptor()))
	for _, dn := range []string{manager, "CN=CryptoPolicy," + manager} {
		sd := read(dn)
		if explicit := explicitACEs(sd); len(explicit) != 0 {
			t.Errorf("%s: explicit ACEs despite ChildDescriptor: %s", dn, FormatDACL(sd, aliases))
		}
		for _, a := range sd.DACL.ACEs {
			if a.SID == SIDAuthenticatedUsers || a.SID == SIDEveryone {
				t.Errorf("%s: %s can reach a key object", dn, FormatACE(a, aliases))
			}
		}
		t.Logf("%s: %s", dn, FormatDACL(sd, aliases))
	}

	// Drift, detection and repair.
	drifted := tmpl.Clone()
	drifted.Control &^= ControlDACLProtected
	drifted.DACL.ACEs = append(drifted.DACL.ACEs[1:], NewACE(ACETypeAccessAllowed, 0, RightReadProperty|RightListChildren|RightListObject|RightReadControl, SIDAuthenticatedUsers))
	sh.do(t, "modify", dkm, b64(drifted))
	d := DiffDACL(read(dkm), tmpl, aliases)
	t.Logf("drift seen: %s", d)
	if len(d.Missing) != 1 || len(d.Unexpected) != 1 || !d.WantProtected || d.GotProtected {
		t.Errorf("drift = %s; want SYSTEM missing, Authenticated Users unexpected, DACL unprotected", d)
	}
	sh.do(t, "modify", dkm, b64(RepairDescriptor(tmpl)))
	if d := DiffDACL(read(dkm), tmpl, aliases); !d.Empty() {
		t.Errorf("drift after repair: %s", d)
	}

	// How Samba normalises what it is given: generic rights on a CI ACE are
	// split into an inherit-only generic ACE and a mapped specific one, which
	// is why the template never uses generic rights.
	domainAdmins, _ := DomainRelativeSID(domain, RIDDomainAdmins)
	generic := &SecurityDescriptor{Control: ControlDACLPresent | ControlDACLProtected, DACL: NewACL(
		NewACE(ACETypeAccessAllowed, ACEFlagContainerInherit, RightGenericAll, domainAdmins))}
	sh.do(t, "add", "CN=generic,CN=System,BASE", "container", b64(generic))
	stored := read("CN=generic,CN=System,BASE")
	t.Logf("wrote %s, Samba stored %s", FormatDACL(generic, aliases), FormatDACL(stored, aliases))
	if DiffDACL(stored, generic, aliases).Empty() {
		t.Errorf("expected Samba to rewrite generic rights, stored %s", FormatDACL(stored, aliases))
	}
}

type ldbShell struct {
	in  io.Writer
	out *bufio.Scanner
}

func startLDBShell(ctx context.Context, t *testing.T, dir string) *ldbShell {
	t.Helper()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", filepath.Join("testdata", "samba", "ldbshell.py"), dir)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	return &ldbShell{in: in, out: sc}
}

// do runs one command and returns its payload, failing the test on "err".
func (s *ldbShell) do(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := fmt.Fprintln(s.in, strings.Join(args, "\t")); err != nil {
		t.Fatal(err)
	}
	if !s.out.Scan() {
		t.Fatalf("ldbshell %s: no answer (%v)", args[0], s.out.Err())
	}
	answer := s.out.Text()
	if rest, ok := strings.CutPrefix(answer, "ok"); ok {
		return strings.TrimPrefix(rest, " ")
	}
	t.Fatalf("ldbshell %s %s: %s", args[0], args[1:], answer)
	return ""
}
