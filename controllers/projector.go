package controllers

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/keys"
)

// Keys of a projected Secret's data.
const (
	// SecretKeyActive holds the active key's raw bytes.
	SecretKeyActive = "key"
	// SecretKeyActiveID holds the active key's ID.
	SecretKeyActiveID = "key-id"
	// SecretKeyVersionPrefix prefixes each retained version's raw bytes, keyed by its ID.
	SecretKeyVersionPrefix = "key."
	// LabelPod names the pod a projected Secret belongs to.
	LabelPod = "dkm.io/pod"
)

// ReplicaProjector gives each running replica pod of a DKMContainer its own key Secret, owned
// by the pod, from the key ring held in memory: a pod that appears after a failover has its key
// one Secret create after it exists, with no LDAP round trip, even while AD is down.
//
// It runs as two controllers. The pod controller's work items are pods: a pod's Secret is
// written as soon as that pod is seen, by one of projectionWorkers workers, whatever other pods
// of the same burst are waiting for. The status controller's work items are DKMContainers: it
// counts, from the cache, the replicas whose Secret holds the ring and applies
// ReplicasProjected and projectedReplicas, at most about once per statusDelay however many pods
// changed meanwhile.
type ReplicaProjector struct {
	client.Client
	// APIReader sees Secrets the label-filtered cache does not (one whose label was removed).
	APIReader client.Reader
	Recorder  events.EventRecorder
	Keys      *KeyStore
	// Workers is how many pods' Secrets are written at once (0: projectionWorkers).
	Workers int

	// pods reads pods from the caches of the namespaces that hold DKMContainers with replicas
	// (nil: from Client, as the unit tests do).
	pods *namespaceCaches
	// failures are the pods whose last Secret write failed, per DKMContainer, for its status.
	failures projectionFailures
	// statusQueue tells the status controller which DKMContainers' status to recompute.
	statusQueue chan event.TypedGenericEvent[*dkmv1.DKMContainer]
	pace        statusPace
}

// statusPace spaces each DKMContainer's status recomputations statusDelay apart.
type statusPace struct {
	mu sync.Mutex
	// free is when the next recomputation may start; booked, a future one already queued.
	free, booked map[types.NamespacedName]time.Time
}

// next books a recomputation of obj and returns how long from now it starts.
func (s *statusPace) next(obj types.NamespacedName, now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.free == nil {
		s.free, s.booked = map[types.NamespacedName]time.Time{}, map[types.NamespacedName]time.Time{}
	}
	if at := s.booked[obj]; at.After(now) {
		return at.Sub(now) // the queue holds the request once: this event joins the booked one
	}
	at := s.free[obj]
	if !at.After(now) {
		at = now
	}
	s.booked[obj], s.free[obj] = at, at.Add(statusDelay)
	return at.Sub(now)
}

func (s *statusPace) forget(obj types.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.free, obj)
	delete(s.booked, obj)
}

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete

const (
	// projectionWorkers is how many pods' Secrets are written at once by default: enough to keep
	// the API server busy through a burst of new pods (a scale-up, a failover), where one at a
	// time the last of 1000 pods would wait for 999 round trips.
	projectionWorkers = 32
	// statusDelay coalesces the status writes of a burst: one apply per DKMContainer per delay,
	// not one per pod.
	statusDelay = time.Second
	// maxFailuresShown bounds the pods a ProjectionFailed message names.
	maxFailuresShown = 5
)

