package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Unit tests of the Watcher's planning, fan-out and reconnect logic against a fake DC that
// speaks notification searches the way Samba does (measured: conn_samba_test.go's neighbours
// and test/watch prove the real thing).

const base = "DC=demo,DC=local"

func TestPlanSearches(t *testing.T) {
	sys := "CN=System," + base
	deleted := notifySearch{base: "CN=Deleted Objects," + base, scope: ldap.ScopeSingleLevel, deleted: true}
	sub := func(dn string) notifySearch { return notifySearch{base: dn, scope: ldap.ScopeWholeSubtree} }
	tests := []struct {
		name       string
		containers []string
		want       []notifySearch
	}{
		{"none", nil, nil},
		{"one parent for many containers", []string{"CN=A," + sys, "CN=B," + sys, "cn=c,cn=system,dc=demo,dc=local"},
			[]notifySearch{deleted, sub(sys)}},
		{"a container right below the domain root is watched itself", []string{"CN=Top," + base},
			[]notifySearch{deleted, sub("CN=Top," + base)}},
		{"a parent inside another parent's subtree adds nothing", []string{"CN=A," + sys, "CN=B,CN=A," + sys},
			[]notifySearch{deleted, sub(sys)}},
		{"two parents", []string{"CN=A," + sys, "CN=K,OU=Keys," + base},
			[]notifySearch{deleted, sub(sys), sub("OU=Keys," + base)}},
		{"two domains", []string{"CN=A," + sys, "CN=A,CN=System,DC=other,DC=local"},
			[]notifySearch{deleted, {base: "CN=Deleted Objects,DC=other,DC=local", scope: ldap.ScopeSingleLevel, deleted: true},
				sub(sys), sub("CN=System,DC=other,DC=local")}},
		{"a DN that does not parse is skipped", []string{"CN=A," + sys, "not a dn"},
			[]notifySearch{deleted, sub(sys)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := planSearches(tt.containers); !slices.Equal(got, tt.want) {
				t.Errorf("planSearches(%q)\n got %+v\nwant %+v", tt.containers, got, tt.want)
			}
		})
	}
}

func TestChangedDN(t *testing.T) {
	tests := []struct {
		name, dn, lkp, want string
	}{
		{"a live object", "CN=k1,CN=DC Manager 1,CN=A,CN=System," + base, "", "CN=k1,CN=DC Manager 1,CN=A,CN=System," + base},
		{"a tombstone is where it was", `CN=k1\0ADEL:862b3a9f-4c02-4dc1-8b89-7e4cd7fa1693,CN=Deleted Objects,` + base,
			"CN=DC Manager 1,CN=A,CN=System," + base, "CN=k1,CN=DC Manager 1,CN=A,CN=System," + base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := ldap.NewEntry(tt.dn, map[string][]string{})
			if tt.lkp != "" {
				e = ldap.NewEntry(tt.dn, map[string][]string{"lastKnownParent": {tt.lkp}})
			}
			got, ok := changedDN(e)
			want, _ := ldap.ParseDN(tt.want)
			if !ok || !got.EqualFold(want) {
				t.Errorf("changedDN = %v, %v; want %s", got, ok, tt.want)
			}
		})
	}
}

func TestWatcherFanOut(t *testing.T) {
	dc := newFakeNotifyDC()
	w := newTestWatcher(t, dc)
	a, b, c := "CN=A,CN=System,"+base, "CN=B,CN=System,"+base, "CN=C,OU=Keys,"+base
	watch(t, w, "ns/a", a)
	watch(t, w, "ns/b", b)
	watch(t, w, "ns/c", c)
	waitMode(t, w, "ns/a", WatchLive)
	drain(w)
	if st := w.Stats(); st.Searches != 3 || st.Connections != 1 || st.Containers[WatchLive] != 3 {
		t.Fatalf("stats = %+v, want 3 searches (CN=System, OU=Keys, Deleted Objects) on 1 connection, 3 live", st)
	}

	dc.change("CN=k1,CN=DC Manager 1," + a)
	expectKeys(t, w, "ns/a")
	dc.change(b)
	expectKeys(t, w, "ns/b")
	dc.change("CN=k1,CN=DC Manager 1," + c)
	expectKeys(t, w, "ns/c")
	dc.remove("CN=k1,CN=DC Manager 1," + a)
	expectKeys(t, w, "ns/a")
	dc.remove(c)
	expectKeys(t, w, "ns/c")
	dc.change("CN=RID Set,CN=System," + base)
	dc.change("CN=AB,CN=System," + base) // a sibling whose name starts like A's
	expectNoKeys(t, w)
}

