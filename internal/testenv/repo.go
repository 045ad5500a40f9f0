// Package testenv starts the real components our integration tests talk to: a Samba 4 AD domain
// controller over LDAPS and a kube-apiserver with etcd (envtest), both built or installed by the
// scripts under hack/ and cached in bin/.
package testenv

import (
	"errors"
	"os"
	"path/filepath"
)

// RepoRoot finds the repository root (the directory holding go.mod and hack/) from the working
// directory, which `go test` sets to the package under test.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "versions.env")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root (with hack/versions.env) not found above the working directory")
		}
		dir = parent
	}
}
