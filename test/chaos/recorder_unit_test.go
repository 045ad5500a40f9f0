package chaos

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/dkm-operator/dkm-operator/controllers"
)

// The checkers themselves, without a DC or an API server: each invariant must fire on the
// history that breaks it and stay quiet on the one that does not.

const (
	idOld = "11111111-1111-1111-1111-111111111111"
	idNew = "22222222-2222-2222-2222-222222222222"
)

var (
	keyOld   = bytes.Repeat([]byte{1}, 32)
	keyNew   = bytes.Repeat([]byte{2}, 32)
	keyOther = bytes.Repeat([]byte{3}, 32)
)

// keySecret is a replica's key Secret owned by pod uid, with active and every version given.
func keySecret(uid types.UID, active string, versions map[string][]byte) *corev1.Secret {
	data := map[string][]byte{}
	if active != "" {
		data[controllers.SecretKeyActiveID] = []byte(active)
		data[controllers.SecretKeyActive] = versions[active]
	}
	for id, k := range versions {
		data[controllers.SecretKeyVersionPrefix+id] = k
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "vmm-vmm-0", Namespace: "ns", ResourceVersion: "1",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: "vmm-0", UID: uid}}},
		Data: data,
	}
}

// dcWith is a DC holding the given key IDs with their materials.
func dcWith(keys map[string][]byte) *adView {
	v := &adView{exists: true, keys: map[string][]string{}, created: map[string]time.Time{}, managers: []string{"cn=dc manager x"}}
	for id, k := range keys {
		v.keys[id] = []string{materialFingerprint(k)}
	}
	return v
}

type event struct {
	typ watch.EventType
	s   *corev1.Secret
}

func TestRecorderSecretEvents(t *testing.T) {
	both := func(keys map[string][]byte) ([]*adView, []bool) {
		return []*adView{dcWith(keys), dcWith(keys)}, []bool{true, true}
	}
	tests := []struct {
		name string
		// dcs is what the DCs hold when a Secret first holds a key.
		dcs     func() ([]*adView, []bool)
		podLive bool
		events  []event
		want    []int // invariants violated, in order
	}{
		{
			name:   "first key on both DCs, then rotated keeping the old one",
			dcs:    func() ([]*adView, []bool) { return both(map[string][]byte{idOld: keyOld, idNew: keyNew}) },
			events: []event{{watch.Added, keySecret("p1", idOld, map[string][]byte{idOld: keyOld})}, {watch.Modified, keySecret("p1", idNew, map[string][]byte{idOld: keyOld, idNew: keyNew})}},
		},
		{
			name: "a key on one DC of two",
			dcs: func() ([]*adView, []bool) {
				return []*adView{dcWith(map[string][]byte{idOld: keyOld}), dcWith(nil)}, []bool{true, true}
			},
			events: []event{{watch.Added, keySecret("p1", idOld, map[string][]byte{idOld: keyOld})}},
			want:   []int{1},
		},
		{
			name: "a key whose material differs on the second DC",
			dcs: func() ([]*adView, []bool) {
				return []*adView{dcWith(map[string][]byte{idOld: keyOld}), dcWith(map[string][]byte{idOld: keyOther})}, []bool{true, true}
			},
			events: []event{{watch.Added, keySecret("p1", idOld, map[string][]byte{idOld: keyOld})}},
			want:   []int{1},
		},
		{
			name:   "blanked by an outage",
			dcs:    func() ([]*adView, []bool) { return both(map[string][]byte{idOld: keyOld}) },
			events: []event{{watch.Added, keySecret("p1", idOld, map[string][]byte{idOld: keyOld})}, {watch.Modified, keySecret("p1", "", nil)}},
			want:   []int{3},
		},
		{
			name:    "deleted while its pod lives",
			dcs:     func() ([]*adView, []bool) { return both(map[string][]byte{idOld: keyOld}) },
			podLive: true,
			events:  []event{{watch.Added, keySecret("p1", idOld, map[string][]byte{idOld: keyOld})}, {watch.Deleted, keySecret("p1", idOld, map[string][]byte{idOld: keyOld})}},
			want:    []int{3},
		},
		{
			name:   "deleted after its pod went",
			dcs:    func() ([]*adView, []bool) { return both(map[string][]byte{idOld: keyOld}) },
			events: []event{{watch.Added, keySecret("p1", idOld, map[string][]byte{idOld: keyOld})}, {watch.Deleted, keySecret("p1", idOld, map[string][]byte{idOld: keyOld})}},
		},
		{
			name:   "regenerated: a new key that does not keep the old one",
			dcs:    func() ([]*adView, []bool) { return both(map[string][]byte{idOld: keyOld, idNew: keyNew}) },
			events: []event{{watch.Added, keySecret("p1", idOld, map[string][]byte{idOld: keyOld})}, {watch.Modified, keySecret("p1", idNew, map[string][]byte{idNew: keyNew})}},
			want:   []int{3, 4}, // the old version is lost, and the new key replaced it
		},
		{
			name: "regenerated: the first key's ID with other material",
			dcs: func() ([]*adView, []bool) {
				return both(map[string][]byte{idOld: keyOld})
			},
			events: []event{{watch.Added, keySecret("p1", idOld, map[string][]byte{idOld: keyOld})}, {watch.Added, keySecret("p2", idOld, map[string][]byte{idOld: keyOther})}},
			want:   []int{4, 1},
		},
		{
			name:   "the active key goes back",
			dcs:    func() ([]*adView, []bool) { return both(map[string][]byte{idOld: keyOld, idNew: keyNew}) },
			events: []event{{watch.Added, keySecret("p1", idOld, map[string][]byte{idOld: keyOld, idNew: keyNew})}, {watch.Modified, keySecret("p1", idNew, map[string][]byte{idOld: keyOld, idNew: keyNew})}, {watch.Modified, keySecret("p1", idOld, map[string][]byte{idOld: keyOld, idNew: keyNew})}},
			want:   []int{5},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := testRecorder(2, tc.dcs)
			rec.podLives = func(context.Context, int, string, string, types.UID) bool { return tc.podLive }
			for _, e := range tc.events {
				rec.secretEvent(t.Context(), ClusterA, e.typ, e.s)
			}
			assertViolations(t, rec, tc.want)
		})
	}
}