func TestWatcherPacksSearchesWithinTheLimit(t *testing.T) {
	dc := newFakeNotifyDC()
	w := newTestWatcher(t, dc)
	for i := range 7 {
		watch(t, w, fmt.Sprintf("ns/%d", i), fmt.Sprintf("CN=DKM,OU=ou%d,%s", i, base))
	}
	waitStats(t, w, func(st WatchStats) bool { return st.Containers[WatchLive] == 7 && st.Searches == 8 })
	if st := w.Stats(); st.Searches != 8 || st.Connections != 2 {
		t.Fatalf("stats = %+v, want 8 searches on 2 connections", st)
	}
	if max := dc.maxPerConn(); max > MaxNotificationsPerConn {
		t.Fatalf("a connection holds %d notification searches, over the limit %d", max, MaxNotificationsPerConn)
	}
}

func TestWatcherReconnectsAndReportsEveryContainer(t *testing.T) {
	dc := newFakeNotifyDC()
	w := newTestWatcher(t, dc)
	watch(t, w, "ns/a", "CN=A,CN=System,"+base)
	watch(t, w, "ns/b", "CN=B,CN=System,"+base)
	waitMode(t, w, "ns/a", WatchLive)
	expectKeys(t, w, "ns/a", "ns/b") // the full observe after the searches opened

	dc.setDown(true)
	dc.dropAll()
	waitMode(t, w, "ns/a", WatchConnecting)
	expectKeys(t, w, "ns/a", "ns/b") // their conditions now say so
	if st := w.Stats(); st.Searches != 0 || st.Connections != 0 {
		t.Fatalf("stats while down = %+v, want nothing open", st)
	}
	time.Sleep(50 * time.Millisecond) // several backoffs
	dc.setDown(false)
	waitMode(t, w, "ns/a", WatchLive)
	expectKeys(t, w, "ns/a", "ns/b") // what changed while down is seen by this observe
	if dc.dialCount() < 3 {
		t.Fatalf("dials = %d, want the first, at least one failed retry and the reconnect", dc.dialCount())
	}
}

func TestWatcherNeverRetriesARefusedBind(t *testing.T) {
	dc := newFakeNotifyDC()
	dc.dialErr = &Error{Op: "bind", Kind: KindInvalidCredentials, Err: errors.New("invalid credentials")}
	w := newTestWatcher(t, dc)
	st := watch(t, w, "ns/a", "CN=A,CN=System,"+base)
	if st.Mode != WatchConnecting {
		t.Fatalf("first state = %v, want connecting", st)
	}
	waitMode(t, w, "ns/a", WatchUnavailable)
	time.Sleep(50 * time.Millisecond)
	if n := dc.dialCount(); n != 1 {
		t.Fatalf("binds = %d, want 1: a refused bind is not retried (lockout)", n)
	}
}

func TestWatcherRefusedNotification(t *testing.T) {
	refused := &ldap.Error{ResultCode: ldap.LDAPResultUnwillingToPerform, Err: errors.New("subtree notification refused")}
	t.Run("on a container's parent: unavailable, resync only", func(t *testing.T) {
		dc := newFakeNotifyDC()
		dc.refuse["CN=System,"+base] = refused
		w := newTestWatcher(t, dc)
		watch(t, w, "ns/a", "CN=A,CN=System,"+base)
		st := waitMode(t, w, "ns/a", WatchUnavailable)
		if !strings.Contains(st.Detail, "refused change notification on CN=System") {
			t.Fatalf("detail = %q", st.Detail)
		}
	})
	t.Run("on Deleted Objects: live without it, and says so", func(t *testing.T) {
		dc := newFakeNotifyDC()
		dc.refuse["CN=Deleted Objects,"+base] = &ldap.Error{ResultCode: ldap.LDAPResultInsufficientAccessRights, Err: errors.New("no access")}
		w := newTestWatcher(t, dc)
		watch(t, w, "ns/a", "CN=A,CN=System,"+base)
		st := waitMode(t, w, "ns/a", WatchLive)
		for st.Detail == "" {
			time.Sleep(5 * time.Millisecond)
			st = w.State("ns/a")
		}
		if !strings.Contains(st.Detail, "deletions") || w.Stats().Searches != 1 {
			t.Fatalf("state = %v, stats = %+v; want live on one search, deletions at the resync", st, w.Stats())
		}
	})
}