// reconcilePod projects, for every DKMContainer of the pod's namespace, the ring into the pod's
// Secret when the DKMContainer selects and allows the pod, and otherwise removes the Secret the
// projector made for it (the pod is gone, finished, no longer matches, or is not allowed).
func (p *ReplicaProjector) reconcilePod(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	containers := &dkmv1.DKMContainerList{}
	if err := p.List(ctx, containers, client.InNamespace(req.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, err
	}
	containers.Items = slices.DeleteFunc(containers.Items, func(obj dkmv1.DKMContainer) bool {
		return obj.Spec.Replicas == nil || !obj.DeletionTimestamp.IsZero()
	})
	if len(containers.Items) == 0 {
		return ctrl.Result{}, nil
	}
	pods, err := p.podReader(ctx, req.Namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	pod := &corev1.Pod{}
	if err := pods.Get(ctx, req.NamespacedName, pod); apierrors.IsNotFound(err) {
		pod = nil
	} else if err != nil {
		return ctrl.Result{}, err
	}
	var errs []error
	for i := range containers.Items {
		obj := &containers.Items[i]
		err := p.projectTo(ctx, obj, req.Name, pod)
		p.failures.record(namespacedName(obj), req.Name, err)
		p.statusChanged(ctx, obj)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return ctrl.Result{}, errors.Join(errs...)
}

// podReader reads the pods of ns from their cache, started (and synced) on first use.
func (p *ReplicaProjector) podReader(ctx context.Context, ns string) (client.Reader, error) {
	if p.pods == nil {
		return p.Client, nil
	}
	return p.pods.reader(ctx, ns)
}

// releasePods stops watching the pods of ns when no DKMContainer there selects pods any more.
func (p *ReplicaProjector) releasePods(ctx context.Context, ns string) error {
	if p.pods == nil {
		return nil
	}
	containers := &dkmv1.DKMContainerList{}
	if err := p.List(ctx, containers, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	for i := range containers.Items {
		if containers.Items[i].Spec.Replicas != nil && containers.Items[i].DeletionTimestamp.IsZero() {
			return nil
		}
	}
	p.pods.release(ns)
	return nil
}

// projectTo makes the Secret of one DKMContainer for one pod (nil: gone) what it must be.
func (p *ReplicaProjector) projectTo(ctx context.Context, obj *dkmv1.DKMContainer, podName string, pod *corev1.Pod) error {
	selector, err := metav1.LabelSelectorAsSelector(&obj.Spec.Replicas.Selector)
	if err != nil {
		return nil // the status says so; nothing is written or removed
	}
	current := &corev1.Secret{}
	if err := p.Get(ctx, client.ObjectKey{Namespace: obj.Namespace, Name: dkmv1.KeySecretName(obj.Name, podName)}, current); apierrors.IsNotFound(err) {
		current = nil
	} else if err != nil {
		return err
	}
	if !isReplica(pod, selector) {
		return p.removeSecret(ctx, obj, current)
	}
	if !slices.Contains(obj.Spec.Replicas.ServiceAccountNames, serviceAccountOf(pod)) {
		p.denyPod(obj, pod)
		return p.removeSecret(ctx, obj, current)
	}
	ring := p.Keys.Get(namespacedName(obj))
	if ring == nil {
		// Keys not read from AD yet (or never readable): an existing Secret stays as it is.
		return nil
	}
	// An allowed pod's Secret is never removed, even when restoring it failed: a transient
	// error must not take a replica's key away.
	return p.ensureSecret(ctx, obj, pod, ring, current)
}

// isReplica reports whether pod exists, runs (or will) and matches selector. The Secret of a
// terminating or finished pod goes: the pod needs it no more.
func isReplica(pod *corev1.Pod, selector labels.Selector) bool {
	return pod != nil && pod.DeletionTimestamp.IsZero() &&
		pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed &&
		selector.Matches(labels.Set(pod.Labels))
}

// removeSecret deletes current when it is a key Secret the projector made for obj; a person's
// Secret of the same name is never deleted.
func (p *ReplicaProjector) removeSecret(ctx context.Context, obj *dkmv1.DKMContainer, current *corev1.Secret) error {
	if current == nil || !isProjectedSecret(current, obj.Name) {
		return nil
	}
	if err := p.Delete(ctx, current, client.Preconditions{UID: &current.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting key Secret %s: %w", current.Name, err)
	}
	return nil
}

// reconcileStatus applies ReplicasProjected and projectedReplicas of one DKMContainer: the
// replicas whose Secret, in the cache, holds the ring, and the pods whose write failed.
func (p *ReplicaProjector) reconcileStatus(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := &dkmv1.DKMContainer{}
	if err := p.Get(ctx, req.NamespacedName, obj); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		p.failures.forget(req.NamespacedName)
		p.pace.forget(req.NamespacedName)
		return ctrl.Result{}, p.releasePods(ctx, req.Namespace)
	}
	if obj.Spec.Replicas == nil || !obj.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, p.releasePods(ctx, req.Namespace)
	}
	ring := p.Keys.Get(req.NamespacedName)
	if ring == nil {
		return ctrl.Result{}, p.setProjected(ctx, obj, metav1.ConditionFalse, dkmv1.ReasonKeysNotLoaded,
			"waiting for the key to be read from AD; existing Secrets are kept", -1)
	}
	selector, err := metav1.LabelSelectorAsSelector(&obj.Spec.Replicas.Selector)
	if err != nil {
		return ctrl.Result{}, p.setProjected(ctx, obj, metav1.ConditionFalse, dkmv1.ReasonProjectionFailed,
			fmt.Sprintf("spec.replicas.selector: %v", err), -1)
	}
	count, err := p.countReplicas(ctx, obj, selector, ring)
	if err != nil {
		return ctrl.Result{}, err
	}
	msg := fmt.Sprintf("%d replica(s) hold active key %s", count.projected, ring.ActiveID())
	if pending := count.allowed - count.projected; pending > 0 {
		msg = fmt.Sprintf("%d of %d replica(s) hold active key %s", count.projected, count.allowed, ring.ActiveID())
	}
	if count.denied > 0 {
		msg += fmt.Sprintf("; %d matching pod(s) refused: not running as one of spec.replicas.serviceAccountNames", count.denied)
	}
	if failed := p.failures.of(req.NamespacedName); len(failed) > 0 {
		msg += fmt.Sprintf("; writing the key Secret failed for %d pod(s): %s", len(failed), strings.Join(failed[:min(len(failed), maxFailuresShown)], "; "))
		if len(failed) > maxFailuresShown {
			msg += fmt.Sprintf("; and %d more", len(failed)-maxFailuresShown)
		}
		return ctrl.Result{}, p.setProjected(ctx, obj, metav1.ConditionFalse, dkmv1.ReasonProjectionFailed, msg, count.projected)
	}
	return ctrl.Result{}, p.setProjected(ctx, obj, metav1.ConditionTrue, dkmv1.ReasonReady, msg, count.projected)
}

type replicaCount struct{ allowed, projected, denied int }

// countReplicas counts obj's replicas from the cache: allowed ones, those of them whose Secret
// holds ring, and denied ones.
func (p *ReplicaProjector) countReplicas(ctx context.Context, obj *dkmv1.DKMContainer, selector labels.Selector, ring *keys.Ring) (replicaCount, error) {
	var count replicaCount
	reader, err := p.podReader(ctx, obj.Namespace)
	if err != nil {
		return count, err
	}
	pods := &corev1.PodList{}
	if err := reader.List(ctx, pods, client.InNamespace(obj.Namespace), client.MatchingLabelsSelector{Selector: selector},
		client.UnsafeDisableDeepCopy); err != nil {
		return count, err
	}
	secrets := &corev1.SecretList{}
	if err := p.List(ctx, secrets, client.InNamespace(obj.Namespace), client.MatchingLabels{LabelContainer: obj.Name},
		client.UnsafeDisableDeepCopy); err != nil {
		return count, err
	}
	byName := make(map[string]*corev1.Secret, len(secrets.Items))
	for i := range secrets.Items {
		byName[secrets.Items[i].Name] = &secrets.Items[i]
	}
	data := ringData(ring)
	for i := range pods.Items {
		pod := &pods.Items[i]
		switch {
		case !isReplica(pod, selector):
		case !slices.Contains(obj.Spec.Replicas.ServiceAccountNames, serviceAccountOf(pod)):
			count.denied++
		default:
			count.allowed++
			if s := byName[dkmv1.KeySecretName(obj.Name, pod.Name)]; s != nil && secretMatches(s, desiredSecret(obj, pod, data)) {
				count.projected++
			}
		}
	}
	return count, nil
}

// projectionFailures are, per DKMContainer, the pods whose last Secret write failed and why.
type projectionFailures struct {
	mu sync.Mutex
	m  map[types.NamespacedName]map[string]string
}

// record sets (err != nil) or clears the failure of one pod.
func (f *projectionFailures) record(obj types.NamespacedName, pod string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.m[obj], pod)
		if len(f.m[obj]) == 0 {
			delete(f.m, obj)
		}
		return
	}
	if f.m == nil {
		f.m = map[types.NamespacedName]map[string]string{}
	}
	if f.m[obj] == nil {
		f.m[obj] = map[string]string{}
	}
	f.m[obj][pod] = err.Error()
}

// of returns "pod: error" for each failed pod of obj, sorted by pod.
func (f *projectionFailures) of(obj types.NamespacedName) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.m[obj]))
	for _, pod := range slices.Sorted(maps.Keys(f.m[obj])) {
		out = append(out, pod+": "+f.m[obj][pod])
	}
	return out
}

