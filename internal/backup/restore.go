package backup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/keys"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// Writer is what a restore reads and writes in AD (*directory.Client has it).
type Writer interface {
	Reader
	CreateContainer(ctx context.Context, dn string, sd *secdesc.SecurityDescriptor, owner directory.Owner) (directory.Object, error)
	CreateManager(ctx context.Context, containerDN, managerGUID string, owner directory.Owner) (directory.Object, error)
	AddKey(ctx context.Context, managerDN, keyID string, blob []byte, owner directory.Owner) (directory.KeyObject, error)
	SetActiveKey(ctx context.Context, managerDN, fromID, toID string, owner directory.Owner) error
	SetOwner(ctx context.Context, dn, from string, to directory.Owner) error
}

// Target is where a backup goes: the container DN, the DKMContainer that will own what the
// restore writes (its ownership record), and the key protection of that DKMContainer.
type Target struct {
	Path      string
	Owner     directory.Owner
	Protector keys.Protector
}

// Result says what a restore wrote.
type Result struct {
	Container        directory.Object
	ContainerCreated bool
	// Resumed: the path held what an interrupted restore for the same owner wrote, and this one
	// finished it.
	Resumed bool
	Manager directory.Object
	// Remapped lists the DACL's SIDs that were translated for the target domain ("old -> new
	// (name)"); empty for a restore into the source domain.
	Remapped []string
	Keys     []Key // ID, creation time in the backup, fingerprint and the new DN; no bytes
}

// ErrExists: the target already holds a key; a restore never overwrites or mixes keys.
var ErrExists = errors.New("the target already holds keys")

// Restore writes the backup into t.Path: the container (with the backup's DACL, its SIDs
// remapped to the target domain) unless it exists, then the DC Manager (named from the
// container's objectGUID), every key version resealed for that objectGUID under t.Protector, and
// CryptoPolicy, each object with t.Owner's ownership record in its add request; the container's
// record names t.Owner last. An existing container is used only when it holds nothing: not a
// DC Manager, not another object. A container an earlier restore for the same owner left part
// way (it still carries the restore's record) is finished: what that restore wrote is kept when
// it is this backup's (each key written opens to the backup's fingerprint), refused otherwise.
func Restore(ctx context.Context, dir Writer, f *File, t Target) (*Result, error) {
	versions, err := f.Versions()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	active, _ := keys.ParseKeyID(f.ActiveKeyID) // Versions checked it
	if err := t.Owner.Validate(); err != nil {
		return nil, err
	}
	obs, err := dir.Observe(ctx, t.Path)
	if err != nil {
		return nil, err
	}
	// Until the keys are complete the container carries a restore's record, not the target's:
	// the operator then treats the target DKMContainer as a reader of it, which never writes,
	// so it cannot add a first key of its own to a half-restored container. The record moves
	// to the target last, by compare-and-swap.
	hold := restoring(t.Owner)
	final := t.Owner
	res := &Result{}
	var resumed *directory.Observation
	switch {
	case obs.Exists && obs.Container.Owner != nil && obs.Container.Owner.Equal(hold):
		// An earlier restore for this owner stopped part way: its record says whether the
		// container was created or claimed, and what it wrote is checked below.
		resumed, res.Container, res.Resumed = obs, obs.Container, true
		hold, final.Claimed = *obs.Container.Owner, obs.Container.Owner.Claimed
	case obs.Exists && len(obs.Managers) > 0:
		return nil, fmt.Errorf("%w: %s holds %s; move it away first (a restore never overwrites a key or mixes two)",
			ErrExists, t.Path, obs.Managers[0].DN)
	case obs.Exists && len(obs.Foreign) > 0:
		return nil, fmt.Errorf("%w: %s holds %s, which is not a DKM object", ErrExists, t.Path, obs.Foreign[0])
	case obs.Exists && obs.Container.Owner != nil && !obs.Container.Owner.Equal(t.Owner):
		return nil, fmt.Errorf("%s is owned by %s, not by %s", t.Path, obs.Container.Owner.Short(), t.Owner.Short())
	case obs.Exists && obs.Container.OwnerRecord != "" && obs.Container.Owner == nil:
		return nil, fmt.Errorf("%s carries %s %q, which is not a dkm-operator ownership record", t.Path,
			directory.OwnerAttribute, obs.Container.OwnerRecord)
	case obs.Exists:
		res.Container = obs.Container
		if obs.Container.Owner == nil {
			final = t.Owner.AsClaim() // not made by dkm-operator: managed, never deleted
		} else {
			final.Claimed = obs.Container.Owner.Claimed
		}
		hold.Claimed = final.Claimed // so that a resumed restore hands it over the same way
		if err := dir.SetOwner(ctx, t.Path, obs.Container.OwnerRecord, hold); err != nil {
			return nil, fmt.Errorf("marking %s as being restored: %w", t.Path, err)
		}
	default:
		domain, err := dir.Domain(ctx)
		if err != nil {
			return nil, err
		}
		sd, remapped, err := f.targetDACL(ctx, dir, domain)
		if err != nil {
			return nil, err
		}
		res.Remapped = remapped
		if res.Container, err = dir.CreateContainer(ctx, t.Path, sd, hold); err != nil {
			return nil, fmt.Errorf("creating %s: %w", t.Path, err)
		}
		res.ContainerCreated = true
	}

	container, err := keys.ObjectGUIDFromBytes(res.Container.GUID.Bytes())
	if err != nil {
		return res, err
	}
	ring, stored, err := keys.Reseal(container, active, versions, t.Protector)
	if err != nil {
		return res, err
	}
	written, err := writtenBefore(resumed, t.Path, container, ring, t.Protector)
	if err != nil {
		return res, err
	}
	if written != nil {
		res.Manager = written.Object
	} else if res.Manager, err = dir.CreateManager(ctx, t.Path, keys.ManagerGUID(container).String(), t.Owner); err != nil {
		return res, fmt.Errorf("creating the DC Manager in %s: %w", t.Path, err)
	}
	for _, v := range ring.Versions() {
		dn := directory.ChildDN(res.Manager.DN, v.ID.String())
		if written == nil || !hasKey(written, v.ID) {
			k, err := dir.AddKey(ctx, res.Manager.DN, v.ID.String(), blobOf(stored, v.ID), t.Owner)
			if err != nil {
				return res, fmt.Errorf("adding key %s: %w", v.ID, err)
			}
			dn = k.DN
		}
		res.Keys = append(res.Keys, Key{ID: v.ID.String(), Created: v.Created, Fingerprint: v.Fingerprint.String(), DN: dn})
	}
	if written == nil || written.Policy == nil {
		if err := dir.SetActiveKey(ctx, res.Manager.DN, "", active.String(), t.Owner); err != nil {
			return res, fmt.Errorf("adding CryptoPolicy: %w", err)
		}
	}
	from := hold.String()
	if resumed != nil {
		from = resumed.Container.OwnerRecord // as read: the compare of the compare-and-swap
	}
	if err := dir.SetOwner(ctx, t.Path, from, final); err != nil {
		return res, fmt.Errorf("handing %s to %s: %w", t.Path, final.Short(), err)
	}
	return res, nil
}

