package backup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/keys"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// Reader is what a backup reads from AD (*directory.Client has it).
type Reader interface {
	Domain(ctx context.Context) (directory.Domain, error)
	ResolvePrincipal(ctx context.Context, name string) (directory.Principal, error)
	Observe(ctx context.Context, containerDN string) (*directory.Observation, error)
}

// ErrNotBackedUp: the container is not in a state a backup can capture whole.
var ErrNotBackedUp = errors.New("nothing to back up")

// Take reads the container at path and opens every key version with p (the source's KEK, or
// Plain). It fails rather than write an incomplete backup: a container without exactly one
// DC Manager, without CryptoPolicy, or with a version that does not open.
func Take(ctx context.Context, dir Reader, path string, p keys.Protector, now time.Time) (*File, error) {
	domain, err := dir.Domain(ctx)
	if err != nil {
		return nil, err
	}
	obs, err := dir.Observe(ctx, path)
	if err != nil {
		return nil, err
	}
	switch {
	case !obs.Exists:
		return nil, fmt.Errorf("%w: %s does not exist", ErrNotBackedUp, path)
	case len(obs.Managers) != 1:
		return nil, fmt.Errorf("%w: %s holds %d DC Manager objects, want 1", ErrNotBackedUp, path, len(obs.Managers))
	case obs.Container.SD == nil || obs.Container.SD.DACL == nil:
		return nil, fmt.Errorf("%w: the DACL of %s cannot be read (READ_CONTROL)", ErrNotBackedUp, path)
	}
	m := obs.Managers[0]
	if m.Policy == nil || m.Policy.ActiveKeyID == "" || len(m.Keys) == 0 {
		return nil, fmt.Errorf("%w: %s holds no complete key (CryptoPolicy and a key contact)", ErrNotBackedUp, m.DN)
	}
	container, err := keys.ObjectGUIDFromBytes(obs.Container.GUID.Bytes())
	if err != nil {
		return nil, err
	}
	stored := make([]keys.StoredKey, 0, len(m.Keys))
	for _, k := range m.Keys {
		stored = append(stored, keys.StoredKey{ID: k.ID, Blob: k.Blob, Created: k.Created})
	}
	ring, err := keys.LoadRing(container, m.Policy.ActiveKeyID, stored, p)
	if err != nil {
		return nil, fmt.Errorf("opening the keys of %s: %w", m.DN, err)
	}

	f := &File{
		Format:    Format,
		CreatedAt: now.UTC().Truncate(time.Second),
		Source: Source{DomainDN: domain.DN, DNSName: domain.DNSName, NetBIOSName: domain.NetBIOSName,
			DomainSID: domain.SID.String(), ForestRootSID: domain.ForestRootSID.String()},
		Container:   Container{Object: objectOf(obs.Container)},
		Manager:     objectOf(m.Object),
		ActiveKeyID: strings.ToLower(ring.ActiveID().String()),
		Protection:  protection(p, ring),
	}
	if err := f.Container.describeDACL(ctx, dir, obs.Container.SD, domain); err != nil {
		return nil, err
	}
	for _, v := range ring.Versions() {
		k := Key{ID: v.ID.String(), Created: v.Created.UTC(), Fingerprint: v.Fingerprint.String(), Key: v.Material.Reveal()}
		for _, o := range m.Keys {
			if strings.EqualFold(o.ID, k.ID) {
				k.DN, k.Owner = o.DN, o.OwnerRecord
			}
		}
		f.Keys = append(f.Keys, k)
	}
	return f, nil
}

func objectOf(o directory.Object) Object {
	return Object{DN: o.DN, GUID: o.GUID.String(), Owner: o.OwnerRecord}
}

func protection(p keys.Protector, ring *keys.Ring) Protection {
	if p.Mode() == keys.ModePlain {
		return Protection{InAD: keys.ModePlain, Note: "Plain keys, held as they were in AD, inside the age encryption"}
	}
	var keks []string
	for _, v := range ring.Versions() {
		if fp := v.KEK.String(); !slices.Contains(keks, fp) {
			keks = append(keks, fp)
		}
	}
	return Protection{InAD: keys.ModeWrapped, UnwrappedWith: keks, Note: "unwrapped with KEK " + strings.Join(keks, ", ") +
		" and held inside the age encryption: a restore needs no source KEK and wraps them under the target's"}
}

// describeDACL records the explicit DACL twice (full SIDs for a restore, names for people) and
// names every domain account it grants, so a restore into another domain finds them by name.
func (c *Container) describeDACL(ctx context.Context, dir Reader, sd *secdesc.SecurityDescriptor, d directory.Domain) error {
	explicit := secdesc.RepairDescriptor(sd) // explicit ACEs only: AD computes the inherited ones
	c.DACL = secdesc.FormatDACL(explicit, secdesc.PlainSIDs)
	named := secdesc.FormatDACL(explicit, secdesc.DomainAliases(d.SID, d.ForestRootSID))
	for _, ace := range explicit.DACL.ACEs {
		if !isAccount(ace.SID) || slices.ContainsFunc(c.Accounts, func(a Account) bool { return a.SID == ace.SID.String() }) {
			continue
		}
		p, err := dir.ResolvePrincipal(ctx, ace.SID.String())
		if err != nil {
			return fmt.Errorf("naming %s of the DACL of %s: %w", ace.SID, c.DN, err)
		}
		a := Account{SID: ace.SID.String(), SAMAccountName: p.SAMAccountName, Name: d.NetBIOSName + `\` + p.SAMAccountName}
		c.Accounts = append(c.Accounts, a)
		named = strings.ReplaceAll(named, ";"+a.SID+")", ";"+a.Name+")")
	}
	c.DACLWithNames = named
	return nil
}

// isAccount: a domain account or group that is not one of the well-known RIDs (below 1000),
// which a restore maps by RID instead.
func isAccount(s secdesc.SID) bool {
	_, rid, ok := s.SplitDomainRID()
	return ok && rid >= 1000
}
