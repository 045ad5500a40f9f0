package chaos

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/controllers"
)

// The invariants, as numbered in issue 13 (5 is a stricter reading of 3 this suite adds).
var invariantNames = map[int]string{
	0: "the schedule healed: both DCs agree, every cluster is Ready and every replica holds the active key",
	1: "no replica held a key present on fewer than N DCs when it was projected",
	2: "exactly one live DC Manager per container, and every key a replica held is in AD",
	3: "no key Secret was deleted or blanked by an outage",
	4: "no key was regenerated without the annotation",
	5: "no replica's active key went back to an older one",
}

type violation struct {
	invariant int
	at        time.Duration
	what      string
}

func (v violation) String() string {
	return fmt.Sprintf("invariant %d (%s) at +%s: %s", v.invariant, invariantNames[v.invariant], v.at.Round(time.Millisecond), v.what)
}

// window is when a rotation was asked for (spec.rotation.period set).
type window struct{ open, close time.Time }

// secretState is what one key Secret held at its last event.
type secretState struct {
	owner    types.UID
	active   string
	versions map[string]string // key ID -> fingerprint
	history  []string          // active key IDs, in order
}

// pendingPresence is a key projected while a DC was down and missing from the snapshot taken
// just before it stopped: whether that DC held it is read when it starts again, before anything
// can replicate to it.
type pendingPresence struct {
	id, fp, where string
	dc            int
	others        int // DCs that held it at projection time
	at            time.Duration
}

// recorder watches every key Secret of a schedule in both clusters and checks each change as it
// happens; final checks run after healing.
type recorder struct {
	required int // N: the DCs a key must be on before a replica may hold it
	// What the recorder needs of the run (the unit tests stand in for it).
	readDCs  func(context.Context) ([]*adView, []bool)
	podLives func(ctx context.Context, cluster int, ns, name string, uid types.UID) bool
	since    func() time.Duration
	logf     func(format string, args ...any)

	mu          sync.Mutex
	secrets     [2]map[string]*secretState
	fps         map[string]string // key ID -> the one fingerprint it may have
	held        map[string]string // key ID -> fingerprint, for every key a replica held
	durable     map[string]bool   // "ID/fingerprint" of the keys seen on N DCs
	removedPods [2]map[types.UID]bool
	rotations   []window
	pending     []pendingPresence
	violations  []violation
	checks      map[int]int
	ambiguous   int
}

func newRecorder(r *run, required int) *recorder {
	rec := &recorder{required: required, fps: map[string]string{}, held: map[string]string{},
		durable: map[string]bool{}, checks: map[int]int{}, readDCs: r.readDCs, since: r.since, logf: r.logf}
	rec.podLives = func(ctx context.Context, cluster int, ns, name string, uid types.UID) bool {
		pod := &corev1.Pod{}
		err := r.clusters[cluster].c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pod)
		return err == nil && pod.UID == uid && pod.DeletionTimestamp.IsZero()
	}
	for c := range rec.secrets {
		rec.secrets[c] = map[string]*secretState{}
		rec.removedPods[c] = map[types.UID]bool{}
	}
	return rec
}

func (rec *recorder) violate(inv int, format string, args ...any) {
	v := violation{invariant: inv, at: rec.since(), what: fmt.Sprintf(format, args...)}
	rec.mu.Lock()
	rec.violations = append(rec.violations, v)
	rec.mu.Unlock()
	rec.logf("VIOLATION %s", v)
}

func (rec *recorder) checked(inv int) {
	rec.mu.Lock()
	rec.checks[inv]++
	rec.mu.Unlock()
}

// podRemoved marks a pod the schedule deleted: its Secret may go.
func (rec *recorder) podRemoved(cluster int, uid types.UID) {
	rec.mu.Lock()
	rec.removedPods[cluster][uid] = true
	rec.mu.Unlock()
}

func (rec *recorder) rotationWindow(w window) {
	rec.mu.Lock()
	rec.rotations = append(rec.rotations, w)
	rec.mu.Unlock()
}