// writtenBefore is the DC Manager an interrupted restore left in a container (nil: none, or
// not resuming), checked to hold nothing but this backup: the DC Manager named from the
// container's objectGUID, keys of the backup that open under p to the backup's fingerprints,
// CryptoPolicy naming the backup's active key.
func writtenBefore(obs *directory.Observation, path string, container keys.ObjectGUID, ring *keys.Ring, p keys.Protector) (*directory.Manager, error) {
	if obs == nil {
		return nil, nil
	}
	if len(obs.Foreign) > 0 {
		return nil, fmt.Errorf("%w: %s holds %s, which is not a DKM object", ErrExists, path, obs.Foreign[0])
	}
	switch len(obs.Managers) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, fmt.Errorf("%w: %s holds %d DC Managers", ErrExists, path, len(obs.Managers))
	}
	m := &obs.Managers[0]
	if want := directory.ChildDN(path, directory.ManagerPrefix+keys.ManagerGUID(container).String()); !strings.EqualFold(m.DN, want) {
		return nil, fmt.Errorf("%w: %s holds %s, not the DC Manager a restore names %s", ErrExists, path, m.DN, want)
	}
	for _, k := range m.Keys {
		id, err := keys.ParseKeyID(k.ID)
		want, inBackup := ring.Version(id)
		if err != nil || !inBackup {
			return nil, fmt.Errorf("%w: %s holds key %s, which this backup does not (a restore never mixes keys)", ErrExists, m.DN, k.ID)
		}
		opened, err := keys.LoadRing(container, k.ID, []keys.StoredKey{{ID: k.ID, Blob: k.Blob, Created: k.Created}}, p)
		if err != nil {
			return nil, fmt.Errorf("%w: key %s in %s does not open under the target's key protection: %v", ErrExists, k.ID, m.DN, err)
		}
		if got := opened.Active().Fingerprint; got != want.Fingerprint {
			return nil, fmt.Errorf("%w: key %s in %s is %s, the backup's is %s (a restore never mixes keys)", ErrExists, k.ID, m.DN, got, want.Fingerprint)
		}
	}
	if m.Policy != nil && !strings.EqualFold(m.Policy.ActiveKeyID, ring.ActiveID().String()) {
		return nil, fmt.Errorf("%w: CryptoPolicy in %s names %s, the backup's active key is %s", ErrExists, m.DN, m.Policy.ActiveKeyID, ring.ActiveID())
	}
	return m, nil
}

