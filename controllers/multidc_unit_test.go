package controllers

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// Unit tests of multidc.go: the policy functions, and the reconciler against a replicatedAD of
// several fake DCs with explicit replication. The same behaviour is tested against two real
// replicating Samba DCs in multidc_test.go.

func TestChooseWriteDC(t *testing.T) {
	dc := func(name string) string { return ntdsSettings(name) }
	ok := func(name, pdc string) dcProbe {
		return dcProbe{info: directory.ServerInfo{ServiceName: dc(name), PDC: pdc}}
	}
	down := dcProbe{err: errors.New("connection refused")}
	cases := []struct {
		name    string
		probes  []dcProbe
		want    int
		wantPDC bool
		wantOK  bool
	}{
		{"the first URL is the PDC", []dcProbe{ok("DC1", dc("DC1")), ok("DC2", dc("DC1"))}, 0, true, true},
		{"the PDC is listed second", []dcProbe{ok("DC1", dc("DC2")), ok("DC2", dc("DC2"))}, 1, true, true},
		{"the PDC is compared as a DN, not as a string", []dcProbe{ok("DC1", strings.ToLower(dc("DC2"))), ok("DC2", "")}, 1, true, true},
		{"the PDC does not answer: the first that does", []dcProbe{down, ok("DC2", dc("DC1")), ok("DC3", dc("DC1"))}, 1, false, true},
		{"the PDC is not among the URLs", []dcProbe{ok("DC2", dc("DC9")), ok("DC3", dc("DC9"))}, 0, false, true},
		{"fSMORoleOwner unreadable", []dcProbe{ok("DC1", ""), ok("DC2", "")}, 0, false, true},
		{"nobody answers", []dcProbe{down, down}, -1, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			i, pdc, ok := chooseWriteDC(tc.probes)
			if i != tc.want || pdc != tc.wantPDC || ok != tc.wantOK {
				t.Errorf("chooseWriteDC = %d, pdc %v, ok %v; want %d, %v, %v", i, pdc, ok, tc.want, tc.wantPDC, tc.wantOK)
			}
		})
	}
}

