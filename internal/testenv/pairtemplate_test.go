package testenv

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// scratchRoot lays out a repository root whose hack/ is this one's and whose bin/ holds only the
// single-DC template (linked), so hack/samba-dc.sh pair-template there builds a pair from
// scratch, as on a fresh machine, without touching the shared cache. It returns the root and
// the pair template directory the script will use.
func scratchRoot(tb testing.TB) (root, pairDir string) {
	tb.Helper()
	repo, err := RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	tmpl, err := sambaTemplate(context.Background(), repo, false)
	if err != nil {
		tb.Fatal(err)
	}
	root = tb.TempDir()
	versionDir := filepath.Join(root, "bin", "samba", filepath.Base(filepath.Dir(tmpl)))
	if err := os.MkdirAll(versionDir, 0o755); err != nil {
		tb.Fatal(err)
	}
	for link, target := range map[string]string{
		filepath.Join(root, "hack"):           filepath.Join(repo, "hack"),
		filepath.Join(versionDir, "template"): tmpl,
	} {
		if err := os.Symlink(target, link); err != nil {
			tb.Fatal(err)
		}
	}
	return root, filepath.Join(versionDir, "pair")
}

// sambaDC runs hack/samba-dc.sh under root and returns its stdout, its stderr and whether it
// succeeded.
func sambaDC(tb testing.TB, root string, args ...string) (stdout, stderr string, ok bool) {
	tb.Helper()
	cmd := exec.Command(filepath.Join(root, "hack", "samba-dc.sh"), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if _, isExit := err.(*exec.ExitError); err != nil && !isExit {
		tb.Fatalf("running hack/samba-dc.sh %v: %v", args, err)
	}
	return strings.TrimSpace(out.String()), errOut.String(), err == nil
}

// TestPairTemplateBuild builds the pair template from scratch where a crashed build left a
// half-built cache (a pair directory without its .built mark, and a stale temporary
// directory), with two builds started at once: one joins DC2, the other waits for it and
// reuses its result, and the half-built leftovers are gone. The scratch root lies deep (under
// t.TempDir), as a CI checkout may: samba's socket paths there exceed the Unix limit unless the
// build keeps them short. About 30 s; skipped with -short.
func TestPairTemplateBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a DC pair template from scratch (about 30 s)")
	}
	root, pairDir := scratchRoot(t)
	for _, junk := range []string{filepath.Join(pairDir, "dc1", "half-copied"), filepath.Join(pairDir+".tmp.crashed", "dc2", "half-joined")} {
		if err := os.MkdirAll(filepath.Dir(junk), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(junk, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, _, ok := sambaDC(t, root, "pair-check"); ok {
		t.Fatalf("pair-check accepts a half-built pair template (printed %q)", out)
	}

	var wg sync.WaitGroup
	type result struct {
		stdout, stderr string
		ok             bool
	}
	results := make([]result, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, errOut, ok := sambaDC(t, root, "pair-template")
			results[i] = result{out, errOut, ok}
		}()
	}
	wg.Wait()
	joins := 0
	for _, r := range results {
		if !r.ok {
			t.Fatalf("pair-template failed:\n%s", r.stderr)
		}
		if r.stdout != pairDir {
			t.Errorf("pair-template printed %q, want %q", r.stdout, pairDir)
		}
		joins += strings.Count(r.stderr, "joining a second DC")
	}
	if joins != 1 {
		t.Errorf("two concurrent builds joined DC2 %d times, want once", joins)
	}

	for _, gone := range []string{filepath.Join(pairDir, "dc1", "half-copied"), pairDir + ".tmp.crashed"} {
		if _, err := os.Stat(gone); err == nil {
			t.Errorf("%s survived the rebuild", gone)
		}
	}
	env, err := readEnvFile(filepath.Join(pairDir, "pair.env"))
	if err != nil {
		t.Fatal(err)
	}
	if env["DC1_NTDS_GUID"] == "" || env["DC2_NTDS_GUID"] == "" || env["DC1_NTDS_GUID"] == env["DC2_NTDS_GUID"] {
		t.Errorf("pair.env NTDS GUIDs %q and %q: want two distinct DCs", env["DC1_NTDS_GUID"], env["DC2_NTDS_GUID"])
	}
	if out, _, ok := sambaDC(t, root, "pair-check"); !ok || out != pairDir {
		t.Errorf("pair-check after the build: %q, %v; want %q", out, ok, pairDir)
	}
	// Built once: another pair-template reuses it.
	if _, errOut, ok := sambaDC(t, root, "pair-template"); !ok || strings.Contains(errOut, "joining") {
		t.Errorf("pair-template on a built cache rebuilt it or failed: %v\n%s", ok, errOut)
	}
}