func (f *projectionFailures) forget(obj types.NamespacedName) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, obj)
}

// ensureSecret creates or restores the pod's Secret so it holds exactly the ring's keys.
func (p *ReplicaProjector) ensureSecret(ctx context.Context, obj *dkmv1.DKMContainer, pod *corev1.Pod, ring *keys.Ring, current *corev1.Secret) error {
	want := desiredSecret(obj, pod, ringData(ring))
	if current == nil {
		err := p.Create(ctx, want)
		if apierrors.IsAlreadyExists(err) {
			// Someone removed our label from it, hiding it from the cache: restore it.
			current = &corev1.Secret{}
			if err := p.APIReader.Get(ctx, client.ObjectKeyFromObject(want), current); err != nil {
				return err
			}
		} else if err != nil {
			return fmt.Errorf("creating key Secret %s: %w", want.Name, err)
		} else {
			return nil
		}
	}
	if secretMatches(current, want) {
		return nil
	}
	current.Labels, current.OwnerReferences, current.Data, current.Type = want.Labels, want.OwnerReferences, want.Data, want.Type
	current.Immutable = nil
	if err := p.Update(ctx, current); err != nil {
		return fmt.Errorf("restoring key Secret %s: %w", want.Name, err)
	}
	return nil
}

// ringData is what every replica's Secret holds: the active key, its ID and every version.
func ringData(ring *keys.Ring) map[string][]byte {
	data := map[string][]byte{
		SecretKeyActive:   ring.Active().Material.Reveal(),
		SecretKeyActiveID: []byte(ring.ActiveID().String()),
	}
	for _, v := range ring.Versions() {
		data[SecretKeyVersionPrefix+v.ID.String()] = v.Material.Reveal()
	}
	return data
}