func TestLacking(t *testing.T) {
	g := func(b byte) secdesc.GUID { return secdesc.GUID{b} }
	key := func(id string, guid byte) directory.KeyObject {
		return directory.KeyObject{Object: directory.Object{GUID: g(guid)}, ID: id}
	}
	obs := func(container byte, managers ...directory.Manager) *directory.Observation {
		return &directory.Observation{Exists: true, Container: directory.Object{DN: "CN=VMMDKM", GUID: g(container)}, Managers: managers}
	}
	mgr := func(guid byte, ks ...directory.KeyObject) directory.Manager {
		return directory.Manager{Object: directory.Object{DN: "CN=DC Manager", GUID: g(guid)}, Keys: ks}
	}
	cases := []struct {
		name        string
		base, other *directory.Observation
		want        []string
	}{
		{"same layout", obs(1, mgr(2, key("k1", 3))), obs(1, mgr(2, key("k1", 3))), nil},
		{"the other lags behind", obs(1, mgr(2, key("k1", 3), key("k2", 4))), obs(1, mgr(2, key("k1", 3))), nil},
		{"the other has no container yet", obs(1, mgr(2)), &directory.Observation{}, nil},
		{"the other holds a key this one lacks", obs(1, mgr(2, key("k1", 3))), obs(1, mgr(2, key("k1", 3), key("k2", 4))), []string{"key k2"}},
		{"the other holds a DC Manager this one lacks", obs(1), obs(1, mgr(2, key("k1", 3))), []string{"CN=DC Manager", "key k1"}},
		{"this one lacks the container", &directory.Observation{}, obs(1), []string{"container CN=VMMDKM"}},
		{"a namesake container", obs(1), obs(9), []string{"another container CN=VMMDKM (objectGUID " + g(9).String() + ")"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := lacking(tc.base, tc.other); !slices.Equal(got, tc.want) {
				t.Errorf("lacking = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSplitPending(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	key := func(id string, at time.Duration) directory.KeyObject {
		return directory.KeyObject{Object: directory.Object{Created: t0.Add(at)}, ID: id}
	}
	ids := func(ks []directory.KeyObject) []string {
		out := []string{}
		for _, k := range ks {
			out = append(out, k.ID)
		}
		return out
	}
	cases := []struct {
		name                       string
		active                     string
		recorded                   []string
		keys                       []directory.KeyObject
		wantCommitted, wantPending []string
	}{
		{"no CryptoPolicy", "", nil, []directory.KeyObject{key("a", 0), key("b", time.Hour)}, []string{"a", "b"}, []string{}},
		{"the newest is active", "b", nil, []directory.KeyObject{key("a", 0), key("b", time.Hour)}, []string{"a", "b"}, []string{}},
		{"a rotation waits", "a", []string{"a"}, []directory.KeyObject{key("a", 0), key("b", time.Hour)}, []string{"a"}, []string{"b"}},
		{"same second: a race, not a rotation", "b", nil, []directory.KeyObject{key("a", 0), key("b", 0)}, []string{"a", "b"}, []string{}},
		{"CryptoPolicy names no key here", "x", nil, []directory.KeyObject{key("a", 0)}, []string{"a"}, []string{}},
		// A restore wrote an older version after the active one: status recorded it, so it is
		// no rotation waiting to be activated.
		{"a recorded version written after the active one", "b", []string{"a", "b"},
			[]directory.KeyObject{key("b", 0), key("a", time.Second)}, []string{"b", "a"}, []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &directory.Manager{Keys: tc.keys}
			if tc.active != "" {
				m.Policy = &directory.PolicyObject{ActiveKeyID: tc.active}
			}
			c, p := splitPending(m, tc.recorded)
			if !slices.Equal(ids(c), tc.wantCommitted) || !slices.Equal(ids(p), tc.wantPending) {
				t.Errorf("committed %v, pending %v; want %v, %v", ids(c), ids(p), tc.wantCommitted, tc.wantPending)
			}
		})
	}
}

func TestDurabilityNote(t *testing.T) {
	obj := func(copies *int32, urls ...string) *dkmv1.DKMContainer {
		return &dkmv1.DKMContainer{Spec: dkmv1.DKMContainerSpec{Directory: dkmv1.DirectorySpec{URLs: urls, MinKeyCopies: copies}}}
	}
	for _, tc := range []struct {
		obj  *dkmv1.DKMContainer
		want string
	}{
		{obj(nil, "a"), "1 DC only"},
		{obj(nil, "a", "b"), "2 of 2 DCs"},
		{obj(ptr.To[int32](1), "a", "b"), "minKeyCopies: 1"},
		{obj(ptr.To[int32](2), "a", "b", "c"), "2 of 3 DCs"},
	} {
		if got := durabilityNote(tc.obj); !strings.Contains(got, tc.want) {
			t.Errorf("%v: %q lacks %q", tc.obj.Spec.Directory, got, tc.want)
		}
	}
}

// newMultiDCCluster is a pwCluster whose DKMContainer lists every DC of dom.
func newMultiDCCluster(t *testing.T, dom *replicatedAD, clock *pwClock, opt pwOptions) *pwCluster {
	t.Helper()
	mutate := opt.mutate
	opt.mutate = func(o *dkmv1.DKMContainer) {
		o.Spec.Directory.URLs = slices.Clone(dom.urls)
		if mutate != nil {
			mutate(o)
		}
	}
	c := newPWCluster(t, dom.dc(1), clock, opt)
	c.r.Directories = dom.factory(t)
	c.r.CommitRetry = time.Second
	return c
}

// callsOf snapshots every DC's calls by method.
func callsOf(dom *replicatedAD) []map[string]int {
	out := make([]map[string]int, len(dom.dcs))
	for i, dc := range dom.dcs {
		dc.mu.Lock()
		out[i] = maps.Clone(dc.calls)
		dc.mu.Unlock()
	}
	return out
}

// callsSince is what each DC was asked since before.
func callsSince(dom *replicatedAD, before []map[string]int) []map[string]int {
	now := callsOf(dom)
	for i := range now {
		for m, n := range before[i] {
			if now[i][m] -= n; now[i][m] == 0 {
				delete(now[i], m)
			}
		}
	}
	return now
}

// expectNoWrites fails when any DC of dom received a write call.
func expectNoWrites(t *testing.T, what string, dom *replicatedAD, before []map[string]int) {
	t.Helper()
	for i, calls := range callsSince(dom, before) {
		for _, m := range adWriteMethods {
			if calls[m] > 0 {
				t.Fatalf("%s: DC%d received %v", what, i+1, calls)
			}
		}
	}
}

// expectWaiting checks that cond is False with reason and that no DC received a write since
// before: a transient wait.
func expectWaiting(t *testing.T, c *pwCluster, dom *replicatedAD, before []map[string]int, cond, reason, what string) {
	t.Helper()
	c.expectCond(cond, metav1.ConditionFalse, reason)
	expectNoWrites(t, what, dom, before)
}

// expectServing checks that the KeyStore serves id as the active key.
func expectServing(t *testing.T, c *pwCluster, id, what string) {
	t.Helper()
	if ring := c.r.Keys.Get(c.key); ring == nil || ring.ActiveID().String() != id {
		t.Fatalf("%s: the KeyStore holds %v, want active key %s", what, ring, id)
	}
}

// A first key on two DCs: written on the PDC, it is not active (no CryptoPolicy), not in status
// and not in the KeyStore until the second DC holds it; then it is, and the steady state reads
// one DC once.
func TestMultiDCFirstKeyWaitsForReplication(t *testing.T) {
	clock := newPWClock()
	dom := newReplicatedAD(clock.now, 2)
	c := newMultiDCCluster(t, dom, clock, pwOptions{})

	c.mustReconcile()
	c.expectCond(dkmv1.ConditionDirectoryReachable, metav1.ConditionTrue, dkmv1.ReasonReady)
	if msg := c.cond(dkmv1.ConditionDirectoryReachable).Message; !strings.Contains(msg, "ldaps://dc1.demo.local (DC1, the PDC emulator)") {
		t.Errorf("DirectoryReachable does not name the DC in use: %q", msg)
	}
	got := c.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionFalse, dkmv1.ReasonKeyNotReplicated)
	if !strings.Contains(got.Message, "is on ldaps://dc1.demo.local;") || !strings.Contains(got.Message, "2 of the 2") {
		t.Errorf("KeyNotReplicated does not name the DC that holds the key: %q", got.Message)
	}
	expectWriteCalls(t, "DC1 after the first pass", dom.dc(1), map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1})
	expectWriteCalls(t, "DC2 after the first pass", dom.dc(2), nil)
	expectLayout(t, "DC1 before replication", dom.dc(1), 1, 1, false)
	if st := c.get().Status; st.ActiveKeyID != "" || len(st.Keys) != 0 {
		t.Fatalf("status records a key no second DC holds: %q %v", st.ActiveKeyID, st.Keys)
	}
	if ring := c.r.Keys.Get(c.key); ring != nil {
		t.Fatalf("KeyStore holds %v before replication", ring)
	}

	// Still not replicated: nothing more is written.
	before := callsOf(dom)
	c.mustReconcile()
	expectWaiting(t, c, dom, before, dkmv1.ConditionKeyReady, dkmv1.ReasonKeyNotReplicated, "waiting for replication")

	dom.replicate(1, 2)
	c.mustReconcile()
	expectWriteCalls(t, "DC1 after replication", dom.dc(1), map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1, "SetActiveKey": 1})
	expectWriteCalls(t, "DC2 after replication", dom.dc(2), nil)
	expectOneKey(t, c)
	if msg := c.cond(dkmv1.ConditionKeyReady).Message; !strings.Contains(msg, "2 of 2 DCs") {
		t.Errorf("KeyReady does not state the durability rule: %q", msg)
	}

	// Steady state: one search on the DC in use, nothing on the other, no write.
	c.mustReconcile() // the first pass after the commit re-checks every key once
	before = callsOf(dom)
	c.mustReconcile()
	delta := callsSince(dom, before)
	if delta[0]["Observe"] != 1 || len(delta[1]) != 0 {
		t.Fatalf("steady state calls: DC1 %v, DC2 %v; want one Observe on DC1 and nothing on DC2", delta[0], delta[1])
	}
	expectNoWrites(t, "steady state", dom, before)
}

