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
	// ServerInfo names the DC that answers and the domain's PDC emulator (multidc.go).
	ServerInfo(ctx context.Context) (directory.ServerInfo, error)
	ResolvePrincipal(ctx context.Context, name string) (directory.Principal, error)
	Observe(ctx context.Context, containerDN string) (*directory.Observation, error)
	EffectiveRights(ctx context.Context, dn string) (directory.Rights, error)
	// Writes. Every add carries the owner's record; SetActiveKey and SetOwner are
	// compare-and-swap; DeleteOwned removes only what the owner created, by objectGUID.
	CreateContainer(ctx context.Context, dn string, sd *secdesc.SecurityDescriptor, owner directory.Owner) (directory.Object, error)
	SetOwner(ctx context.Context, dn, from string, to directory.Owner) error
	ReplaceDACL(ctx context.Context, dn string, sd *secdesc.SecurityDescriptor) error
	CreateManager(ctx context.Context, containerDN, managerGUID string, owner directory.Owner) (directory.Object, error)
	AddKey(ctx context.Context, managerDN, keyID string, blob []byte, owner directory.Owner) (directory.KeyObject, error)
	SetActiveKey(ctx context.Context, managerDN, fromID, toID string, owner directory.Owner) error
	ReplaceKeyBlob(ctx context.Context, keyDN string, blob []byte) error
	DeleteOwned(ctx context.Context, root secdesc.GUID, owner directory.Owner) (left []string, err error)
}

// DirectoryFactory returns the Directory for a connection config; production uses a
// directory.Pool so concurrent reconciles share one connection per identity.
type DirectoryFactory func(cfg directory.Config) (Directory, error)

// PoolFactory adapts a directory.Pool.
func PoolFactory(p *directory.Pool) DirectoryFactory {
	return func(cfg directory.Config) (Directory, error) { return p.Client(cfg) }
}