// desiredSecret is the key Secret of one pod: owned by the pod (garbage-collected with it),
// labelled for the label-filtered cache, holding data (ringData, shared: never written).
func desiredSecret(obj *dkmv1.DKMContainer, pod *corev1.Pod, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      dkmv1.KeySecretName(obj.Name, pod.Name),
			Namespace: obj.Namespace,
			Labels:    map[string]string{LabelContainer: obj.Name, LabelPod: truncateLabel(pod.Name)},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID,
			}},
		},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
}

// isProjectedSecret reports whether s is a key Secret the projector made for the DKMContainer
// named container: labelled for it and for a pod, owned by that pod, and named as the projector
// names that pod's Secret (dkmv1.KeySecretName). A Secret that merely carries the
// dkm.io/container label is not one, so it is never deleted, nor counted as a replica's key.
func isProjectedSecret(s *corev1.Secret, container string) bool {
	if s.Labels[LabelContainer] != container {
		return false
	}
	for _, ref := range s.OwnerReferences {
		if ref.APIVersion == "v1" && ref.Kind == "Pod" && ref.Name != "" &&
			s.Labels[LabelPod] == truncateLabel(ref.Name) && s.Name == dkmv1.KeySecretName(container, ref.Name) {
			return true
		}
	}
	return false
}