// The case: the PDC stops right after the key write, before replicating it. No
// replica holds that key, the operator does not create another one on DC2, and the commit
// completes once DC1 is back and has replicated.
func TestMultiDCPDCStopsBeforeReplication(t *testing.T) {
	clock := newPWClock()
	dom := newReplicatedAD(clock.now, 2)
	c := newMultiDCCluster(t, dom, clock, pwOptions{})
	// The container replicates; the DC Manager and the key do not.
	dom.dc(1).before("CreateManager", 1, func() { dom.replicate(1, 2) })
	c.mustReconcile()
	c.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionFalse, dkmv1.ReasonKeyNotReplicated)
	keyID := firstKeyID(t, dom.dc(1))

	dom.setDown(1, true)
	before := callsOf(dom)
	if _, err := c.reconcile(); err == nil {
		t.Fatal("the DC in use stopped and the reconcile did not fail")
	}
	for range 3 {
		c.reconcile()
		if c.r.Keys.Get(c.key) != nil {
			t.Fatal("a key reached the KeyStore while one DC holds it")
		}
	}
	got := c.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionFalse, dkmv1.ReasonDCUnavailable)
	if !strings.Contains(got.Message, "ldaps://dc1.demo.local") {
		t.Errorf("DCUnavailable does not name the DC: %q", got.Message)
	}
	if msg := c.cond(dkmv1.ConditionDirectoryReachable).Message; !strings.Contains(msg, "ldaps://dc2.demo.local (DC2, the first") {
		t.Errorf("DirectoryReachable does not name the fallback DC: %q", msg)
	}
	expectNoWrites(t, "DC1 down", dom, before)
	expectLayout(t, "DC2 while DC1 is down", dom.dc(2), 0, 0, false)

	// DC1 is back but has not replicated: DC2 (still in use) lacks what DC1 holds.
	dom.setDown(1, false)
	c.mustReconcile()
	expectWaiting(t, c, dom, before, dkmv1.ConditionKeyReady, dkmv1.ReasonReplicationLag, "DC1 back, not replicated")

	// Back on the PDC once the fallback choice expires; the commit completes after replication.
	clock.advance(2 * DefaultRetry)
	c.mustReconcile()
	c.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionFalse, dkmv1.ReasonKeyNotReplicated)
	dom.replicate(1, 2)
	c.mustReconcile()
	if got := expectOneKey(t, c); got != keyID {
		t.Fatalf("active key %s, want the one written before the outage, %s", got, keyID)
	}
	expectWriteCalls(t, "DC2", dom.dc(2), nil)
	expectWriteCalls(t, "DC1", dom.dc(1), map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1, "SetActiveKey": 1})
}

