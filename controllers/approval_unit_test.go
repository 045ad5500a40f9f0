package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

var testOwner = directory.Owner{Cluster: "test", Namespace: "vmm", Name: "vmm", UID: "uid-test"}

// Issue 14: spec.changeApproval Manual writes nothing to AD until the DKMContainer is annotated
// with the pending plan's hash, and a changed plan needs a new approval. Every case counts the
// write calls that reached the directory.

func manualCluster(t *testing.T, dir *fakeAD, clock *pwClock, mutate func(*dkmv1.DKMContainer)) *pwCluster {
	t.Helper()
	return newPWCluster(t, dir, clock, pwOptions{mutate: func(o *dkmv1.DKMContainer) {
		o.Spec.ChangeApproval = dkmv1.ChangeApprovalManual
		if mutate != nil {
			mutate(o)
		}
	}})
}

// pending is the plan status shows as waiting; it fails the test when there is none.
func (c *pwCluster) pending() *dkmv1.PlannedChanges {
	c.t.Helper()
	ch := c.get().Status.Changes
	if ch == nil || ch.Pending == nil {
		c.t.Fatalf("no pending changes in status; conditions: %s", c.conditions())
	}
	return ch.Pending
}

func expectOps(t *testing.T, p *dkmv1.PlannedChanges, ops ...string) {
	t.Helper()
	if len(p.Changes) != len(ops) {
		t.Fatalf("plan has %d changes, want %v:\n%s", len(p.Changes), ops, strings.Join(p.Changes, "\n"))
	}
	for i, op := range ops {
		if !strings.HasPrefix(p.Changes[i], op+" ") {
			t.Fatalf("change %d is %q, want %s", i, p.Changes[i], op)
		}
	}
}

func TestManualApprovalCreate(t *testing.T) {
	clock := newPWClock()
	dir := newFakeAD(clock.now)
	c := manualCluster(t, dir, clock, nil)

	if _, err := c.reconcile(); err != nil {
		t.Fatal(err)
	}
	expectWriteCalls(t, "before approval", dir, nil)
	c.expectCond(dkmv1.ConditionContainerReady, metav1.ConditionFalse, dkmv1.ReasonChangesPendingApproval)
	plan := c.pending()
	expectOps(t, plan, OpCreateContainer, OpCreateManager, OpAddKey, OpSetActiveKey)
	if !strings.Contains(plan.Changes[0], "nTSecurityDescriptor: D:P") || !strings.Contains(plan.Changes[0], pwPath) {
		t.Fatalf("the container's change does not show its DN and protected DACL: %q", plan.Changes[0])
	}
	if got := c.event(dkmv1.ReasonChangesPendingApproval); !strings.Contains(got, plan.Hash) {
		t.Fatalf("no event naming the hash to approve: %q", got)
	}

	// Another hash approves nothing.
	c.annotate(dkmv1.AnnotationApproveChanges, "0123456789abcdef")
	if _, err := c.reconcile(); err != nil {
		t.Fatal(err)
	}
	expectWriteCalls(t, "with another hash", dir, nil)
	if again := c.pending(); again.Hash != plan.Hash {
		t.Fatalf("the plan changed without a change in AD or the spec: %s then %s", plan.Hash, again.Hash)
	}

	c.annotate(dkmv1.AnnotationApproveChanges, plan.Hash)
	c.mustReconcile()
	expectWriteCalls(t, "approved", dir, map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1, "SetActiveKey": 1})
	c.expectCond(dkmv1.ConditionReady, metav1.ConditionTrue, dkmv1.ReasonReady)
	if ch := c.get().Status.Changes; ch != nil {
		t.Fatalf("status.changes after the plan was carried out: %+v", ch)
	}
	expectLayout(t, "approved", dir, 1, 1, true)

	// The steady state plans nothing and writes nothing, the old annotation notwithstanding.
	c.mustReconcile()
	expectWriteCalls(t, "steady state", dir, map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1, "SetActiveKey": 1})
}