func hasKey(m *directory.Manager, id keys.KeyID) bool {
	return slices.ContainsFunc(m.Keys, func(k directory.KeyObject) bool { return strings.EqualFold(k.ID, id.String()) })
}

// restoring is the record a container carries while a restore for owner writes into it: another
// cluster and resource, so no operator takes it for its own.
func restoring(owner directory.Owner) directory.Owner {
	return directory.Owner{Cluster: "dkmctl-restore", Namespace: owner.Namespace, Name: owner.Name, UID: "restoring-for-" + owner.UID}
}

// targetDACL is the backup's DACL for the target domain: well-known SIDs as they are, the
// source domain's and forest root's built-in RIDs (Domain Admins, Administrator, Enterprise
// Admins...) on the target's, and every other domain account resolved by name in the target.
// An account the target does not have is an error that names it: a DACL without it could lock
// out a service, or one with its old SID grant nobody.
func (f *File) targetDACL(ctx context.Context, dir Reader, d directory.Domain) (*secdesc.SecurityDescriptor, []string, error) {
	sd, err := secdesc.ParseSDDL(f.Container.DACL, secdesc.Aliases{})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: container DACL: %v", ErrInvalid, err)
	}
	srcDomain, _ := secdesc.ParseSID(f.Source.DomainSID)
	srcForest, _ := secdesc.ParseSID(f.Source.ForestRootSID)
	var remapped, missing []string
	cache := map[secdesc.SID]secdesc.SID{}
	for i, ace := range sd.DACL.ACEs {
		to, ok := cache[ace.SID]
		if !ok {
			var why string
			to, why = f.mapSID(ctx, dir, ace.SID, srcDomain, srcForest, d)
			if why != "" {
				missing = append(missing, why)
				continue
			}
			cache[ace.SID] = to
			if to != ace.SID {
				remapped = append(remapped, fmt.Sprintf("%s -> %s (%s)", ace.SID, to, f.principalName(ace.SID)))
			}
		}
		sd.DACL.ACEs[i].SID = to
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("the DACL of the backup grants accounts the target domain %s does not have: %s; "+
			"create them (same sAMAccountName) and run the restore again", d.DNSName, strings.Join(missing, "; "))
	}
	return secdesc.RepairDescriptor(sd), remapped, nil
}

func (f *File) mapSID(ctx context.Context, dir Reader, s, srcDomain, srcForest secdesc.SID, d directory.Domain) (secdesc.SID, string) {
	dom, rid, ok := s.SplitDomainRID()
	if !ok {
		return s, "" // well-known (SYSTEM, BUILTIN\Administrators, Enterprise Domain Controllers...)
	}
	if rid < 1000 {
		var base secdesc.SID
		switch dom {
		case srcDomain:
			base = d.SID
		case srcForest:
			base = d.ForestRootSID
		default:
			return secdesc.SID{}, fmt.Sprintf("%s (a built-in account of a third domain)", s)
		}
		to, err := secdesc.DomainRelativeSID(base, rid)
		if err != nil {
			return secdesc.SID{}, fmt.Sprintf("%s: %v", s, err)
		}
		return to, ""
	}
	name := f.accountName(s)
	if name == s.String() {
		return secdesc.SID{}, fmt.Sprintf("%s (the backup does not name it)", s)
	}
	p, err := dir.ResolvePrincipal(ctx, name)
	if err != nil {
		return secdesc.SID{}, fmt.Sprintf("%s (%s)", name, s)
	}
	return p.SID, ""
}

// accountName is the sAMAccountName the backup recorded for s, or s itself.
func (f *File) accountName(s secdesc.SID) string {
	for _, a := range f.Container.Accounts {
		if a.SID == s.String() {
			return a.SAMAccountName
		}
	}
	return s.String()
}

func blobOf(stored []keys.StoredKey, id keys.KeyID) []byte {
	for _, sk := range stored {
		if strings.EqualFold(sk.ID, id.String()) {
			return sk.Blob
		}
	}
	return nil
}

// builtinNames names the built-in domain RIDs a DKM template grants.
var builtinNames = map[uint32]string{
	secdesc.RIDAdministrator: "Administrator", secdesc.RIDDomainAdmins: "Domain Admins", secdesc.RIDEnterpriseAdmins: "Enterprise Admins",
}

// principalName names s for people: the account the backup recorded, a built-in group, or s.
func (f *File) principalName(s secdesc.SID) string {
	if _, rid, ok := s.SplitDomainRID(); ok && rid < 1000 && builtinNames[rid] != "" {
		return builtinNames[rid]
	}
	return f.accountName(s)
}
