package controllers

import (
	"context"

	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// Directory is everything the reconciler asks of AD. *directory.Client implements it against a
// real DC; unit tests of reconcile logic may use a fake, integration tests use Samba.
type Directory interface {
	Domain(ctx context.Context) (directory.Domain, error)
	ResolvePrincipal(ctx context.Context, name string) (directory.Principal, error)
	Observe(ctx context.Context, containerDN string) (*directory.Observation, error)
	EffectiveRights(ctx context.Context, dn string) (directory.Rights, error)
	CreateContainer(ctx context.Context, dn string, sd *secdesc.SecurityDescriptor) (directory.Object, error)
	ReplaceDACL(ctx context.Context, dn string, sd *secdesc.SecurityDescriptor) error
	CreateManager(ctx context.Context, containerDN string) (directory.Object, error)
	AddKey(ctx context.Context, managerDN, keyID string, blob []byte) (directory.KeyObject, error)
	SetActiveKey(ctx context.Context, managerDN, keyID string) error
	ReplaceKeyBlob(ctx context.Context, keyDN string, blob []byte) error
	DeleteTree(ctx context.Context, dn string) error
}

// DirectoryFactory returns the Directory for a connection config; production uses a
// directory.Pool so concurrent reconciles share one connection per identity.
type DirectoryFactory func(cfg directory.Config) (Directory, error)

// PoolFactory adapts a directory.Pool.
func PoolFactory(p *directory.Pool) DirectoryFactory {
	return func(cfg directory.Config) (Directory, error) { return p.Client(cfg) }
}
