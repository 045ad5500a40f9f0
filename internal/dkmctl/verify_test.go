package dkmctl

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

// dkmctl verify against a real DC, with the DKMContainer from a file and the bind identity from
// flags (no cluster): a clean container passes (exit 0); a reader added through nested group
// membership by an ACE the key object inherits, and one added by an explicit ACE on the key
// object, are found (exit 3), each with the ACE and the group chain.
func TestVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Samba DC")
	}
	ctx, dc, dir := startAdminDC(t)
	svc, err := dc.CreateUser("svc-verify", "Svc!Passw0rd-verify")
	if err != nil {
		t.Fatal(err)
	}
	eve, err := dc.CreateUser("eve", "Eve!Passw0rd-verify")
	if err != nil {
		t.Fatal(err)
	}
	mallory, err := dc.CreateUser("mallory", "Mal!Passw0rd-verify")
	if err != nil {
		t.Fatal(err)
	}
	inner, err := dc.CreateGroup("helpdesk", eve)
	if err != nil {
		t.Fatal(err)
	}
	outer, err := dc.CreateGroup("vmm-operators", svc, inner)
	if err != nil {
		t.Fatal(err)
	}

	// A container as the operator makes it: the template DACL, a DC Manager and one key.
	domain, err := dir.Domain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := secdesc.DomainRelativeSID(domain.SID, secdesc.RIDAdministrator)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := secdesc.DKMTemplate(domain.SID, domain.ForestRootSID, []secdesc.SID{secdesc.MustParseSID(svc.SID), admin})
	if err != nil {
		t.Fatal(err)
	}
	path := "CN=DKM-verify,CN=System," + dc.BaseDN
	owner := directory.Owner{Cluster: "c", Namespace: "vmm", Name: "vmm", UID: "u"}
	if _, err := dir.CreateContainer(ctx, path, sd, owner); err != nil {
		t.Fatal(err)
	}
	manager, err := dir.CreateManager(ctx, path, "6d2f1c3a-5b4e-4f70-9a8b-1c2d3e4f5a6b", owner)
	if err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 32)
	_, _ = rand.Read(blob)
	key, err := dir.AddKey(ctx, manager.DN, "3c1e5a7b-0000-4000-8000-00000000aaaa", blob, owner)
	if err != nil {
		t.Fatal(err)
	}

	args := verifyArgs(t, dc, path)
	out := runCmd(t, ExitOK, args...)
	for _, want := range []string{`allowed     DEMO\svc-verify`, "1 key object(s)"} {
		if !strings.Contains(out, want) {
			t.Fatalf("clean container: output lacks %q:\n%s", want, out)
		}
	}

	// A read ACE for a group on the container, inherited by the key object: eve reads through
	// vmm-operators > helpdesk; svc-verify, also in vmm-operators, stays allowed.
	addACE(ctx, t, dir, path, "(A;CI;RP;;;"+outer.SID+")")
	out = runCmd(t, ExitFindings, args...)
	if !strings.Contains(out, "inherited (A;") {
		t.Fatalf("the grant is not shown as inherited:\n%s", out)
	}
	for _, want := range []string{
		`NOT ALLOWED DEMO\eve (` + eve.SID + `) via group DEMO\vmm-operators > DEMO\helpdesk`,
		outer.SID + ") on " + key.DN + ": read (READ_PROPERTY on every property",
		`allowed     DEMO\svc-verify (` + svc.SID + `) via group DEMO\vmm-operators`,
		`can read a key of ` + path + `: DEMO\eve`,
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("nested group: output lacks %q:\n%s", want, out)
		}
	}
	// An explicit ACE on the key object itself, on thumbnailPhoto only.
	addACE(ctx, t, dir, key.DN, "(OA;;RP;8d3bca50-1d7e-11d0-a081-00aa006c33ed;;"+mallory.SID+")")
	out = runCmd(t, ExitFindings, args...)
	if !strings.Contains(out, `NOT ALLOWED DEMO\mallory`) || !strings.Contains(out, "explicit (OA;;RP;8d3bca50-1d7e-11d0-a081-00aa006c33ed;;") {
		t.Fatalf("explicit ACE: output lacks mallory's explicit grant:\n%s", out)
	}
	// Allowing them by name makes the run pass again.
	runCmd(t, ExitOK, append(args, "--allow", `DEMO\eve`, "--allow", "mallory@"+dc.Realm)...)
	// A path that does not exist is a failure, not a pass.
	runCmd(t, ExitFailed, verifyArgs(t, dc, "CN=DKM-absent,CN=System,"+dc.BaseDN)...)
}