// Failover to a DC that lags (minKeyCopies 1, so the key was recorded while on DC1 only): no
// KeyLost, no write, whether DC1 is down or up and not yet replicated.
func TestMultiDCFailoverToLaggingDC(t *testing.T) {
	clock := newPWClock()
	dom := newReplicatedAD(clock.now, 2)
	c := newMultiDCCluster(t, dom, clock, pwOptions{mutate: func(o *dkmv1.DKMContainer) {
		o.Spec.Directory.MinKeyCopies = ptr.To[int32](1)
	}})
	c.mustReconcile()
	id := expectOneKey(t, c)
	if msg := c.cond(dkmv1.ConditionKeyReady).Message; !strings.Contains(msg, "minKeyCopies: 1") {
		t.Errorf("KeyReady does not say a key is used once on 1 DC: %q", msg)
	}

	dom.setDown(1, true)
	before := callsOf(dom)
	c.reconcile() // the DC in use fails
	for range 3 {
		res, err := c.reconcile()
		if err != nil || res.RequeueAfter <= 0 {
			t.Fatalf("reconcile on the lagging DC: %+v, %v", res, err)
		}
		if r := c.cond(dkmv1.ConditionContainerReady).Reason; r == dkmv1.ReasonKeyLost || c.cond(dkmv1.ConditionKeyReady).Reason == dkmv1.ReasonKeyLost {
			t.Fatalf("KeyLost on a lagging DC: %s", c.conditions())
		}
	}
	expectWaiting(t, c, dom, before, dkmv1.ConditionContainerReady, dkmv1.ReasonDCUnavailable, "failover to the lagging DC")
	expectServing(t, c, id, "during the outage")

	dom.setDown(1, false)
	c.reconcile()
	expectWaiting(t, c, dom, before, dkmv1.ConditionContainerReady, dkmv1.ReasonReplicationLag, "DC1 back, DC2 lagging")

	dom.replicate(1, 2)
	c.mustReconcile()
	c.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionTrue, dkmv1.ReasonReady)
	expectNoWrites(t, "after replication", dom, before)
}