// tamper adds an ACE letting Authenticated Users read everything, as someone else would (a peer
// client: its write is not counted as the operator's).
func tamper(t *testing.T, dir *fakeAD, ace string) {
	t.Helper()
	cur := dir.tree.get(pwPath).sd
	sd, err := secdesc.ParseSDDL(secdesc.FormatSDDL(cur, secdesc.PlainSIDs)+ace, secdesc.Aliases{})
	if err != nil {
		t.Fatal(err)
	}
	if err := dir.peer().ReplaceDACL(context.Background(), pwPath, sd); err != nil {
		t.Fatal(err)
	}
}

func TestManualApprovalDriftAndNewApproval(t *testing.T) {
	clock := newPWClock()
	dir := newFakeAD(clock.now)
	c := manualCluster(t, dir, clock, nil)
	if _, err := c.reconcile(); err != nil {
		t.Fatal(err)
	}
	c.annotate(dkmv1.AnnotationApproveChanges, c.pending().Hash)
	c.mustReconcile()
	created := map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1, "SetActiveKey": 1}
	expectWriteCalls(t, "created", dir, created)

	tamper(t, dir, "(A;CI;RPLC;;;AU)")
	if _, err := c.reconcile(); err != nil {
		t.Fatal(err)
	}
	expectWriteCalls(t, "drift before approval", dir, created)
	first := c.pending()
	expectOps(t, first, OpReplaceDACL)
	// Drift is reported as under Audit, and the existing key is still served.
	c.expectCond(dkmv1.ConditionAccessControlled, metav1.ConditionFalse, dkmv1.ReasonUnsafeDACL)
	if c.cond(dkmv1.ConditionAccessControlled).Message == "" || !strings.Contains(c.cond(dkmv1.ConditionAccessControlled).Message, first.Hash) {
		t.Fatalf("AccessControlled does not say how to approve the repair: %q", c.cond(dkmv1.ConditionAccessControlled).Message)
	}
	if c.r.Keys.Get(c.key) == nil {
		t.Fatal("the key is not served while the repair waits")
	}

	// The DACL changes again before the person approves: the approval of the first plan
	// does not cover the second.
	tamper(t, dir, "(A;;RP;;;BU)")
	c.annotate(dkmv1.AnnotationApproveChanges, first.Hash)
	if _, err := c.reconcile(); err != nil {
		t.Fatal(err)
	}
	expectWriteCalls(t, "approval of a stale plan", dir, created)
	second := c.pending()
	if second.Hash == first.Hash {
		t.Fatalf("a changed plan kept its hash %s", first.Hash)
	}

	c.annotate(dkmv1.AnnotationApproveChanges, second.Hash)
	c.mustReconcile()
	created["ReplaceDACL"] = 1
	expectWriteCalls(t, "approved repair", dir, created)
	c.expectCond(dkmv1.ConditionAccessControlled, metav1.ConditionTrue, dkmv1.ReasonDriftRepaired)

	// The same tamper once more: AD's state moved on, so the hash it had before is no approval.
	tamper(t, dir, "(A;CI;RPLC;;;AU)")
	if _, err := c.reconcile(); err != nil {
		t.Fatal(err)
	}
	expectWriteCalls(t, "the same tamper again", dir, created)
	if third := c.pending(); third.Hash == second.Hash {
		t.Fatalf("a plan made from a later AD state kept the approved hash %s", second.Hash)
	}
}

func TestManualApprovalRotation(t *testing.T) {
	clock := newPWClock()
	dir := newFakeAD(clock.now)
	c := manualCluster(t, dir, clock, func(o *dkmv1.DKMContainer) {
		o.Spec.Rotation = &dkmv1.RotationSpec{Period: &metav1.Duration{Duration: 24 * time.Hour}}
	})
	if _, err := c.reconcile(); err != nil {
		t.Fatal(err)
	}
	c.annotate(dkmv1.AnnotationApproveChanges, c.pending().Hash)
	c.mustReconcile()
	firstKey := c.get().Status.ActiveKeyID

	clock.advance(25 * time.Hour)
	c.mustReconcile()
	plan := c.pending()
	expectOps(t, plan, OpAddKey, OpSetActiveKey)
	c.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionTrue, dkmv1.ReasonReady)
	if got := c.get().Status.ActiveKeyID; got != firstKey {
		t.Fatalf("rotated without approval: %s → %s", firstKey, got)
	}

	c.annotate(dkmv1.AnnotationApproveChanges, plan.Hash)
	c.mustReconcile()
	if got := c.get().Status.ActiveKeyID; got == firstKey {
		t.Fatal("the approved rotation did not happen")
	}
	expectWriteCalls(t, "rotated", dir, map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 2, "SetActiveKey": 2})
}