// startAdminDC starts a Samba DC for the test and connects to it as Administrator.
func startAdminDC(t *testing.T) (context.Context, *testenv.DC, *directory.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	dc, err := testenv.StartDC(ctx, testenv.DCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dc.Close)
	pool := directory.NewPool()
	t.Cleanup(pool.Close)
	dir, err := pool.Client(directory.Config{URLs: []string{dc.URL}, Username: dc.AdminUser, Password: dc.AdminPassword, CAPEM: dc.CAPEM})
	if err != nil {
		t.Fatal(err)
	}
	return ctx, dc, dir
}

// verifyArgs writes a DKMContainer for path and the bind password to files and returns the
// command line that verifies it without a cluster.
func verifyArgs(t *testing.T, dc *testenv.DC, path string) []string {
	t.Helper()
	obj := dkmv1.DKMContainer{
		TypeMeta:   metav1.TypeMeta{APIVersion: "dkm.io/v1alpha1", Kind: "DKMContainer"},
		ObjectMeta: metav1.ObjectMeta{Name: "vmm", Namespace: "vmm"},
		Spec: dkmv1.DKMContainerSpec{
			Directory:       dkmv1.DirectorySpec{URLs: []string{dc.URL}, BindSecretRef: dkmv1.SecretReference{Name: "bind"}},
			Path:            path,
			ServiceAccounts: []string{`DEMO\svc-verify`},
			KeyProtection:   dkmv1.KeyProtectionSpec{Mode: dkmv1.KeyPlain},
		},
	}
	return fileCommand(t, dc, obj, "verify")
}

// fileCommand writes obj and the DC's Administrator password to files and returns the command
// line that runs cmd on them without a cluster, bound as Administrator over LDAPS.
func fileCommand(t *testing.T, dc *testenv.DC, obj dkmv1.DKMContainer, cmd string) []string {
	t.Helper()
	dir := t.TempDir()
	b, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	file, pw := filepath.Join(dir, "dkm.yaml"), filepath.Join(dir, "password")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pw, []byte(dc.AdminPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{cmd, "-f", file, "--username", dc.AdminUser, "--password-file", pw, "--ca-file", dc.CAFile}
}

func runCmd(t *testing.T, want int, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), args, Env{Stdout: &stdout, Stderr: &stderr})
	out := stdout.String() + stderr.String()
	t.Logf("dkmctl %s: exit %d\n%s", strings.Join(args, " "), code, out)
	if code != want {
		t.Fatalf("exit %d, want %d", code, want)
	}
	return out
}

// addACE appends an explicit ACE to dn's DACL.
func addACE(ctx context.Context, t *testing.T, dir *directory.Client, dn, aceSDDL string) {
	t.Helper()
	ace, err := secdesc.ParseACE(aceSDDL, secdesc.Aliases{})
	if err != nil {
		t.Fatal(err)
	}
	obs, err := dir.Observe(ctx, dn)
	if err != nil || !obs.Exists {
		t.Fatalf("reading %s: %v", dn, err)
	}
	sd := obs.Container.SD.Clone()
	sd.DACL.ACEs = append(sd.DACL.ACEs, ace)
	if err := dir.ReplaceDACL(ctx, dn, sd); err != nil {
		t.Fatal(err)
	}
}