// A rotation is written only when every DC answers, and activated only once replicated; a
// reader meanwhile never receives the new key.
func TestMultiDCRotation(t *testing.T) {
	const period = 24 * time.Hour
	clock := newPWClock()
	dom := newReplicatedAD(clock.now, 2)
	rotate := func(o *dkmv1.DKMContainer) {
		o.Spec.Rotation = &dkmv1.RotationSpec{Period: &metav1.Duration{Duration: period}}
	}
	c := newMultiDCCluster(t, dom, clock, pwOptions{mutate: rotate})
	c.mustReconcile()
	dom.replicate(1, 2)
	c.mustReconcile()
	oldID := expectOneKey(t, c)
	reader := newMultiDCCluster(t, dom, clock, pwOptions{cluster: "other", kek: c.kek})
	reader.mustReconcile()
	managerDN := dom.dc(1).layout(pwPath).Managers[0]

	// Due while DC2 is down: nothing is written.
	clock.advance(period + time.Hour)
	dom.setDown(2, true)
	before := callsOf(dom)
	c.mustReconcile()
	expectWaiting(t, c, dom, before, dkmv1.ConditionKeyReady, dkmv1.ReasonDCUnavailable, "rotation due, DC2 down")
	expectServing(t, c, oldID, "rotation due, DC2 down")

	// DC2 back: the new version is added, not activated until DC2 holds it.
	dom.setDown(2, false)
	c.mustReconcile()
	c.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionFalse, dkmv1.ReasonKeyNotReplicated)
	l := expectLayout(t, "rotation written", dom.dc(1), 1, 2, true)
	if l.Policy[managerDN] != oldID || c.get().Status.ActiveKeyID != oldID {
		t.Fatalf("the rotated key is active before replication: policy %s, status %s", l.Policy[managerDN], c.get().Status.ActiveKeyID)
	}
	if ring := c.r.Keys.Get(c.key); ring == nil || ring.Len() != 1 {
		t.Fatalf("KeyStore %v, want only the committed key", ring)
	}
	reader.mustReconcile()
	if ring := reader.r.Keys.Get(reader.key); ring == nil || ring.Len() != 1 || ring.ActiveID().String() != oldID {
		t.Fatalf("a reader received the unreplicated key: %v", ring)
	}
	c.mustReconcile() // still waiting: the rotation is resumed, not repeated
	expectLayout(t, "rotation pending", dom.dc(1), 1, 2, true)

	dom.replicate(1, 2)
	c.mustReconcile()
	c.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionTrue, dkmv1.ReasonReady)
	if st := c.get().Status; st.ActiveKeyID == oldID || len(st.Keys) != 2 {
		t.Fatalf("after replication: active %s with %d versions", st.ActiveKeyID, len(st.Keys))
	}
	expectWriteCalls(t, "DC1", dom.dc(1), map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 2, "SetActiveKey": 2})
}

// Writers use the PDC emulator wherever it is listed.
func TestMultiDCWritesGoToThePDC(t *testing.T) {
	clock := newPWClock()
	dom := newReplicatedAD(clock.now, 2)
	dom.pdc = ntdsSettings("DC2")
	c := newMultiDCCluster(t, dom, clock, pwOptions{})
	c.mustReconcile()
	if msg := c.cond(dkmv1.ConditionDirectoryReachable).Message; !strings.Contains(msg, "ldaps://dc2.demo.local (DC2, the PDC emulator)") {
		t.Errorf("DirectoryReachable: %q", msg)
	}
	expectWriteCalls(t, "DC1", dom.dc(1), nil)
	expectWriteCalls(t, "DC2", dom.dc(2), map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1})
}