func secretMatches(cur, want *corev1.Secret) bool {
	if cur.Labels[LabelContainer] != want.Labels[LabelContainer] || cur.Labels[LabelPod] != want.Labels[LabelPod] {
		return false
	}
	if len(cur.OwnerReferences) != 1 || cur.OwnerReferences[0].UID != want.OwnerReferences[0].UID {
		return false
	}
	if len(cur.Data) != len(want.Data) {
		return false
	}
	for k, v := range want.Data {
		if !bytes.Equal(cur.Data[k], v) {
			return false
		}
	}
	return true
}

func truncateLabel(v string) string {
	if len(v) > 63 {
		return v[:63]
	}
	return v
}

func serviceAccountOf(pod *corev1.Pod) string {
	if pod.Spec.ServiceAccountName == "" {
		return "default"
	}
	return pod.Spec.ServiceAccountName
}

func (p *ReplicaProjector) denyPod(obj *dkmv1.DKMContainer, pod *corev1.Pod) {
	if p.Recorder != nil {
		p.Recorder.Eventf(pod, obj, corev1.EventTypeWarning, "KeyDenied", "ProjectKey", "%s", eventNote(fmt.Sprintf(
			"pod runs as service account %q, which %s/%s does not allow (spec.replicas.serviceAccountNames)",
			serviceAccountOf(pod), obj.Namespace, obj.Name)))
	}
}

// setProjected records ReplicasProjected (and the count, unless negative), applying the
// projector's part of status: the DKMContainer reconciler owns the other conditions and Ready.
func (p *ReplicaProjector) setProjected(ctx context.Context, obj *dkmv1.DKMContainer, status metav1.ConditionStatus, reason, msg string, count int) error {
	before := obj.DeepCopy()
	setCondition(obj, dkmv1.ConditionReplicasProjected, status, reason, msg)
	if count >= 0 {
		obj.Status.ProjectedReplicas = int32(count)
	}
	if statusEqual(before, obj) {
		return nil
	}
	part, err := projectorStatus(obj)
	if err != nil {
		return err
	}
	return client.IgnoreNotFound(applyStatus(ctx, p.Client, obj, ProjectorFieldOwner, part))
}

// SetupWithManager registers the pod controller and the status controller.
//
// The pod controller hears of pods (in the namespaces p.pods watches) that a DKMContainer of
// their namespace selects or that hold one of its Secrets, of those Secrets (a tampered or deleted one is restored), of spec changes
// (a new selector) and of the key store's changes. The status controller hears of DKMContainers,
// of their Secrets and of every pod reconcile, each delayed by statusDelay so a burst coalesces.
func (p *ReplicaProjector) SetupWithManager(mgr ctrl.Manager) error {
	p.statusQueue = make(chan event.TypedGenericEvent[*dkmv1.DKMContainer], 1024)
	p.pods = newPodCaches(mgr.GetConfig(), cache.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(), HTTPClient: mgr.GetHTTPClient(),
	})
	if err := mgr.Add(p.pods); err != nil {
		return err
	}
	pods, err := ctrl.NewControllerManagedBy(mgr).
		Named("replicaprojector").
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(p.podOfSecret)).
		Watches(&dkmv1.DKMContainer{}, handler.EnqueueRequestsFromMapFunc(p.podsOf),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(p.Keys.Changes(), handler.TypedFuncs[*dkmv1.DKMContainer, reconcile.Request]{
			GenericFunc: func(ctx context.Context, e event.TypedGenericEvent[*dkmv1.DKMContainer], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				for _, req := range p.podsOf(ctx, e.Object) {
					q.Add(req)
				}
				p.statusChanged(ctx, e.Object)
			},
		})).
		WithOptions(controller.Options{MaxConcurrentReconciles: cmp.Or(p.Workers, projectionWorkers)}).
		Build(reconcile.Func(p.reconcilePod))
	if err != nil {
		return err
	}
	// The pods of a namespace are watched from when a DKMContainer there first needs them.
	p.pods.watch = func(c cache.Cache) error {
		return pods.Watch(source.Kind(c, client.Object(&corev1.Pod{}), p.podEvents()))
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("replicaprojector-status").
		For(&dkmv1.DKMContainer{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Secret{}, paced(&p.pace, containerOfSecret)).
		WatchesRawSource(source.Channel(p.statusQueue, paced(&p.pace, func(_ context.Context, o *dkmv1.DKMContainer) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: namespacedName(o)}}
		}))).
		Complete(reconcile.Func(p.reconcileStatus))
}