// The gate refuses every write the approved plan does not list, whatever the phases decide.
func TestApprovalGateRefusesUnplannedWrites(t *testing.T) {
	dir := newFakeAD(time.Now)
	mgr := "CN=DC Manager <new DC Manager GUID>," + pwPath
	g := &approvalGate{Directory: dir, allowed: []Change{
		{Op: OpCreateContainer, DN: pwPath},
		{Op: OpAddKey, DN: "CN=<new key ID>," + mgr},
	}}
	ctx := context.Background()
	if err := g.ReplaceDACL(ctx, pwPath, secdesc.ChildDescriptor()); err == nil {
		t.Fatal("an unplanned DACL write went through")
	}
	if _, err := g.CreateContainer(ctx, "CN=Other,CN=System,DC=demo,DC=local", secdesc.ChildDescriptor(), testOwner); err == nil {
		t.Fatal("a container at another DN went through")
	}
	if _, err := g.CreateManager(ctx, pwPath, "2f1c2c4e-0000-4000-8000-000000000001", testOwner); err == nil {
		t.Fatal("an unplanned DC Manager went through")
	}
	expectWriteCalls(t, "refused", dir, nil)
}

func TestDNMatches(t *testing.T) {
	mgr := "CN=DC Manager <new DC Manager GUID>,CN=VMMDKM,CN=System,DC=demo,DC=local"
	cases := []struct {
		planned, dn string
		want        bool
	}{
		{pwPath, "cn=vmmdkm, cn=system, dc=demo, dc=local", true},
		{pwPath, "CN=VMMDKM2,CN=System,DC=demo,DC=local", false},
		{mgr, "CN=DC Manager 2f1c2c4e-0000-4000-8000-000000000001,CN=VMMDKM,CN=System,DC=demo,DC=local", true},
		{mgr, "CN=Other 2f1c,CN=VMMDKM,CN=System,DC=demo,DC=local", false},
		{mgr, "CN=DC Manager x,CN=Elsewhere,CN=System,DC=demo,DC=local", false},
		{"CN=<new key ID>," + mgr, "CN=0b6d,CN=DC Manager 2f1c,CN=VMMDKM,CN=System,DC=demo,DC=local", true},
		{"CN=<new key ID>," + mgr, "CN=DC Manager 2f1c,CN=VMMDKM,CN=System,DC=demo,DC=local", false},
		{`CN=a\,b,DC=x`, `CN=a\,b,DC=x`, true},
		{`CN=a\,b,DC=x`, `CN=a,CN=b,DC=x`, false},
	}
	for _, tc := range cases {
		if got := dnMatches(tc.planned, tc.dn); got != tc.want {
			t.Errorf("dnMatches(%q, %q) = %v, want %v", tc.planned, tc.dn, got, tc.want)
		}
	}
}