// watchSecrets follows the key Secrets of the schedule's namespace in one cluster until ctx ends.
func (rec *recorder) watchSecrets(ctx context.Context, cluster int, c client.WithWatch, ns string, ready chan<- struct{}) {
	rv := ""
	for ctx.Err() == nil {
		list := &corev1.SecretList{}
		opts := []client.ListOption{client.InNamespace(ns), client.HasLabels{controllers.LabelContainer}}
		if rv != "" {
			opts = append(opts, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
		}
		wi, err := c.Watch(ctx, list, opts...)
		if err != nil {
			if ctx.Err() == nil {
				rec.logf("watch of cluster %s's Secrets: %v; again", ClusterName(cluster), err)
				time.Sleep(200 * time.Millisecond)
			}
			continue
		}
		if ready != nil {
			close(ready)
			ready = nil
		}
		for ev := range wi.ResultChan() {
			s, ok := ev.Object.(*corev1.Secret)
			if !ok {
				continue
			}
			rv = s.ResourceVersion
			rec.secretEvent(ctx, cluster, ev.Type, s)
		}
		wi.Stop()
	}
}

// secretEvent checks invariants 1, 3, 4 and 5 on one change of a key Secret.
func (rec *recorder) secretEvent(ctx context.Context, cluster int, typ watch.EventType, s *corev1.Secret) {
	where := fmt.Sprintf("cluster %s Secret %s", ClusterName(cluster), s.Name)
	owner := types.UID("")
	if len(s.OwnerReferences) > 0 {
		owner = s.OwnerReferences[0].UID
	}
	if typ == watch.Deleted {
		rec.secretDeleted(ctx, cluster, where, s, owner)
		return
	}
	if typ != watch.Added && typ != watch.Modified {
		return
	}
	cur := &secretState{owner: owner, active: strings.ToLower(string(s.Data[controllers.SecretKeyActiveID])), versions: map[string]string{}}
	for k, v := range s.Data {
		if id, ok := strings.CutPrefix(k, controllers.SecretKeyVersionPrefix); ok {
			cur.versions[strings.ToLower(id)] = materialFingerprint(v)
		}
	}
	rec.checked(3)
	if cur.active == "" || len(s.Data[controllers.SecretKeyActive]) == 0 {
		rec.violate(3, "%s blanked: active key or its ID empty", where)
		return
	}
	activeFP := materialFingerprint(s.Data[controllers.SecretKeyActive])
	if fp, ok := cur.versions[cur.active]; ok && fp != activeFP {
		rec.violate(4, "%s: active key %s differs from its own version entry", where, short(cur.active))
	}
	cur.versions[cur.active] = activeFP

	rec.mu.Lock()
	prev := rec.secrets[cluster][s.Name]
	if prev != nil && prev.owner == cur.owner {
		cur.history = prev.history
	}
	if len(cur.history) == 0 || cur.history[len(cur.history)-1] != cur.active {
		cur.history = append(slices.Clone(cur.history), cur.active)
	}
	rec.secrets[cluster][s.Name] = cur
	var fresh []string // key IDs this Secret holds for the first time
	for id := range cur.versions {
		if prev == nil || prev.owner != cur.owner || prev.versions[id] == "" {
			fresh = append(fresh, id)
		}
	}
	rec.mu.Unlock()
	sort.Strings(fresh)

	if prev != nil && prev.owner == cur.owner {
		for id := range prev.versions {
			if _, ok := cur.versions[id]; !ok {
				rec.violate(3, "%s lost key version %s", where, short(id))
			}
		}
		if prev.active != cur.active {
			if _, kept := cur.versions[prev.active]; !kept {
				rec.violate(4, "%s: active key %s replaced by %s, which does not keep it (a regeneration, not a rotation)",
					where, short(prev.active), short(cur.active))
			}
			rec.checked(5)
			if slices.Contains(cur.history[:len(cur.history)-1], cur.active) {
				rec.violate(5, "%s: active key went back from %s to %s", where, short(prev.active), short(cur.active))
			}
		}
	}
	for _, id := range fresh {
		rec.keySeen(id, cur.versions[id], where)
		rec.holding(id, cur.versions[id])
		rec.checkProjected(ctx, id, cur.versions[id], where)
	}
}

func (rec *recorder) holding(id, fp string) {
	rec.mu.Lock()
	rec.held[id] = fp
	rec.mu.Unlock()
}

// keySeen checks invariant 4's "one key ID, one key": a key ID (first key IDs are derived, so a
// regenerated first key reuses its ID) must never show up with other key material.
func (rec *recorder) keySeen(id, fp, where string) {
	rec.checked(4)
	rec.mu.Lock()
	known, ok := rec.fps[id]
	if !ok {
		rec.fps[id] = fp
	}
	rec.mu.Unlock()
	if ok && known != fp && fp != "unopenable" && known != "unopenable" {
		rec.violate(4, "%s: key %s is %s, but it was %s before: the key was made again", where, short(id), short(fp), short(known))
	}
}

// checkProjected is invariant 1: a replica now holds key id, so at least N DCs must hold it.
// A DC that is up is read now; a stopped one cannot change, so the snapshot taken just before it
// stopped stands for it (and if the key is not in it, the DC is read again as it starts).
func (rec *recorder) checkProjected(ctx context.Context, id, fp, where string) {
	rec.mu.Lock()
	done := rec.durable[id+"/"+fp]
	rec.mu.Unlock()
	if done {
		return
	}
	rec.checked(1)
	views, up := rec.readDCs(ctx)
	holders, unknown := 0, -1
	var missing []string
	for i, v := range views {
		switch {
		case v == nil && !up[i]:
			unknown = i // down, and its snapshot failed
		case v == nil:
			missing = append(missing, fmt.Sprintf("dc%d unreadable", i+1))
		case v.has(id, fp):
			holders++
		case !up[i]:
			unknown = i
		default:
			missing = append(missing, fmt.Sprintf("dc%d: %s", i+1, v.summary()))
		}
	}
	switch {
	case holders >= rec.required:
		rec.mu.Lock()
		rec.durable[id+"/"+fp] = true
		rec.mu.Unlock()
	case unknown >= 0 && holders+1 >= rec.required:
		rec.mu.Lock()
		rec.pending = append(rec.pending, pendingPresence{id: id, fp: fp, where: where, dc: unknown, others: holders, at: rec.since()})
		rec.mu.Unlock()
	default:
		rec.violate(1, "%s holds key %s (%s), present on %d of the %d DCs that must hold it [%s]",
			where, short(id), short(fp), holders, rec.required, strings.Join(missing, "; "))
	}
}

// dcStarted settles the projections made while DC i was down: view is what it held when it
// came back, read before any replication could reach it.
func (rec *recorder) dcStarted(i int, view adView) {
	rec.mu.Lock()
	var settle []pendingPresence
	rest := rec.pending[:0]
	for _, p := range rec.pending {
		if p.dc == i {
			settle = append(settle, p)
		} else {
			rest = append(rest, p)
		}
	}
	rec.pending = rest
	rec.mu.Unlock()
	for _, p := range settle {
		if view.has(p.id, p.fp) {
			rec.mu.Lock()
			rec.ambiguous++
			rec.durable[p.id+"/"+p.fp] = true
			rec.mu.Unlock()
			continue
		}
		rec.violate(1, "%s held key %s from +%s, but dc%d (down then) did not have it when it came back, and %d other DC(s) did",
			p.where, short(p.id), p.at.Round(time.Millisecond), i+1, p.others)
	}
}

// secretDeleted is invariant 3: a key Secret may go only with its pod.
func (rec *recorder) secretDeleted(ctx context.Context, cluster int, where string, s *corev1.Secret, owner types.UID) {
	rec.checked(3)
	rec.mu.Lock()
	removed := rec.removedPods[cluster][owner]
	delete(rec.secrets[cluster], s.Name)
	rec.mu.Unlock()
	if removed {
		return
	}
	name := ""
	if len(s.OwnerReferences) > 0 {
		name = s.OwnerReferences[0].Name
	}
	if rec.podLives(ctx, cluster, s.Namespace, name, owner) {
		rec.violate(3, "%s deleted while its pod %s lives", where, name)
	}
}

// final checks invariants 2 and 4 on the healed domain: views are the DCs' contents.
func (rec *recorder) final(views []adView, statuses []*dkmv1.DKMContainer) {
	rec.mu.Lock()
	held := maps.Clone(rec.held)
	rotations := slices.Clone(rec.rotations)
	pending := slices.Clone(rec.pending)
	rec.mu.Unlock()
	for _, p := range pending {
		rec.violate(1, "%s held key %s from +%s, and dc%d never came back to say whether it had it", p.where, short(p.id), p.at, p.dc+1)
	}
	for i, v := range views {
		dc := fmt.Sprintf("dc%d", i+1)
		rec.checked(2)
		if len(v.managers) != 1 {
			rec.violate(2, "%s holds %d DC Manager objects: %v", dc, len(v.managers), v.managers)
		}
		if len(v.conflicts) > 0 {
			rec.violate(2, "%s holds replication conflict objects: %v", dc, v.conflicts)
		}
		for _, id := range slices.Sorted(maps.Keys(held)) {
			rec.checked(2)
			if !v.has(id, held[id]) {
				rec.violate(2, "a replica held key %s (%s), which %s does not hold (%s)", short(id), short(held[id]), dc, v.summary())
			}
		}
		for _, id := range slices.Sorted(maps.Keys(v.keys)) {
			for _, fp := range v.keys[id] {
				rec.keySeen(id, fp, dc)
			}
			if len(v.keys[id]) > 1 {
				rec.violate(4, "%s holds %d key objects with ID %s", dc, len(v.keys[id]), short(id))
			}
			rec.checked(4)
			if slices.Contains(v.firstKeys, id) {
				continue
			}
			created := v.created[id]
			if !slices.ContainsFunc(rotations, func(w window) bool {
				// whenCreated has whole seconds; a write started in the window may land up to an
				// operation timeout after it closed.
				return !created.Before(w.open.Add(-time.Second).Truncate(time.Second)) && !created.After(w.close.Add(opTimeout+3*time.Second))
			}) {
				rec.violate(4, "%s holds key %s created %s, outside every rotation the schedule asked for", dc, short(id), created.Format(time.RFC3339))
			}
		}
	}
	for _, obj := range statuses {
		if obj == nil {
			continue
		}
		for _, k := range obj.Status.Keys {
			rec.keySeen(strings.ToLower(k.ID), k.Fingerprint, fmt.Sprintf("status of %s", obj.Namespace+"/"+obj.Name))
		}
	}
}

// summary returns the violations and the number of checks made for each invariant.
func (rec *recorder) summary() ([]violation, map[int]int, int) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.violations), maps.Clone(rec.checks), rec.ambiguous
}
