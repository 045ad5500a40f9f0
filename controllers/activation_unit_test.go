package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
)

// A DC Manager whose keys are in AD but whose CryptoPolicy is not (a restore, or a first key,
// interrupted before CryptoPolicy was written, for example while waiting for minKeyCopies):
// the key status recorded as active is made active again, not whichever whenCreated is newest.
// Restored versions all carry the restore's whenCreated, in whatever order they were written,
// so "newest" would silently move every replica to another key.
func TestActivationKeepsRecordedActiveKey(t *testing.T) {
	clock := newPWClock()
	dir := newFakeAD(clock.now)
	c := newPWCluster(t, dir, clock, pwOptions{mutate: func(o *dkmv1.DKMContainer) {
		o.Spec.Rotation = &dkmv1.RotationSpec{Period: &metav1.Duration{Duration: 24 * time.Hour}}
	}})
	c.mustReconcile()
	first := c.get().Status.ActiveKeyID
	clock.advance(25 * time.Hour)
	c.mustReconcile()
	active := c.get().Status.ActiveKeyID
	if active == first {
		t.Fatal("no rotation")
	}
	fp := c.get().Status.ActiveKeyFingerprint

	l := dir.layout(pwPath)
	m := l.Managers[0]
	// The first key now looks newer than the rotated (active) one, as restored versions may,
	// and CryptoPolicy is gone.
	dir.tree.setCreated(t, directory.ChildDN(m, first), dir.tree.get(directory.ChildDN(m, active)).created.Add(time.Second))
	dir.remove(t, directory.ChildDN(m, directory.PolicyName))

	c.mustReconcile()
	got := c.get().Status
	if got.ActiveKeyID != active || got.ActiveKeyFingerprint != fp {
		t.Fatalf("made %s (%s) active, want the recorded active key %s (%s)", got.ActiveKeyID, got.ActiveKeyFingerprint, active, fp)
	}
	if p := dir.layout(pwPath).Policy[m]; p != active {
		t.Fatalf("CryptoPolicy names %s, want %s", p, active)
	}
}

// setCreated moves an object's whenCreated.
func (t *adTree) setCreated(tb testing.TB, dn string, created time.Time) {
	tb.Helper()
	key, _, _, err := adKey(dn)
	if err != nil {
		tb.Fatal(err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[key]
	if n == nil {
		tb.Fatalf("%s does not exist", dn)
	}
	n.created = created
}