// TestRecorderDownDC: a key projected while a DC was down is settled when it starts: present
// then, it counts; absent, invariant 1 is broken.
func TestRecorderDownDC(t *testing.T) {
	for _, tc := range []struct {
		name     string
		restart  *adView
		want     []int
		wantAmbi int
	}{
		{"the DC had it", dcWith(map[string][]byte{idOld: keyOld}), nil, 1},
		{"the DC did not have it", dcWith(nil), []int{1}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := testRecorder(2, func() ([]*adView, []bool) {
				// dc2 is down, and its snapshot from before the stop lacks the key.
				return []*adView{dcWith(map[string][]byte{idOld: keyOld}), dcWith(nil)}, []bool{true, false}
			})
			rec.secretEvent(t.Context(), ClusterA, watch.Added, keySecret("p1", idOld, map[string][]byte{idOld: keyOld}))
			assertViolations(t, rec, nil)
			rec.dcStarted(1, *tc.restart)
			assertViolations(t, rec, tc.want)
			if _, _, ambi := rec.summary(); ambi != tc.wantAmbi {
				t.Errorf("ambiguous presence checks: %d, want %d", ambi, tc.wantAmbi)
			}
		})
	}
}

func TestRecorderFinal(t *testing.T) {
	now := time.Now()
	withKeys := func(mutate func(v *adView)) adView {
		v := dcWith(map[string][]byte{idOld: keyOld, idNew: keyNew})
		v.firstKeys = []string{idOld}
		v.created[idNew] = now.Truncate(time.Second)
		mutate(v)
		return *v
	}
	for _, tc := range []struct {
		name      string
		view      adView
		rotations []window
		want      []int
	}{
		{"healed", withKeys(func(*adView) {}), []window{{now.Add(-time.Second), now}}, nil},
		{"two DC Managers", withKeys(func(v *adView) { v.managers = append(v.managers, "cn=dc manager y") }), []window{{now, now}}, []int{2}},
		{"a conflict object", withKeys(func(v *adView) { v.conflicts = []string{`CN=k\0ACNF:x`} }), []window{{now, now}}, []int{2}},
		{"a held key missing", withKeys(func(v *adView) { delete(v.keys, idOld) }), []window{{now, now}}, []int{2}},
		{"a key created with no rotation asked for", withKeys(func(*adView) {}), nil, []int{4}},
		{"two objects with one key ID", withKeys(func(v *adView) { v.keys[idNew] = append(v.keys[idNew], materialFingerprint(keyOther)) }),
			[]window{{now, now}}, []int{4, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := testRecorder(2, nil)
			rec.holding(idOld, materialFingerprint(keyOld))
			rec.rotations = tc.rotations
			rec.final([]adView{tc.view}, nil)
			assertViolations(t, rec, tc.want)
		})
	}
}

func testRecorder(required int, dcs func() ([]*adView, []bool)) *recorder {
	rec := &recorder{required: required, fps: map[string]string{}, held: map[string]string{},
		durable: map[string]bool{}, checks: map[int]int{}}
	for c := range rec.secrets {
		rec.secrets[c] = map[string]*secretState{}
		rec.removedPods[c] = map[types.UID]bool{}
	}
	rec.readDCs = func(context.Context) ([]*adView, []bool) { return dcs() }
	rec.since = func() time.Duration { return 0 }
	rec.logf = func(string, ...any) {}
	return rec
}

func assertViolations(t *testing.T, rec *recorder, want []int) {
	t.Helper()
	got, _, _ := rec.summary()
	var invs []int
	var lines []string
	for _, v := range got {
		invs = append(invs, v.invariant)
		lines = append(lines, v.String())
	}
	if len(invs) != len(want) || !equalInts(invs, want) {
		t.Errorf("violated invariants %v, want %v:\n%s", invs, want, strings.Join(lines, "\n"))
	}
}

func equalInts(a, b []int) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}
