package controllers

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/keys"
)

// A lost key that the operator's memory or a replica Secret still holds goes back to AD on the
// restore annotation: the same ID and fingerprint, under whatever of the container AD lost, and
// nothing is written before the annotation or when the copy does not match status.
func TestRestoreLostKeyFromCluster(t *testing.T) {
	removals := []struct {
		name   string
		remove func(l adLayout, manager string) string
		writes map[string]int // write calls of the restore
	}{
		{"container", func(adLayout, string) string { return pwPath },
			map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1, "SetActiveKey": 1}},
		{"DC Manager", func(_ adLayout, m string) string { return m },
			map[string]int{"CreateManager": 1, "AddKey": 1, "SetActiveKey": 1}},
		{"key contact", func(l adLayout, m string) string { return directory.ChildDN(m, l.Keys[m][0]) },
			map[string]int{"AddKey": 1}},
	}
	// Status's key fields as the reconciler alone applied them, or also edited by someone else.
	reconcilerOnly := []metav1.ManagedFieldsEntry{reconcilerStatusEntry()}
	coOwned := append(slices.Clone(reconcilerOnly), managedFieldsEntry("kubectl-edit", metav1.ManagedFieldsOperationUpdate,
		"status", `{"f:status":{"f:keys":{},"f:activeKeyFingerprint":{}}}`))
	sources := []struct {
		name string
		// fields are the DKMContainer's managedFields; reconcilerOnly when nil.
		fields []metav1.ManagedFieldsEntry
		// prepare leaves the copy the operator may use (or not); ok says whether the restore runs.
		prepare func(t *testing.T, c *pwCluster, ring *keys.Ring)
		ok      bool
		source  string
	}{
		{"memory", nil, func(*testing.T, *pwCluster, *keys.Ring) {}, true, "the operator's memory"},
		// Memory was read from AD: an edited status can only fail to match it.
		{"memory while status is co-owned", coOwned, func(*testing.T, *pwCluster, *keys.Ring) {}, true, "the operator's memory"},
		{"replica Secret after a restart", nil, func(t *testing.T, c *pwCluster, ring *keys.Ring) {
			c.r.Keys = NewKeyStore()
			replicaSecret(t, c, ring)
		}, true, "replica Secret vmm/"},
		{"replica Secret with other bytes", nil, func(t *testing.T, c *pwCluster, _ *keys.Ring) {
			c.r.Keys = NewKeyStore()
			replicaSecret(t, c, otherRing(t, c))
		}, false, "status recorded"},
		// Someone able to write status and a Secret records the fingerprint of bytes they chose:
		// those must not reach AD as the lost key.
		{"crafted replica Secret matching a status edited by another manager", coOwned, func(t *testing.T, c *pwCluster, _ *keys.Ring) {
			c.r.Keys = NewKeyStore()
			crafted := otherRing(t, c)
			replicaSecret(t, c, crafted)
			obj := c.get()
			fp := crafted.Active().Fingerprint.String()
			obj.Status.ActiveKeyFingerprint = fp
			for i := range obj.Status.Keys {
				obj.Status.Keys[i].Fingerprint = fp
			}
			if err := c.r.Status().Update(context.Background(), obj); err != nil {
				t.Fatal(err)
			}
		}, false, "the replica Secrets are not used: status.activeKeyFingerprint (also written by kubectl-edit) was not written by the operator"},
		{"nothing held", nil, func(_ *testing.T, c *pwCluster, _ *keys.Ring) { c.r.Keys = NewKeyStore() }, false, "neither"},
	}
	for _, rm := range removals {
		for _, src := range sources {
			t.Run(rm.name+"/"+src.name, func(t *testing.T) {
				clock := newPWClock()
				dir := newFakeAD(clock.now)
				fields := src.fields
				if fields == nil {
					fields = reconcilerOnly
				}
				c := newPWCluster(t, dir, clock, pwOptions{managedFields: fields})
				c.mustReconcile()
				id := expectOneKey(t, c)
				before := c.get().Status
				ring := c.r.Keys.Get(c.key)
				l := dir.layout(pwPath)
				dir.remove(t, rm.remove(l, l.Managers[0]))
				src.prepare(t, c, ring)
				base := dir.writeCalls()

				_, _ = c.reconcile()
				cd := c.expectCond(dkmv1.ConditionReady, metav1.ConditionFalse, dkmv1.ReasonKeyLost)
				if held := strings.Contains(cd.Message, dkmv1.AnnotationRestoreLostKey+"="+id); held != src.ok {
					t.Fatalf("KeyLost offers the restore annotation: %v, want %v: %s", held, src.ok, cd.Message)
				}
				expectWritesSince(t, "before the annotation", dir, base, nil)

				c.annotate(dkmv1.AnnotationRestoreLostKey, id)
				_, _ = c.reconcile()
				if !src.ok {
					cd := c.expectCond(dkmv1.ConditionReady, metav1.ConditionFalse, dkmv1.ReasonKeyLost)
					if !strings.Contains(cd.Message, "cannot be honoured") || !strings.Contains(cd.Message, src.source) {
						t.Fatalf("refusal does not say why: %s", cd.Message)
					}
					expectWritesSince(t, "a refused restore", dir, base, nil)
					return
				}
				c.expectCond(dkmv1.ConditionReady, metav1.ConditionTrue, dkmv1.ReasonReady)
				expectWritesSince(t, "the restore", dir, base, rm.writes)
				after := c.get().Status
				if after.ActiveKeyID != id || after.ActiveKeyFingerprint != before.ActiveKeyFingerprint {
					t.Fatalf("restored %s %s, want %s %s", after.ActiveKeyID, after.ActiveKeyFingerprint, id, before.ActiveKeyFingerprint)
				}
				if ev := c.event(dkmv1.ReasonKeyRestored); !strings.Contains(ev, src.source) {
					t.Fatalf("KeyRestored event %q does not name the source %q", ev, src.source)
				}
				// A plain reconcile after the restore writes nothing.
				base = dir.writeCalls()
				c.mustReconcile()
				expectWritesSince(t, "after the restore", dir, base, nil)
			})
		}
	}
}

