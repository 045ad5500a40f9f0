package controllers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
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
type ReplicaProjector struct {
	client.Client
	// APIReader sees Secrets the label-filtered cache does not (one whose label was removed).
	APIReader client.Reader
	Recorder  events.EventRecorder
	Keys      *KeyStore
}

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete

// Reconcile projects the keys of one DKMContainer into its replicas' Secrets.
func (p *ReplicaProjector) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := &dkmv1.DKMContainer{}
	if err := p.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if obj.Spec.Replicas == nil || !obj.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	ring := p.Keys.Get(req.NamespacedName)
	if ring == nil {
		// Keys not read from AD yet (or never readable): existing Secrets stay as they are.
		return ctrl.Result{}, p.setProjected(ctx, obj, metav1.ConditionFalse, dkmv1.ReasonKeysNotLoaded,
			"waiting for the key to be read from AD; existing Secrets are kept", -1)
	}
	selector, err := metav1.LabelSelectorAsSelector(&obj.Spec.Replicas.Selector)
	if err != nil {
		return ctrl.Result{}, p.setProjected(ctx, obj, metav1.ConditionFalse, dkmv1.ReasonProjectionFailed,
			fmt.Sprintf("spec.replicas.selector: %v", err), -1)
	}

	pods := &corev1.PodList{}
	if err := p.List(ctx, pods, client.InNamespace(obj.Namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return ctrl.Result{}, err
	}
	secrets := &corev1.SecretList{}
	if err := p.List(ctx, secrets, client.InNamespace(obj.Namespace), client.MatchingLabels{LabelContainer: obj.Name}); err != nil {
		return ctrl.Result{}, err
	}
	// Only the key Secrets this projector made: a person's Secret that carries the label (the
	// bind or KEK Secret, say) is neither restored nor deleted as stale.
	existing := map[string]*corev1.Secret{}
	for i := range secrets.Items {
		if isProjectedSecret(&secrets.Items[i], obj.Name) {
			existing[secrets.Items[i].Name] = &secrets.Items[i]
		}
	}

	denied := 0
	var allowed []*corev1.Pod
	for i := range pods.Items {
		pod := &pods.Items[i]
		if !pod.DeletionTimestamp.IsZero() || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue // its Secret goes with it (owner reference)
		}
		if !slices.Contains(obj.Spec.Replicas.ServiceAccountNames, serviceAccountOf(pod)) {
			denied++
			p.denyPod(obj, pod)
			continue // an existing Secret for it is removed below
		}
		allowed = append(allowed, pod)
	}
	// A burst of new pods (a scale-up, a failover) is served by concurrent creates: one at a
	// time, the last of 1000 pods would wait for 999 round trips.
	projected := 0
	var errs []error
	for i, err := range forEachBounded(len(allowed), projectionWorkers, func(i int) error {
		pod := allowed[i]
		return p.ensureSecret(ctx, obj, pod, ring, existing[dkmv1.KeySecretName(obj.Name, pod.Name)])
	}) {
		// An allowed pod's Secret is never stale, even when restoring it failed: a transient
		// error must not take a replica's key away.
		delete(existing, dkmv1.KeySecretName(obj.Name, allowed[i].Name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		projected++
	}
	// What is left belongs to pods that are gone, stopped matching or are not allowed.
	stale := slices.Collect(maps.Values(existing))
	for _, err := range forEachBounded(len(stale), projectionWorkers, func(i int) error {
		if err := p.Delete(ctx, stale[i]); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting key Secret %s: %w", stale[i].Name, err)
		}
		return nil
	}) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		_ = p.setProjected(ctx, obj, metav1.ConditionFalse, dkmv1.ReasonProjectionFailed, err.Error(), projected)
		return ctrl.Result{}, err
	}
	msg := fmt.Sprintf("%d replica(s) hold active key %s", projected, ring.ActiveID())
	if denied > 0 {
		msg += fmt.Sprintf("; %d matching pod(s) refused: not running as one of spec.replicas.serviceAccountNames", denied)
	}
	return ctrl.Result{}, p.setProjected(ctx, obj, metav1.ConditionTrue, dkmv1.ReasonReady, msg, projected)
}

// projectionWorkers bounds the Secret writes one reconcile has in flight.
const projectionWorkers = 16

// forEachBounded calls fn(0), ..., fn(n-1) on at most workers goroutines and returns each call's
// error at its index. The reads a reconcile shares (the DKMContainer, the ring, the maps built
// before) must not be written while it runs.
func forEachBounded(n, workers int, fn func(i int) error) []error {
	errs := make([]error, n)
	if n == 0 {
		return errs
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				errs[i] = fn(i)
			}
		})
	}
	wg.Wait()
	return errs
}

// ensureSecret creates or restores the pod's Secret so it holds exactly the ring's keys.
func (p *ReplicaProjector) ensureSecret(ctx context.Context, obj *dkmv1.DKMContainer, pod *corev1.Pod, ring *keys.Ring, current *corev1.Secret) error {
	want := desiredSecret(obj, pod, ring)
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

// desiredSecret is the key Secret of one pod: owned by the pod (garbage-collected with it),
// labelled for the label-filtered cache, holding the active key, its ID and every version.
func desiredSecret(obj *dkmv1.DKMContainer, pod *corev1.Pod, ring *keys.Ring) *corev1.Secret {
	data := map[string][]byte{
		SecretKeyActive:   ring.Active().Material.Reveal(),
		SecretKeyActiveID: []byte(ring.ActiveID().String()),
	}
	for _, v := range ring.Versions() {
		data[SecretKeyVersionPrefix+v.ID.String()] = v.Material.Reveal()
	}
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

// countProjected counts the key Secrets among secrets that the projector made for container.
func countProjected(secrets []corev1.Secret, container string) int {
	n := 0
	for i := range secrets {
		if isProjectedSecret(&secrets[i], container) {
			n++
		}
	}
	return n
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

// SetupWithManager watches DKMContainers, the pods they select, their labelled Secrets (through
// the label-filtered cache main.go configures) and the key store's changes.
func (p *ReplicaProjector) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("replicaprojector").
		For(&dkmv1.DKMContainer{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(p.containersSelecting)).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(containerOfSecret)).
		WatchesRawSource(source.Channel(p.Keys.Changes(), &handler.TypedEnqueueRequestForObject[*dkmv1.DKMContainer]{})).
		Complete(p)
}

// containersSelecting maps a pod to the DKMContainers of its namespace whose selector matches
// it, and to those already holding a Secret for it (a pod that stopped matching loses its Secret).
func (p *ReplicaProjector) containersSelecting(ctx context.Context, o client.Object) []reconcile.Request {
	seen := map[string]bool{}
	var reqs []reconcile.Request
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}})
		}
	}
	list := &dkmv1.DKMContainerList{}
	if err := p.List(ctx, list, client.InNamespace(o.GetNamespace())); err == nil {
		for _, d := range list.Items {
			if d.Spec.Replicas == nil {
				continue
			}
			if sel, err := metav1.LabelSelectorAsSelector(&d.Spec.Replicas.Selector); err == nil && sel.Matches(labels.Set(o.GetLabels())) {
				add(d.Name)
			}
		}
	}
	held := &corev1.SecretList{}
	if err := p.List(ctx, held, client.InNamespace(o.GetNamespace()), client.MatchingLabels{LabelPod: truncateLabel(o.GetName())}); err == nil {
		for _, s := range held.Items {
			add(s.Labels[LabelContainer])
		}
	}
	return reqs
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