// A replication conflict object (a DC Manager renamed by AD, with a key inside) is reported
// with what its record says, never used, never deleted.
func TestMultiDCConflictObjectsReportedAndIgnored(t *testing.T) {
	clock := newPWClock()
	dom := newReplicatedAD(clock.now, 2)
	c := newMultiDCCluster(t, dom, clock, pwOptions{})
	c.mustReconcile()
	dom.replicate(1, 2)
	c.mustReconcile()
	id := expectOneKey(t, c)

	// DC2 had accepted its own DC Manager of the same name before replicating: AD keeps one
	// and renames the other.
	managerDN := dom.dc(1).layout(pwPath).Managers[0]
	cnf := directory.ChildDN(pwPath, adCN(managerDN)+"\nCNF:"+newGUID().String())
	dom.dc(1).seed(t, cnf, "container", c.owner().String(), nil, nil)
	dom.dc(1).seed(t, directory.ChildDN(cnf, "k-conflict"), "contact", c.owner().String(), nil, func(n *adNode) {
		n.l, n.photo = "k-conflict", []byte("not a key anyone may use")
	})
	c.eventReasons()
	before := callsOf(dom)
	c.mustReconcile()
	got := c.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionTrue, dkmv1.ReasonReady)
	for _, want := range []string{"2 replication conflict object(s)", "made by this DKMContainer", "key k-conflict, never recorded"} {
		if !strings.Contains(got.Message, want) {
			t.Errorf("KeyReady message lacks %q: %q", want, got.Message)
		}
	}
	if !slices.Contains(c.eventReasons(), dkmv1.ReasonReplicationConflict) {
		t.Error("no ReplicationConflict event")
	}
	if ring := c.r.Keys.Get(c.key); ring == nil || ring.Len() != 1 || ring.ActiveID().String() != id {
		t.Fatalf("the conflict object's key was used: %v", ring)
	}
	expectNoWrites(t, "conflict reported", dom, before)
	if _, ok := dom.dc(1).lookup(cnf); !ok {
		t.Fatal("the conflict object was deleted")
	}
}

// policyMovedOnDC1Only is chaos seed 2's start: a writer and another cluster's reader, a
// rotation whose key both DCs hold, and CryptoPolicy moved to it on DC1 only (both record it).
func policyMovedOnDC1Only(t *testing.T) (dom *replicatedAD, c, reader *pwCluster, oldID, newID, managerDN string) {
	t.Helper()
	const period = 24 * time.Hour
	clock := newPWClock()
	dom = newReplicatedAD(clock.now, 2)
	rotate := func(o *dkmv1.DKMContainer) {
		o.Spec.Rotation = &dkmv1.RotationSpec{Period: &metav1.Duration{Duration: period}}
	}
	c = newMultiDCCluster(t, dom, clock, pwOptions{mutate: rotate})
	c.mustReconcile()
	dom.replicate(1, 2)
	c.mustReconcile()
	oldID = expectOneKey(t, c)
	reader = newMultiDCCluster(t, dom, clock, pwOptions{cluster: "other", kek: c.kek})
	reader.mustReconcile()

	clock.advance(period + time.Hour)
	c.mustReconcile() // the rotated key is added on DC1
	dom.replicate(1, 2)
	c.mustReconcile() // both DCs hold it: CryptoPolicy moves, on DC1 only
	newID = c.get().Status.ActiveKeyID
	if newID == oldID {
		t.Fatalf("no rotation: %s", c.conditions())
	}
	reader.mustReconcile()
	for _, x := range []*pwCluster{c, reader} {
		expectServing(t, x, newID, "after the rotation")
	}
	managerDN = dom.dc(1).layout(pwPath).Managers[0]
	if p := dom.dc(2).layout(pwPath).Policy[managerDN]; p != oldID {
		t.Fatalf("DC2's CryptoPolicy names %s, want the older %s", p, oldID)
	}
	return dom, c, reader, oldID, newID, managerDN
}

