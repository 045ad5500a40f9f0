package directory

import (
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// TestOwnershipRecordsInAD: the record is written in every add, read back by Observe, moved
// only by compare-and-swap, and DeleteOwned removes exactly what the owner created.
func TestOwnershipRecordsInAD(t *testing.T) {
	f := newDKMFixture(t)
	ctx := testCtx(t)
	mgr, err := f.admin.CreateManager(ctx, f.dn, newManagerGUID(t), testOwner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.AddKey(ctx, mgr.DN, "k1", []byte("blob one"), testOwner); err != nil {
		t.Fatal(err)
	}
	if err := f.admin.SetActiveKey(ctx, mgr.DN, "", "k1", testOwner); err != nil {
		t.Fatal(err)
	}
	// A person's object inside the DC Manager, without a record.
	conn, err := f.dc.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	personal := ChildDN(mgr.DN, "notes")
	add := ldap.NewAddRequest(personal, nil)
	add.Attribute("objectClass", []string{"container"})
	if err := conn.Add(add); err != nil {
		t.Fatal(err)
	}

	obs, err := f.admin.Observe(ctx, f.dn)
	if err != nil {
		t.Fatal(err)
	}
	if !obs.Container.OwnedBy(testOwner) || obs.Container.Class() != "container" {
		t.Errorf("container record %q class %q", obs.Container.OwnerRecord, obs.Container.Class())
	}
	m := obs.Managers[0]
	if !m.OwnedBy(testOwner) || !m.Policy.OwnedBy(testOwner) || !m.Keys[0].OwnedBy(testOwner) {
		t.Errorf("records: manager %q policy %q key %q", m.OwnerRecord, m.Policy.OwnerRecord, m.Keys[0].OwnerRecord)
	}
	if !slices.Equal(obs.Foreign, []string{personal}) {
		t.Errorf("Foreign = %v, want the person's container %s", obs.Foreign, personal)
	}

	t.Run("CryptoPolicy moves only from the value it expects", func(t *testing.T) {
		if _, err := f.admin.AddKey(ctx, mgr.DN, "k2", []byte("blob two"), testOwner); err != nil {
			t.Fatal(err)
		}
		if err := f.admin.SetActiveKey(ctx, mgr.DN, "", "k2", testOwner); KindOf(err) != KindAlreadyExists {
			t.Errorf("adding a second CryptoPolicy: %v, want already exists", err)
		}
		if err := f.admin.SetActiveKey(ctx, mgr.DN, "k9", "k2", testOwner); KindOf(err) != KindConflict {
			t.Errorf("swap from a stale value: %v, want conflict", err)
		}
		if err := f.admin.SetActiveKey(ctx, mgr.DN, "k1", "k2", testOwner); err != nil {
			t.Errorf("swap from the current value: %v", err)
		}
		obs, err := f.admin.Observe(ctx, f.dn)
		if err != nil {
			t.Fatal(err)
		}
		if got := obs.Managers[0].Policy.ActiveKeyID; got != "k2" {
			t.Errorf("CryptoPolicy names %q, want k2", got)
		}
	})

	t.Run("the record moves only from the value it expects", func(t *testing.T) {
		other := Owner{Cluster: "other-cluster", Namespace: "x", Name: "y", UID: "z"}
		if err := f.admin.SetOwner(ctx, f.dn, "", other); KindOf(err) != KindConflict {
			t.Errorf("claiming an owned container: %v, want conflict", err)
		}
		if err := f.admin.SetOwner(ctx, f.dn, other.String(), testOwner); KindOf(err) != KindConflict {
			t.Errorf("handover from a stale record: %v, want conflict", err)
		}
	})

	t.Run("DeleteOwned removes only what the owner created", func(t *testing.T) {
		stranger := Owner{Cluster: "test-cluster", Namespace: "test", Name: "dkm", UID: "another-uid"}
		if left, err := f.admin.DeleteOwned(ctx, obs.Container.GUID, stranger); err != nil || len(left) != 6 {
			t.Errorf("DeleteOwned as a stranger: left %v, %v; want all 6 objects left", left, err)
		}
		left, err := f.admin.DeleteOwned(ctx, obs.Container.GUID, testOwner)
		if err != nil {
			t.Fatal(err)
		}
		// Left: the person's container, and the DC Manager and container that still hold it.
		if want := []string{personal, mgr.DN, f.dn}; !slices.Equal(left, want) {
			t.Errorf("left %v, want %v", left, want)
		}
		after, err := f.admin.Observe(ctx, f.dn)
		if err != nil {
			t.Fatal(err)
		}
		if len(after.Managers) != 1 || after.Managers[0].Policy != nil || len(after.Managers[0].Keys) != 0 {
			t.Errorf("after DeleteOwned: %+v", after.Managers)
		}
	})
}

// ServerInfo names the DC that answered and the PDC emulator, read by an ordinary user as by
// an admin: the test DC is its domain's only DC, so it is the PDC.
func TestServerInfoInAD(t *testing.T) {
	dc := needDC(t)
	user := createUser(t, dc, "srvinfo")
	for _, cfg := range []Config{adminConfig(dc), configAs(dc, user.UPN(dc), user.Password)} {
		c := newTestClient(t, cfg)
		info, err := c.ServerInfo(testCtx(t))
		if err != nil {
			t.Fatalf("%s: %v", cfg.Username, err)
		}
		if !info.IsPDC() || !strings.HasPrefix(strings.ToUpper(info.ServiceName), "CN=NTDS SETTINGS,") || info.Name() == info.ServiceName {
			t.Errorf("%s: ServerInfo = %+v (name %q), want this DC as the PDC emulator", cfg.Username, info, info.Name())
		}
		if ops := c.Ops(); ops["search"] != 2 {
			t.Errorf("%s: %d searches, want 2", cfg.Username, ops["search"])
		}
	}
}
