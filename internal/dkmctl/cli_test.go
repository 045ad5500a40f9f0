package dkmctl

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The command line's exit codes and messages, without AD or a cluster.
func TestRunUsage(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing.age")
	if err := os.WriteFile(existing, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, ExitUsage, "usage: dkmctl"},
		{"unknown command", []string{"frobnicate"}, ExitUsage, `unknown command "frobnicate"`},
		{"help", []string{"help"}, ExitUsage, "Commands:"},
		{"backup without -o", []string{"backup", "vmm", "--passphrase-file", existing}, ExitUsage, "-o FILE is required"},
		{"backup without recipient", []string{"backup", "vmm", "-o", filepath.Join(dir, "b.age")}, ExitUsage, "--recipient"},
		{"backup with both", []string{"backup", "vmm", "-o", filepath.Join(dir, "b.age"), "--recipient", "age1x", "--passphrase-file", existing}, ExitUsage, "not both"},
		{"backup bad recipient", []string{"backup", "vmm", "-o", filepath.Join(dir, "b.age"), "--recipient", "age1notakey"}, ExitFailed, "age recipient"},
		{"restore without -i", []string{"restore", "vmm", "--passphrase-file", existing}, ExitUsage, "-i FILE is required"},
		{"restore without identity", []string{"restore", "vmm", "-i", existing}, ExitUsage, "--identity"},
		{"restore of garbage", []string{"restore", "vmm", "-i", existing, "--passphrase-file", existing}, ExitFailed, "decrypting the backup"},
		{"two names", []string{"backup", "a", "b", "-o", filepath.Join(dir, "c.age"), "--passphrase-file", existing}, ExitUsage, "name one DKMContainer"},
		{"unknown flag", []string{"backup", "--frob"}, ExitUsage, "flag provided but not defined"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := Run(context.Background(), tc.args, Env{Stdout: &out, Stderr: &errOut})
			if code != tc.code || !strings.Contains(out.String()+errOut.String(), tc.want) {
				t.Fatalf("exit %d, want %d; output %q, want %q", code, tc.code, out.String()+errOut.String(), tc.want)
			}
		})
	}
}