func TestWatcherForgetClosesTheLastConnection(t *testing.T) {
	dc := newFakeNotifyDC()
	var mu sync.Mutex
	var published WatchStats
	w := newTestWatcher(t, dc, WithWatchObserver(func(st WatchStats) {
		mu.Lock()
		defer mu.Unlock()
		published = st
	}))
	watch(t, w, "ns/a", "CN=A,CN=System,"+base)
	watch(t, w, "ns/b", "CN=B,OU=Keys,"+base)
	waitStats(t, w, func(st WatchStats) bool { return st.Searches == 3 })
	w.Forget("ns/b")
	waitStats(t, w, func(st WatchStats) bool { return st.Searches == 2 && st.Containers[WatchLive] == 1 })
	w.Forget("ns/a")
	waitStats(t, w, func(st WatchStats) bool { return st.Searches == 0 && st.Connections == 0 && dc.openConns() == 0 })
	if st := w.State("ns/a"); st.Mode != WatchNone {
		t.Fatalf("state after Forget = %v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if published.Searches != 0 || published.Connections != 0 || published.Containers[WatchLive] != 0 {
		t.Fatalf("the metrics were last told %+v, want nothing open", published)
	}
}

// --- helpers and the fake DC ---

func newTestWatcher(t *testing.T, dc *fakeNotifyDC, opts ...WatchOption) *Watcher {
	t.Helper()
	p := NewPool()
	t.Cleanup(p.Close)
	opts = append([]WatchOption{withWatchDialer(dc.dial), WithWatchBackoff(2*time.Millisecond, 10*time.Millisecond)}, opts...)
	w := NewWatcher(p, opts...)
	t.Cleanup(w.Close)
	return w
}

func watch(t *testing.T, w *Watcher, key, dn string) WatchState {
	t.Helper()
	st, err := w.Watch(key, Config{URLs: []string{"ldaps://dc.test"}, Username: "op@demo.local", Password: "pw"}, dn)
	if err != nil {
		t.Fatalf("Watch(%s): %v", key, err)
	}
	return st
}

func waitMode(t *testing.T, w *Watcher, key string, mode WatchMode) WatchState {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := w.State(key)
		if st.Mode == mode {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: state %v, want %v", key, st, mode)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitStats(t *testing.T, w *Watcher, ok func(WatchStats) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(w.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", w.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

func drain(w *Watcher) {
	for {
		select {
		case <-w.Events():
		case <-time.After(20 * time.Millisecond):
			return
		}
	}
}

// expectKeys waits until every wanted key was reported (and no other).
func expectKeys(t *testing.T, w *Watcher, want ...string) {
	t.Helper()
	got := map[string]bool{}
	timeout := time.After(5 * time.Second)
	for len(got) < len(want) {
		select {
		case k := <-w.Events():
			if !slices.Contains(want, k) {
				t.Fatalf("event for %s, want only %q", k, want)
			}
			got[k] = true
		case <-timeout:
			t.Fatalf("events %v, want %q", got, want)
		}
	}
	drain(w)
}

func expectNoKeys(t *testing.T, w *Watcher) {
	t.Helper()
	select {
	case k := <-w.Events():
		t.Fatalf("unexpected event for %s", k)
	case <-time.After(50 * time.Millisecond):
	}
}

// fakeNotifyDC answers notification searches like Samba: a subtree search sees adds and
// modifies below its base, a deletion shows only as a tombstone in Deleted Objects.
type fakeNotifyDC struct {
	mu      sync.Mutex
	dialErr error
	down    bool
	dials   int
	refuse  map[string]error
	conns   []*fakeNotifyConn
}

func newFakeNotifyDC() *fakeNotifyDC { return &fakeNotifyDC{refuse: map[string]error{}} }

func (dc *fakeNotifyDC) dial(ctx context.Context, c *Client) (notifyConn, string, error) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	dc.dials++
	if dc.dialErr != nil {
		return nil, "", dc.dialErr
	}
	if dc.down {
		return nil, "", &Error{Op: "dial", Kind: KindTransient, Err: errors.New("connection refused")}
	}
	conn := &fakeNotifyConn{dc: dc}
	dc.conns = append(dc.conns, conn)
	return conn, "ldaps://dc.test", nil
}

func (dc *fakeNotifyDC) dialCount() int {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	return dc.dials
}

func (dc *fakeNotifyDC) setDown(down bool) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	dc.down = down
}

func (dc *fakeNotifyDC) openConns() int {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	n := 0
	for _, c := range dc.conns {
		if !c.closed {
			n++
		}
	}
	return n
}

func (dc *fakeNotifyDC) maxPerConn() int {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	max := 0
	for _, c := range dc.conns {
		if len(c.searches) > max {
			max = len(c.searches)
		}
	}
	return max
}

// dropAll ends every connection as a DC restart would.
func (dc *fakeNotifyDC) dropAll() {
	dc.mu.Lock()
	conns := slices.Clone(dc.conns)
	dc.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// change notifies the subtree searches whose base holds dn.
func (dc *fakeNotifyDC) change(dn string) {
	parsed, _ := ldap.ParseDN(dn)
	dc.deliver(func(s *fakeSearch) bool {
		b, _ := ldap.ParseDN(s.req.BaseDN)
		return !s.deleted() && within(parsed, b)
	}, ldap.NewEntry(dn, map[string][]string{}))
}

// remove deletes dn: a tombstone appears in Deleted Objects.
func (dc *fakeNotifyDC) remove(dn string) {
	parsed, _ := ldap.ParseDN(dn)
	rdn := parsed.RDNs[0].Attributes[0]
	parent := FormatDN(&ldap.DN{RDNs: parsed.RDNs[1:]})
	tomb := fmt.Sprintf(`%s=%s\0ADEL:0b8e4b7e-1111-2222-3333-444455556666,CN=Deleted Objects,%s`, rdn.Type, rdn.Value, base)
	dc.deliver(func(s *fakeSearch) bool { return s.deleted() },
		ldap.NewEntry(tomb, map[string][]string{"lastKnownParent": {parent}, "isDeleted": {"TRUE"}}))
}

func (dc *fakeNotifyDC) deliver(match func(*fakeSearch) bool, e *ldap.Entry) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	for _, c := range dc.conns {
		for _, s := range c.searches {
			if !c.closed && match(s) {
				s.entries <- e
			}
		}
	}
}

type fakeNotifyConn struct {
	dc       *fakeNotifyDC
	closed   bool
	searches []*fakeSearch
}

func (c *fakeNotifyConn) SearchAsync(ctx context.Context, req *ldap.SearchRequest, _ int) ldap.Response {
	s := &fakeSearch{ctx: ctx, req: req, entries: make(chan *ldap.Entry, 64), end: make(chan error, 1)}
	c.dc.mu.Lock()
	defer c.dc.mu.Unlock()
	if err := c.dc.refuse[req.BaseDN]; err != nil {
		s.end <- err
		return s
	}
	if len(c.searches) >= MaxNotificationsPerConn {
		s.end <- &ldap.Error{ResultCode: ldap.LDAPResultAdminLimitExceeded, Err: errors.New("MaxNotificationPerConn reached")}
		return s
	}
	c.searches = append(c.searches, s)
	return s
}

func (c *fakeNotifyConn) Search(*ldap.SearchRequest) (*ldap.SearchResult, error) {
	c.dc.mu.Lock()
	defer c.dc.mu.Unlock()
	if c.closed {
		return nil, ldap.NewError(ldap.ErrorNetwork, errors.New("connection closed"))
	}
	return &ldap.SearchResult{}, nil
}

func (c *fakeNotifyConn) Close() error {
	c.dc.mu.Lock()
	defer c.dc.mu.Unlock()
	if !c.closed {
		c.closed = true
		for _, s := range c.searches {
			s.end <- ldap.NewError(ldap.ErrorNetwork, errors.New("connection closed"))
		}
	}
	return nil
}

type fakeSearch struct {
	ctx     context.Context
	req     *ldap.SearchRequest
	entries chan *ldap.Entry
	end     chan error
	entry   *ldap.Entry
	err     error
}

func (s *fakeSearch) deleted() bool { return strings.HasPrefix(s.req.BaseDN, "CN=Deleted Objects,") }

func (s *fakeSearch) Next() bool {
	select {
	case e := <-s.entries:
		s.entry = e
		return true
	case err := <-s.end:
		s.err = err
	case <-s.ctx.Done():
	}
	return false
}

func (s *fakeSearch) Entry() *ldap.Entry       { return s.entry }
func (s *fakeSearch) Referral() string         { return "" }
func (s *fakeSearch) Controls() []ldap.Control { return nil }
func (s *fakeSearch) Err() error               { return s.err }
