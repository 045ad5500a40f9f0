package backup

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/keys"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

// failingAddKey is AD that refuses the nth AddKey (a restore interrupted part way: the
// connection dropped, dkmctl was killed).
type failingAddKey struct {
	*directory.Client
	n, calls int
}

func (f *failingAddKey) AddKey(ctx context.Context, managerDN, keyID string, blob []byte, owner directory.Owner) (directory.KeyObject, error) {
	f.calls++
	if f.calls == f.n {
		return directory.KeyObject{}, errors.New("interrupted")
	}
	return f.Client.AddKey(ctx, managerDN, keyID, blob, owner)
}

// A restore interrupted after its first key leaves the container with the restore's record; a
// second run of the same restore finishes it (same keys, CryptoPolicy, the record handed to
// the owner) and a run of another backup with other bytes under the same key ID is refused.
func TestRestoreResumesAnInterruptedRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Samba DC")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dc, err := testenv.StartDC(ctx, testenv.DCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	pool := directory.NewPool()
	defer pool.Close()
	dir, err := pool.Client(directory.Config{URLs: []string{dc.URL}, Username: dc.AdminUser, Password: dc.AdminPassword, CAPEM: dc.CAPEM})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := keys.NewProtector(keys.ModePlain, nil)
	if err != nil {
		t.Fatal(err)
	}

	// A source container with two key versions.
	path := "CN=DKM-resume,CN=System," + dc.BaseDN
	source := directory.Owner{Cluster: "src", Namespace: "vmm", Name: "vmm", UID: "src-uid"}
	domain, err := dir.Domain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := secdesc.DKMTemplate(domain.SID, domain.ForestRootSID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dir.CreateContainer(ctx, path, sd, source); err != nil {
		t.Fatal(err)
	}
	m, err := dir.CreateManager(ctx, path, "6d2f1c3a-5b4e-4f70-9a8b-1c2d3e4f5a6b", source)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"3c1e5a7b-0000-4000-8000-00000000aaaa", "3c1e5a7b-0000-4000-8000-00000000bbbb"}
	for _, id := range ids {
		blob := make([]byte, 32)
		_, _ = rand.Read(blob)
		if _, err := dir.AddKey(ctx, m.DN, id, blob, source); err != nil {
			t.Fatal(err)
		}
	}
	if err := dir.SetActiveKey(ctx, m.DN, "", ids[1], source); err != nil {
		t.Fatal(err)
	}
	f, err := Take(ctx, dir, path, plain, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := dc.DeleteTree(path); err != nil {
		t.Fatal(err)
	}

	target := Target{Path: path, Owner: directory.Owner{Cluster: "dst", Namespace: "vmm", Name: "vmm", UID: "dst-uid"}, Protector: plain}
	if _, err := Restore(ctx, &failingAddKey{Client: dir, n: 2}, f, target); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("the interrupted restore: %v", err)
	}
	half, err := dir.Observe(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if half.Container.Owner == nil || half.Container.Owner.Equal(target.Owner) || len(half.Managers) != 1 || len(half.Managers[0].Keys) != 1 {
		t.Fatalf("after the interruption: owner %v, %d DC Managers", half.Container.Owner, len(half.Managers))
	}

	// Another backup, other bytes under the same IDs: refused, nothing written.
	other := *f
	other.Keys = append([]Key(nil), f.Keys...)
	for i := range other.Keys {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		m, _ := keys.NewMaterial(b)
		other.Keys[i].Key = b
		other.Keys[i].Fingerprint = keys.NewVersion(mustKeyID(t, other.Keys[i].ID), m, other.Keys[i].Created).Fingerprint.String()
	}
	if _, err := Restore(ctx, dir, &other, target); !errors.Is(err, ErrExists) {
		t.Fatalf("a different backup into the half-restored container: %v, want ErrExists", err)
	}

	res, err := Restore(ctx, dir, f, target)
	if err != nil {
		t.Fatalf("resuming: %v", err)
	}
	done, err := dir.Observe(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if !done.Container.OwnedBy(target.Owner) || done.Container.Owner.Claimed {
		t.Fatalf("owner after the resumed restore: %s, want %s (created)", done.Container.OwnerRecord, target.Owner)
	}
	mgr := done.Managers[0]
	if len(done.Managers) != 1 || len(mgr.Keys) != 2 || mgr.Policy == nil || !strings.EqualFold(mgr.Policy.ActiveKeyID, ids[1]) {
		t.Fatalf("after the resumed restore: %d DC Managers, %d keys, policy %+v", len(done.Managers), len(mgr.Keys), mgr.Policy)
	}
	ring, err := keys.LoadRing(mustGUID(t, done.Container.GUID), mgr.Policy.ActiveKeyID, storedOf(mgr.Keys), plain)
	if err != nil {
		t.Fatal(err)
	}
	restored := map[string]string{}
	for _, v := range ring.Versions() {
		restored[v.ID.String()] = v.Fingerprint.String()
	}
	for _, k := range f.Keys {
		if got := restored[strings.ToLower(k.ID)]; got != k.Fingerprint {
			t.Fatalf("key %s restored as %q, backed up as %s", k.ID, got, k.Fingerprint)
		}
	}
	if len(res.Keys) != 2 {
		t.Fatalf("result lists %d keys", len(res.Keys))
	}
}

func mustGUID(t *testing.T, g secdesc.GUID) keys.ObjectGUID {
	t.Helper()
	o, err := keys.ObjectGUIDFromBytes(g.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func storedOf(ks []directory.KeyObject) []keys.StoredKey {
	out := make([]keys.StoredKey, 0, len(ks))
	for _, k := range ks {
		out = append(out, keys.StoredKey{ID: k.ID, Blob: k.Blob, Created: k.Created})
	}
	return out
}

func mustKeyID(t *testing.T, s string) keys.KeyID {
	t.Helper()
	id, err := keys.ParseKeyID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
