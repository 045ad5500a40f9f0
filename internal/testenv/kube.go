package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// KubeAssets builds (once) and returns the directory holding kube-apiserver and etcd for envtest.
// KUBEBUILDER_ASSETS wins when set, so a developer can point at binaries of their own. Pass
// withControllerManager to also get kube-controller-manager (for garbage-collection tests).
func KubeAssets(ctx context.Context, withControllerManager bool) (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" && !withControllerManager {
		return dir, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	args := []string{}
	if withControllerManager {
		args = append(args, "controller-manager")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "envtest-binaries.sh"), args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building envtest binaries (hack/envtest-binaries.sh): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// NewKube returns an envtest environment on the built binaries with the given CRD directories
// (relative to the repository root). Start it with Start, stop it with Stop.
func NewKube(ctx context.Context, crdDirs ...string) (*envtest.Environment, error) {
	assets, err := KubeAssets(ctx, false)
	if err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, d := range crdDirs {
		paths = append(paths, filepath.Join(root, d))
	}
	return &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     paths,
		ErrorIfCRDPathMissing: true,
	}, nil
}