// A first key that waited for replication is activated under the approval of the plan that
// created it: the DC Manager's name, a placeholder in the approved plan, is known by then.
func TestContinuesApprovedPlan(t *testing.T) {
	mgr := "CN=DC Manager <new DC Manager GUID>," + pwPath
	approved := Plan{Changes: []Change{
		{Op: OpCreateContainer, Class: "container", DN: pwPath, Why: "create the DKM container"},
		{Op: OpCreateManager, Class: "container", DN: mgr, Why: "create the first key"},
		newKey(mgr, newKeyID, "create the first key", newKeyValue),
		activate("CN=CryptoPolicy,"+mgr, newKeyID, "create the first key"),
	}}.Status()
	named := "CN=DC Manager 2f1c2c4e-0000-4000-8000-000000000001," + pwPath
	rest := Plan{Changes: []Change{activate("CN=CryptoPolicy,"+named, "0b6d", "make the newest key active (no CryptoPolicy)")}}
	if !continues(rest, approved) {
		t.Fatal("the activation left over from an approved first key needs a new approval")
	}
	for _, other := range []Change{
		{Op: OpReplaceDACL, Class: "container", DN: pwPath, Why: "repair"},
		activate("CN=CryptoPolicy,CN=DC Manager x,CN=Elsewhere,CN=System,DC=demo,DC=local", "0b6d", "x"),
	} {
		if continues(Plan{Changes: []Change{other}}, approved) {
			t.Fatalf("%s passes as a continuation of the approved plan", other)
		}
	}
	if continues(rest, nil) {
		t.Fatal("a continuation without an approved plan")
	}
	for _, line := range approved.Changes {
		if op, dn, ok := parseChange(line); !ok || op == "" || !strings.HasSuffix(dn, pwPath) {
			t.Fatalf("parseChange(%q) = %q, %q, %v", line, op, dn, ok)
		}
	}
}

// The restore annotation under Manual: the plan lists the lost versions by ID (and whatever
// else went), nothing is written until it is approved, and then exactly what the restore needs.
func TestManualApprovalRestore(t *testing.T) {
	removals := []struct {
		name   string
		remove func(l adLayout, manager string) string
		ops    []string
		writes map[string]int
	}{
		{"container", func(adLayout, string) string { return pwPath },
			[]string{OpCreateContainer, OpCreateManager, OpAddKey, OpSetActiveKey},
			map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1, "SetActiveKey": 1}},
		{"DC Manager", func(_ adLayout, m string) string { return m },
			[]string{OpCreateManager, OpAddKey, OpSetActiveKey}, map[string]int{"CreateManager": 1, "AddKey": 1, "SetActiveKey": 1}},
		{"key contact", func(l adLayout, m string) string { return directory.ChildDN(m, l.Keys[m][0]) },
			[]string{OpAddKey}, map[string]int{"AddKey": 1}},
	}
	for _, rm := range removals {
		t.Run(rm.name, func(t *testing.T) {
			clock := newPWClock()
			dir := newFakeAD(clock.now)
			c := newPWCluster(t, dir, clock, pwOptions{managedFields: []metav1.ManagedFieldsEntry{reconcilerStatusEntry()}})
			c.mustReconcile()
			id := expectOneKey(t, c)
			fp := c.get().Status.ActiveKeyFingerprint
			obj := c.get()
			obj.Spec.ChangeApproval = dkmv1.ChangeApprovalManual
			if err := c.r.Update(context.Background(), obj); err != nil {
				t.Fatal(err)
			}
			l := dir.layout(pwPath)
			dir.remove(t, rm.remove(l, l.Managers[0]))
			base := dir.writeCalls()

			c.annotate(dkmv1.AnnotationRestoreLostKey, id)
			_, _ = c.reconcile()
			plan := c.pending()
			expectOps(t, plan, rm.ops...)
			if !strings.Contains(strings.Join(plan.Changes, "\n"), "CN="+id+",") {
				t.Fatalf("the plan does not name the lost key %s:\n%s", id, strings.Join(plan.Changes, "\n"))
			}
			expectWritesSince(t, "before approval", dir, base, nil)

			c.annotate(dkmv1.AnnotationApproveChanges, plan.Hash)
			_, _ = c.reconcile()
			c.expectCond(dkmv1.ConditionReady, metav1.ConditionTrue, dkmv1.ReasonReady)
			expectWritesSince(t, "approved restore", dir, base, rm.writes)
			if got := c.get().Status; got.ActiveKeyID != id || got.ActiveKeyFingerprint != fp {
				t.Fatalf("restored %s %s, want %s %s", got.ActiveKeyID, got.ActiveKeyFingerprint, id, fp)
			}
		})
	}
}
