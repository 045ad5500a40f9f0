package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The files a complete Samba AD DC install has, relative to the root. The schema files and the
// dsdb/vfs modules come from packages that `samba` only recommends.
var sambaFiles = map[string][]string{
	"samba":              {"usr/sbin/samba"},
	"samba-common-bin":   {"usr/bin/samba-tool"},
	"python3-samba":      {"usr/lib/python3/dist-packages/samba/__init__.py"},
	"samba-ad-provision": {"usr/share/samba/setup/ad-schema/AD_DS_Attributes__Windows_Server_2012_R2.ldf", "usr/share/samba/setup/ad-schema/AD_DS_Classes__Windows_Server_2012_R2.ldf"},
	"samba-dsdb-modules": {"usr/lib/" + multiarch() + "/samba/ldb/samba_dsdb.so", "usr/lib/" + multiarch() + "/samba/ldb/acl.so"},
	"samba-vfs-modules":  {"usr/lib/" + multiarch() + "/samba/vfs/acl_xattr.so"},
	"iproute2":           {"sbin/ip"},
	"libnss-wrapper":     {"usr/lib/" + multiarch() + "/libnss_wrapper.so"},
}

// TestSambaInstallCheck runs hack/samba-dc.sh's "is it installed" check against directories laid
// out like machines in various states. A machine with every command but without the files that
// provisioning loads (what `apt-get install --no-install-recommends samba` leaves) must be
// reported as missing exactly those packages.
func TestSambaInstallCheck(t *testing.T) {
	all := slices.Sorted(func(yield func(string) bool) {
		for pkg := range sambaFiles {
			if !yield(pkg) {
				return
			}
		}
	})
	tests := []struct {
		name      string
		installed []string
		partial   map[string]int // package -> how many of its files exist (the first n)
		want      []string
	}{
		{name: "complete", installed: all, want: nil},
		{name: "empty machine", installed: nil, want: all},
		{
			name:      "commands without recommends",
			installed: []string{"samba", "samba-common-bin", "python3-samba", "iproute2", "libnss-wrapper"},
			want:      []string{"samba-ad-provision", "samba-dsdb-modules", "samba-vfs-modules"},
		},
		{
			name:      "provisioning files without the vfs modules",
			installed: []string{"samba", "samba-common-bin", "python3-samba", "iproute2", "libnss-wrapper", "samba-ad-provision", "samba-dsdb-modules"},
			want:      []string{"samba-vfs-modules"},
		},
		{
			// The pair fixture preloads nss_wrapper into samba; a lone DC does not need it, so
			// a machine that ran only single-DC tests before lacks exactly this.
			name:      "everything but nss_wrapper",
			installed: []string{"samba", "samba-common-bin", "python3-samba", "iproute2", "samba-ad-provision", "samba-dsdb-modules", "samba-vfs-modules"},
			want:      []string{"libnss-wrapper"},
		},
		{
			name:      "half of a package's files",
			installed: []string{"samba", "samba-common-bin", "python3-samba", "iproute2", "libnss-wrapper", "samba-ad-provision", "samba-vfs-modules"},
			partial:   map[string]int{"samba-dsdb-modules": 1},
			want:      []string{"samba-dsdb-modules"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sysroot := t.TempDir()
			for _, pkg := range tc.installed {
				layFiles(t, sysroot, sambaFiles[pkg])
			}
			for pkg, n := range tc.partial {
				layFiles(t, sysroot, sambaFiles[pkg][:n])
			}
			got, ok := sambaMissing(t, sysroot)
			if !slices.Equal(got, tc.want) {
				t.Errorf("missing = %v, want %v", got, tc.want)
			}
			if ok != (len(tc.want) == 0) {
				t.Errorf("exit status success = %v with %v missing", ok, tc.want)
			}
		})
	}
}

// TestSambaInstallInstallsWhatIsMissing runs `hack/samba-dc.sh install` with a stand-in apt-get
// that records its arguments and lays out the packages it is asked for: the install names
// exactly the missing packages, and a complete machine runs no apt-get at all.
func TestSambaInstallInstallsWhatIsMissing(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the install path without root goes through sudo; this test covers the root path")
	}
	sysroot := t.TempDir()
	for _, pkg := range []string{"samba", "samba-common-bin", "python3-samba", "iproute2"} {
		layFiles(t, sysroot, sambaFiles[pkg])
	}
	bin := t.TempDir()
	record := filepath.Join(t.TempDir(), "apt-get.args")
	// The stand-in apt-get appends its arguments, and for `install` lays out each named package.
	var script strings.Builder
	script.WriteString("#!/bin/sh\necho \"$@\" >>" + record + "\n[ \"$1\" = install ] || exit 0\nfor p in \"$@\"; do case $p in\n")
	for pkg, files := range sambaFiles {
		script.WriteString("  " + pkg + ")")
		for _, f := range files {
			p := filepath.Join(sysroot, f)
			script.WriteString(" mkdir -p " + filepath.Dir(p) + "; touch " + p + ";")
		}
		script.WriteString(" ;;\n")
	}
	script.WriteString("esac; done\n")
	if err := os.WriteFile(filepath.Join(bin, "apt-get"), []byte(script.String()), 0o755); err != nil {
		t.Fatal(err)
	}

	run := func() {
		t.Helper()
		cmd := exec.Command(filepath.Join(repoRoot(t), "hack", "samba-dc.sh"), "install")
		cmd.Env = append(os.Environ(), "SAMBA_SYSROOT="+sysroot, "PATH="+bin+":"+os.Getenv("PATH"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("hack/samba-dc.sh install: %v\n%s", err, out)
		}
	}
	run()
	calls, _ := os.ReadFile(record)
	lines := strings.Split(strings.TrimSpace(string(calls)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "update") {
		t.Fatalf("apt-get calls = %q, want an update and one install", lines)
	}
	installed := strings.Fields(lines[1])
	for _, pkg := range []string{"samba-ad-provision", "samba-dsdb-modules", "samba-vfs-modules", "libnss-wrapper"} {
		if !slices.Contains(installed, pkg) {
			t.Errorf("apt-get %s does not install %s", lines[1], pkg)
		}
	}
	for _, pkg := range []string{"samba", "iproute2"} {
		if slices.Contains(installed, pkg) {
			t.Errorf("apt-get %s reinstalls %s, which was complete", lines[1], pkg)
		}
	}
	if got, ok := sambaMissing(t, sysroot); !ok {
		t.Fatalf("after install, still missing %v", got)
	}

	// Complete now: a second install must not call apt-get.
	if err := os.Remove(record); err != nil {
		t.Fatal(err)
	}
	run()
	if _, err := os.Stat(record); err == nil {
		calls, _ := os.ReadFile(record)
		t.Errorf("install on a complete machine ran apt-get %q", calls)
	}
}

// sambaMissing runs `hack/samba-dc.sh missing` against sysroot and returns the packages it names
// and whether it exited 0.
func sambaMissing(t *testing.T, sysroot string) ([]string, bool) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot(t), "hack", "samba-dc.sh"), "missing")
	cmd.Env = append(os.Environ(), "SAMBA_SYSROOT="+sysroot)
	out, err := cmd.Output()
	if _, isExit := err.(*exec.ExitError); err != nil && !isExit {
		t.Fatalf("running hack/samba-dc.sh missing: %v", err)
	}
	var pkgs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			pkgs = append(pkgs, f[0])
		}
	}
	slices.Sort(pkgs)
	return pkgs, err == nil
}

func layFiles(t *testing.T, root string, files []string) {
	t.Helper()
	for _, f := range files {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}
