package controllers

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/keys"
)

// DirectoryConfig is the connection a DKMContainer's spec and referenced Secrets describe, read
// exactly as the operator reads them (for dkmctl, which talks to the same AD as the operator).
func DirectoryConfig(ctx context.Context, secrets client.Reader, obj *dkmv1.DKMContainer) (directory.Config, error) {
	cfg, _, err := (&DKMContainerReconciler{APIReader: secrets}).directoryConfig(ctx, obj)
	return cfg, err
}

// Protector is the key protection of a DKMContainer (its KEK Secret when Wrapped), as the
// operator builds it.
func Protector(ctx context.Context, secrets client.Reader, obj *dkmv1.DKMContainer) (keys.Protector, error) {
	return (&DKMContainerReconciler{APIReader: secrets}).protector(ctx, obj)
}