// expectServingBoth checks that the KeyStore and status keep newID active with both versions.
func expectServingBoth(t *testing.T, c *pwCluster, newID, what string) {
	t.Helper()
	if ring := c.r.Keys.Get(c.key); ring == nil || ring.ActiveID().String() != newID || ring.Len() != 2 {
		t.Fatalf("%s: the KeyStore holds %v, want active %s with both versions", what, ring, newID)
	}
	if st := c.get().Status; st.ActiveKeyID != newID || len(st.Keys) != 2 {
		t.Fatalf("%s: status active %s with %d versions, want %s with 2", what, st.ActiveKeyID, len(st.Keys), newID)
	}
}

// Chaos seed 2: a rotation's key reached both DCs, CryptoPolicy moved on DC1 only, then DC1
// stopped. On DC2 CryptoPolicy names the older key; read as is, the ring would go back to it
// and drop the new version every replica already holds. Writer and reader must keep serving
// the ring they hold, wait (naming the DCs) and write nothing.
func TestMultiDCPolicyBehindRecordedActiveKey(t *testing.T) {
	dom, c, reader, oldID, newID, _ := policyMovedOnDC1Only(t)

	dom.setDown(1, true)
	before := callsOf(dom)
	for _, x := range []struct {
		name string
		c    *pwCluster
	}{{"writer", c}, {"reader", reader}} {
		x.c.reconcile() // the DC in use fails; the next reconcile uses DC2
		for range 3 {
			x.c.reconcile()
			expectServingBoth(t, x.c, newID, x.name+" on DC2")
		}
		got := x.c.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionFalse, dkmv1.ReasonDCUnavailable)
		for _, want := range []string{"ldaps://dc2.demo.local", "ldaps://dc1.demo.local", oldID, newID} {
			if !strings.Contains(got.Message, want) {
				t.Errorf("%s: KeyReady does not name %s: %q", x.name, want, got.Message)
			}
		}
	}
	expectNoWrites(t, "CryptoPolicy behind on DC2, DC1 down", dom, before)

	// DC1 back, not replicated: its CryptoPolicy is ahead, so DC2 lags.
	dom.setDown(1, false)
	reader.reconcile()
	expectWaiting(t, reader, dom, before, dkmv1.ConditionKeyReady, dkmv1.ReasonReplicationLag, "DC1 back, DC2 lagging")
	expectServing(t, reader, newID, "DC1 back, DC2 lagging")

	dom.replicate(1, 2)
	for _, x := range []*pwCluster{c, reader} {
		x.mustReconcile()
		x.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionTrue, dkmv1.ReasonReady)
		expectServing(t, x, newID, "after replication")
	}
	expectNoWrites(t, "after replication", dom, before)
}

// The newer CryptoPolicy is gone from every DC (DC1 restored from a backup taken before the
// move): every DC answers and names the older key. The reader keeps serving and waits; the
// writer moves CryptoPolicy forward again (both DCs hold the key), never back.
func TestMultiDCPolicyBehindEverywhere(t *testing.T) {
	dom, c, reader, oldID, newID, managerDN := policyMovedOnDC1Only(t)
	if err := dom.dc(1).SetActiveKey(context.Background(), managerDN, newID, oldID, c.owner()); err != nil {
		t.Fatal(err)
	}

	before := callsOf(dom)
	reader.reconcile()
	expectWaiting(t, reader, dom, before, dkmv1.ConditionKeyReady, dkmv1.ReasonReplicationLag, "reader, policy behind everywhere")
	expectServingBoth(t, reader, newID, "reader, policy behind everywhere")

	c.mustReconcile()
	expectServingBoth(t, c, newID, "writer, policy behind everywhere")
	if p := dom.dc(1).layout(pwPath).Policy[managerDN]; p != newID {
		t.Fatalf("the writer left CryptoPolicy at %s, want %s", p, newID)
	}
	dom.replicate(1, 2)
	reader.mustReconcile()
	reader.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionTrue, dkmv1.ReasonReady)
	expectServingBoth(t, reader, newID, "reader after the writer")
}