// statusChanged asks the status controller to recompute obj's status.
func (p *ReplicaProjector) statusChanged(ctx context.Context, obj *dkmv1.DKMContainer) {
	if p.statusQueue == nil {
		return // not set up (unit tests call the reconcilers directly)
	}
	name := &dkmv1.DKMContainer{ObjectMeta: metav1.ObjectMeta{Namespace: obj.Namespace, Name: obj.Name}}
	select {
	case p.statusQueue <- event.TypedGenericEvent[*dkmv1.DKMContainer]{Object: name}:
	case <-ctx.Done():
	}
}

// paced enqueues the requests fn maps an event's object to, each at once when its last status
// write is statusDelay past, otherwise when it will be: the queue holds a request once, so
// the events of a burst land in one write per statusDelay.
func paced[T any](pace *statusPace, fn func(context.Context, T) []reconcile.Request) handler.TypedFuncs[T, reconcile.Request] {
	add := func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], objs ...T) {
		for _, o := range objs {
			for _, req := range fn(ctx, o) {
				if wait := pace.next(req.NamespacedName, time.Now()); wait > 0 {
					q.AddAfter(req, wait)
				} else {
					q.Add(req)
				}
			}
		}
	}
	return handler.TypedFuncs[T, reconcile.Request]{
		CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[T], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, q, e.Object)
		},
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[T], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, q, e.ObjectOld, e.ObjectNew)
		},
		DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[T], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, q, e.Object)
		},
		GenericFunc: func(ctx context.Context, e event.TypedGenericEvent[T], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, q, e.Object)
		},
	}
}

// podEvents enqueues a pod that a DKMContainer of its namespace selects (before or after the
// change) or that holds a Secret of one, when something projection reads changed. Every other
// pod of the cluster costs a lookup in the cache and nothing else.
func (p *ReplicaProjector) podEvents() handler.EventHandler {
	add := func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], objs ...client.Object) {
		for _, o := range objs {
			if p.concerns(ctx, o) {
				q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}})
				return
			}
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, q, e.Object)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if projectionInputChanged(e.ObjectOld, e.ObjectNew) {
				add(ctx, q, e.ObjectOld, e.ObjectNew)
			}
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, q, e.Object)
		},
		GenericFunc: func(ctx context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, q, e.Object)
		},
	}
}

// concerns reports whether a DKMContainer of the pod's namespace selects it or has a Secret
// named for it.
func (p *ReplicaProjector) concerns(ctx context.Context, pod client.Object) bool {
	containers := &dkmv1.DKMContainerList{}
	if err := p.List(ctx, containers, client.InNamespace(pod.GetNamespace()), client.UnsafeDisableDeepCopy); err != nil {
		return true // let the reconcile find out
	}
	for i := range containers.Items {
		obj := &containers.Items[i]
		if obj.Spec.Replicas == nil {
			continue
		}
		if sel, err := metav1.LabelSelectorAsSelector(&obj.Spec.Replicas.Selector); err == nil && sel.Matches(labels.Set(pod.GetLabels())) {
			return true
		}
		key := client.ObjectKey{Namespace: pod.GetNamespace(), Name: dkmv1.KeySecretName(obj.Name, pod.GetName())}
		if err := p.Get(ctx, key, &corev1.Secret{}); !apierrors.IsNotFound(err) {
			return true
		}
	}
	return false
}

