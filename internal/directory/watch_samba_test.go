package directory

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// The Watcher against the real Samba DC: what it reports for the changes the reconciler cares
// about, and that it stays within Samba's MaxNotificationPerConn when it needs more than one
// connection.
func TestWatcherAgainstSamba(t *testing.T) {
	f := newDKMFixture(t)
	ctx := testCtx(t)
	w := NewWatcher(NewPool())
	t.Cleanup(w.Close)
	cfg := adminConfig(f.dc)
	other := ChildDN("CN=System,"+f.dc.BaseDN, unique("VMMDKM-"))
	if _, err := f.admin.CreateContainer(ctx, other, f.tmpl, testOwner); err != nil {
		t.Fatal(err)
	}
	for key, dn := range map[string]string{"ns/a": f.dn, "ns/b": other} {
		if _, err := w.Watch(key, cfg, dn); err != nil {
			t.Fatal(err)
		}
	}
	st := waitMode(t, w, "ns/a", WatchLive)
	if st.Endpoint != f.dc.URL || st.Detail != "" {
		t.Fatalf("state = %v", st)
	}
	if s := w.Stats(); s.Searches != 2 || s.Connections != 1 {
		t.Fatalf("stats = %+v, want 2 searches (CN=System subtree, Deleted Objects) on 1 connection", s)
	}
	expectKeys(t, w, "ns/a", "ns/b") // the full observe after the searches opened

	mgr, err := f.admin.CreateManager(ctx, f.dn, newManagerGUID(t), testOwner)
	if err != nil {
		t.Fatal(err)
	}
	expectKeys(t, w, "ns/a")
	key, err := f.admin.AddKey(ctx, mgr.DN, "00000000-0000-4000-8000-00000000000a", []byte("not a real key, 32 bytes long..."), testOwner)
	if err != nil {
		t.Fatal(err)
	}
	expectKeys(t, w, "ns/a")
	conn, err := f.dc.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	settle(w)
	mod := ldap.NewModifyRequest(other, nil)
	mod.Replace("description", []string{"touched"})
	if err := conn.Modify(mod); err != nil {
		t.Fatal(err)
	}
	expectKeys(t, w, "ns/b")
	settle(w)
	if err := conn.Del(ldap.NewDelRequest(key.DN, nil)); err != nil {
		t.Fatal(err)
	}
	expectKeys(t, w, "ns/a") // by its tombstone in Deleted Objects
}

func TestWatcherStaysWithinMaxNotificationPerConnOnSamba(t *testing.T) {
	dc := needDC(t)
	ctx := testCtx(t)
	admin := newTestClient(t, adminConfig(dc))
	tmpl := newDKMFixture(t).tmpl
	w := NewWatcher(NewPool())
	t.Cleanup(w.Close)
	// Seven parents: seven subtree searches and Deleted Objects, over the limit of five.
	for i := range 7 {
		parent := ChildDN("CN=System,"+dc.BaseDN, unique("WatchParent-"))
		if _, err := admin.CreateContainer(ctx, parent, tmpl, testOwner); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Watch(fmt.Sprintf("ns/%d", i), adminConfig(dc), ChildDN(parent, "DKM")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for s := w.Stats(); s.Containers[WatchLive] != 7 || s.Searches != 8; s = w.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("stats = %+v, state of one: %v; want 7 live on 8 searches", s, w.State("ns/0"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a refusal would end a search by now
	if s := w.Stats(); s.Searches != 8 || s.Connections != 2 || s.Containers[WatchLive] != 7 {
		t.Fatalf("stats = %+v, want 8 searches on 2 connections, all live", s)
	}
}

// settle lets the notifications of the operator-side writes just made arrive, and drops them.
func settle(w *Watcher) {
	time.Sleep(300 * time.Millisecond)
	drain(w)
}