// otherRing is a ring with the active key ID of c's status and other bytes.
func otherRing(t *testing.T, c *pwCluster) *keys.Ring {
	t.Helper()
	guid, err := keys.ParseObjectGUID("00112233-4455-6677-8899-aabbccddeeff")
	if err != nil {
		t.Fatal(err)
	}
	id, err := keys.ParseKeyID(c.get().Status.ActiveKeyID)
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := keys.NewRingWithID(guid, id, c.protector(), c.r.now())
	if err != nil {
		t.Fatal(err)
	}
	return other
}

// replicaSecret stores what the projector gives a replica of ring, as the projector does.
func replicaSecret(t *testing.T, c *pwCluster, ring *keys.Ring) {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "vmm-0", Namespace: "vmm", UID: "pod-uid"}}
	if err := c.r.Create(context.Background(), desiredSecret(c.get(), pod, ringData(ring))); err != nil {
		t.Fatal(err)
	}
}

// expectWritesSince compares the write calls made since base with want, exactly.
func expectWritesSince(t *testing.T, what string, dir *fakeAD, base, want map[string]int) {
	t.Helper()
	got := map[string]int{}
	for m, n := range dir.writeCalls() {
		if d := n - base[m]; d > 0 {
			got[m] = d
		}
	}
	if want == nil {
		want = map[string]int{}
	}
	if !maps.Equal(got, want) {
		t.Fatalf("%s: write calls %v, want %v", what, got, want)
	}
}

func (c *pwCluster) annotate(name, value string) {
	c.t.Helper()
	obj := c.get()
	if obj.Annotations == nil {
		obj.Annotations = map[string]string{}
	}
	obj.Annotations[name] = value
	if err := c.r.Update(context.Background(), obj); err != nil {
		c.t.Fatal(err)
	}
}

// event drains the recorder and returns the last event with the reason ("" when none).
func (c *pwCluster) event(reason string) string {
	found := ""
	for {
		select {
		case e := <-c.rec.Events:
			if parts := strings.SplitN(e, " ", 3); len(parts) == 3 && parts[1] == reason {
				found = e
			}
		default:
			return found
		}
	}
}