// projectionInputChanged reports whether an update changed what projection reads of a pod (a
// resync, same resourceVersion, counts as a change, so a missed event is made up for).
func projectionInputChanged(a, b client.Object) bool {
	old, okOld := a.(*corev1.Pod)
	cur, okNew := b.(*corev1.Pod)
	if !okOld || !okNew || old.ResourceVersion == cur.ResourceVersion {
		return true
	}
	return old.UID != cur.UID || !maps.Equal(old.Labels, cur.Labels) || old.Status.Phase != cur.Status.Phase ||
		old.DeletionTimestamp.IsZero() != cur.DeletionTimestamp.IsZero() || serviceAccountOf(old) != serviceAccountOf(cur)
}

// podsOf maps a DKMContainer to the pods its selector matches and the pods its Secrets name
// (a pod that stopped matching loses its Secret).
func (p *ReplicaProjector) podsOf(ctx context.Context, o client.Object) []reconcile.Request {
	obj := &dkmv1.DKMContainer{}
	if err := p.Get(ctx, client.ObjectKeyFromObject(o), obj); err != nil || obj.Spec.Replicas == nil {
		return nil
	}
	seen := map[string]bool{}
	var reqs []reconcile.Request
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: obj.Namespace, Name: name}})
		}
	}
	// Only from a synced cache: a handler must not wait for one. A new namespace's cache lists
	// its pods to the pod controller itself once synced.
	reader, synced := client.Reader(p.Client), true
	if p.pods != nil {
		reader, synced = p.pods.synced(obj.Namespace)
	}
	if sel, err := metav1.LabelSelectorAsSelector(&obj.Spec.Replicas.Selector); err == nil && synced {
		pods := &corev1.PodList{}
		if err := reader.List(ctx, pods, client.InNamespace(obj.Namespace), client.MatchingLabelsSelector{Selector: sel},
			client.UnsafeDisableDeepCopy); err == nil {
			for i := range pods.Items {
				add(pods.Items[i].Name)
			}
		}
	}
	held := &corev1.SecretList{}
	if err := p.List(ctx, held, client.InNamespace(obj.Namespace), client.MatchingLabels{LabelContainer: obj.Name},
		client.UnsafeDisableDeepCopy); err == nil {
		for i := range held.Items {
			if pod := podNameOf(&held.Items[i], obj.Name); pod != "" {
				add(pod)
			}
		}
	}
	return reqs
}

// podOfSecret maps a labelled Secret to the pod it is for; when it no longer says (its owner
// reference and pod label edited away), to every pod of its DKMContainer.
func (p *ReplicaProjector) podOfSecret(ctx context.Context, o client.Object) []reconcile.Request {
	s, ok := o.(*corev1.Secret)
	container := o.GetLabels()[LabelContainer]
	if !ok || container == "" {
		return nil
	}
	if pod := podNameOf(s, container); pod != "" {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: pod}}}
	}
	return p.podsOf(ctx, &dkmv1.DKMContainer{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: container}})
}

// podNameOf is the pod a Secret labelled for container names, by a pod owner whose name gives
// the Secret's, or by its pod label when that is not truncated; "" when neither says.
func podNameOf(s *corev1.Secret, container string) string {
	for _, ref := range s.OwnerReferences {
		if ref.APIVersion == "v1" && ref.Kind == "Pod" && s.Name == dkmv1.KeySecretName(container, ref.Name) {
			return ref.Name
		}
	}
	if pod := s.Labels[LabelPod]; pod != "" && len(pod) < 63 && s.Name == dkmv1.KeySecretName(container, pod) {
		return pod
	}
	return ""
}

func containerOfSecret(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[LabelContainer]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
}

func statusEqual(a, b *dkmv1.DKMContainer) bool {
	return equality.Semantic.DeepEqual(a.Status, b.Status)
}
