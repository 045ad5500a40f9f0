// Package controllers holds the DKMContainer reconciler (the AD side: container, DACL, key
// object) and the replica projector (pods → key Secrets).
package controllers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
)

// Finalizer lets the operator honour spec.deletionPolicy before a DKMContainer goes away.
const Finalizer = "dkm.io/finalizer"

// Defaults for the reconciler's timing.
const (
	// DefaultResync is how often a healthy DKMContainer is re-read from AD to catch drift.
	DefaultResync = 10 * time.Minute
	// DefaultRetry is how soon a condition a person must fix (rights, a missing Secret, a
	// missing parent) is looked at again, so the fix takes effect without further action.
	DefaultRetry = time.Minute
	// DefaultWorkers is how many DKMContainers are reconciled at once. A reconcile mostly waits
	// on LDAP, and one whose DCs black-hole waits up to 16 dial timeouts plus operation
	// timeouts: with one worker, that domain would hold back every other.
	DefaultWorkers = 4
)

// DKMContainerReconciler makes AD match a DKMContainer: the container, its protected DACL, the
// `DC Manager` key object and its keys. It never regenerates or overwrites an existing key.
type DKMContainerReconciler struct {
	client.Client
	// APIReader reads the referenced Secrets straight from the API server: the manager's cache
	// holds only Secrets labelled for projection, never the bind or KEK Secrets.
	APIReader   client.Reader
	Recorder    events.EventRecorder
	Directories DirectoryFactory
	Keys        *KeyStore
	Metrics     *Metrics
	// Watcher, when set, watches each bound DKMContainer's container with AD change
	// notification, so a change is reconciled at once (watch.go); nil: the resync only.
	Watcher *directory.Watcher
	// ClusterID identifies this cluster in the ownership records the operator writes to AD
	// (the UID of the kube-system namespace): a second cluster on the same path is a reader.
	ClusterID string
	// Resync and Retry default to DefaultResync and DefaultRetry.
	Resync time.Duration
	Retry  time.Duration
	// Now is the clock (tests may pin it).
	Now func() time.Time
	// LockoutRetry is how long after AD reported the bind account locked out it is tried once
	// more by itself (default DefaultLockoutRetry); any other terminal bind failure waits for a
	// change of the referenced Secrets or spec.directory.
	LockoutRetry time.Duration
	// CommitRetry is how soon a key waiting for replication to spec.directory.minKeyCopies DCs,
	// or for a DC to answer, is looked at again (default DefaultCommitRetry).
	CommitRetry time.Duration
	// Workers is how many DKMContainers are reconciled at once (default DefaultWorkers). One
	// DKMContainer is never reconciled by two at once (the work queue guarantees it).
	Workers int

	// bindFailures is the last terminal bind failure of each DKMContainer (see bindgate.go).
	bindFailures bindFailures
	// dcs caches the DC writes go to, per list of URLs (multidc.go).
	dcs dcChoices
	// secrets watches the metadata of the Secrets in the namespaces that hold a DKMContainer
	// (secretwatch.go); nil when not set up with a manager.
	secrets *namespaceCaches
}

// +kubebuilder:rbac:groups=dkm.io,resources=dkmcontainers,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=dkm.io,resources=dkmcontainers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=dkm.io,resources=dkmcontainers/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile runs the phases connect → container → access → key for one DKMContainer and
// patches its status once, only when it changed.
func (r *DKMContainerReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := &dkmv1.DKMContainer{}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			r.Keys.Forget(req.NamespacedName)
			r.bindFailures.forget(req.NamespacedName)
			r.forgetWatch(req.NamespacedName)
			return ctrl.Result{}, r.releaseSecretsOf(ctx, req.Namespace)
		}
		return ctrl.Result{}, err
	}
	r.watchSecretsOf(ctx, req.Namespace)
	if !obj.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, obj)
	}
	if !controllerutil.ContainsFinalizer(obj, Finalizer) {
		patch := client.MergeFrom(obj.DeepCopy())
		controllerutil.AddFinalizer(obj, Finalizer)
		if err := r.Patch(ctx, obj, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
	}

	s := newScope(obj, r.now())
	// Before AD is tried (a down DC can take dial timeouts to fail): after a restart, serve
	// new replicas from their Secrets at once.
	r.recoverKeys(ctx, s)
	result, err := r.runPhases(ctx, s)
	if perr := r.patchStatus(ctx, s); perr != nil {
		return ctrl.Result{}, errors.Join(err, perr)
	}
	if err != nil {
		r.Metrics.ReconcileError(s.failureReason())
		if r.Keys.Recovered(req.NamespacedName) {
			// Keys served from replica Secrets: try AD again soon, not after a backoff that
			// has grown to minutes.
			logf.FromContext(ctx).Info("transient failure while serving keys from replica Secrets; trying AD again soon",
				"reason", s.failureReason(), "error", err.Error(), "after", ReplicaKeysProbe)
			return ctrl.Result{RequeueAfter: jitter(ReplicaKeysProbe)}, nil
		}
		logf.FromContext(ctx).Info("transient failure; will retry with backoff", "reason", s.failureReason(), "error", err.Error())
	}
	return result, err
}

// runPhases runs each phase in order; a phase that cannot finish stops the rest, whose
// conditions become Unknown (Blocked).
func (r *DKMContainerReconciler) runPhases(ctx context.Context, s *scope) (ctrl.Result, error) {
	phases := []struct {
		condition string
		run       func(context.Context, *scope) error
	}{
		{dkmv1.ConditionDirectoryReachable, r.connect},
		{dkmv1.ConditionAccessControlled, r.resolveAccounts},
		{dkmv1.ConditionContainerReady, r.reconcileContainer},
		{dkmv1.ConditionAccessControlled, r.reconcileAccess},
		{dkmv1.ConditionKeyReady, r.reconcileKey},
	}
	for i, p := range phases {
		err := p.run(ctx, s)
		if err == nil {
			continue
		}
		if i == 0 {
			// Not bound with these settings: watching with them would bind where the
			// reconciler cannot (a wrong password) or may not (changed settings).
			r.forgetWatch(namespacedName(s.obj))
		}
		for _, later := range phases[i+1:] {
			if later.condition != p.condition {
				markBlocked(s.obj, later.condition, p.condition)
			}
		}
		r.markKeysNotRead(s, p.condition)
		s.finish()
		var stop *stopError
		if errors.As(err, &stop) {
			// Someone must act (fix rights, a Secret, the spec): no error, so no hot loop, but
			// look again soon so the fix takes effect by itself; or, when only a change can
			// help (a refused bind), when the change arrives through the watches.
			switch {
			case stop.after > 0:
				return ctrl.Result{RequeueAfter: stop.after}, nil
			case stop.untilChange:
				return ctrl.Result{}, nil
			}
			return ctrl.Result{RequeueAfter: jitter(r.retry())}, nil
		}
		return ctrl.Result{}, err
	}
	r.reconcileReplicasCondition(s)
	s.changesCarriedOut()
	s.finish()
	return ctrl.Result{RequeueAfter: jitter(r.resync())}, nil
}

// reconcileReplicasCondition owns ReplicasProjected only when no replicas are configured; with
// replicas, the projector sets it.
func (r *DKMContainerReconciler) reconcileReplicasCondition(s *scope) {
	if s.obj.Spec.Replicas == nil {
		markTrue(s.obj, dkmv1.ConditionReplicasProjected, dkmv1.ReasonNoReplicas, "spec.replicas is not set: no pod receives the key")
		s.obj.Status.ProjectedReplicas = 0
	}
}

// patchStatus writes status only when it differs from what was read: a steady-state reconcile
// makes no Kubernetes write.
func (r *DKMContainerReconciler) patchStatus(ctx context.Context, s *scope) error {
	if equality.Semantic.DeepEqual(s.original.Status, s.obj.Status) {
		return nil
	}
	return r.applyStatus(ctx, s.obj)
}

// applyStatus writes the reconciler's part of status (server-side apply, its own field owner).
func (r *DKMContainerReconciler) applyStatus(ctx context.Context, obj *dkmv1.DKMContainer) error {
	part, err := reconcilerStatus(obj)
	if err != nil {
		return err
	}
	if err := applyStatus(ctx, r.Client, obj, ReconcilerFieldOwner, part); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

func (r *DKMContainerReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *DKMContainerReconciler) resync() time.Duration {
	if r.Resync > 0 {
		return r.Resync
	}
	return DefaultResync
}

func (r *DKMContainerReconciler) workers() int {
	if r.Workers > 0 {
		return r.Workers
	}
	return DefaultWorkers
}

func (r *DKMContainerReconciler) retry() time.Duration {
	if r.Retry > 0 {
		return r.Retry
	}
	return DefaultRetry
}

// jitter spreads requeues by up to +10% so many DKMContainers do not hit AD in lockstep.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/10+1))
}

// SetupWithManager watches DKMContainers (spec changes and annotations; status-only updates are
// ignored, the reconciler made them) and the metadata of the Secrets they reference (a fixed
// bind, CA or KEK Secret takes effect at once), with jittered exponential backoff on transient
// failures.
func (r *DKMContainerReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := r.watchReferencedSecrets(mgr); err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(mgr)
	if r.Watcher != nil {
		b = b.WatchesRawSource(r.watchSource())
	}
	ctl, err := b.
		For(&dkmv1.DKMContainer{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, replicasProjectedChanged()))).
		WithOptions(controller.Options{
			RateLimiter:             NewJitteredBackoff(time.Second, 5*time.Minute),
			MaxConcurrentReconciles: r.workers(),
		}).
		Named("dkmcontainer").
		Build(r)
	if err != nil {
		return err
	}
	// The Secrets of a namespace are watched from a DKMContainer's first reconcile there.
	r.secrets.watch = func(c cache.Cache) error { return ctl.Watch(r.secretSource(c)) }
	return nil
}

// replicasProjectedChanged passes the projector's status changes that move Ready: the
// reconciler alone computes Ready, from its own conditions and the projector's.
func replicasProjectedChanged() predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		old, okOld := e.ObjectOld.(*dkmv1.DKMContainer)
		cur, okNew := e.ObjectNew.(*dkmv1.DKMContainer)
		if !okOld || !okNew {
			return false
		}
		a := meta.FindStatusCondition(old.Status.Conditions, dkmv1.ConditionReplicasProjected)
		b := meta.FindStatusCondition(cur.Status.Conditions, dkmv1.ConditionReplicasProjected)
		switch {
		case a == nil || b == nil:
			return (a == nil) != (b == nil)
		case a.Status != b.Status || a.Reason != b.Reason:
			return true
		default:
			// Ready repeats the message of a condition that is not True.
			return b.Status != metav1.ConditionTrue && a.Message != b.Message
		}
	}}
}

// NewJitteredBackoff is per-item exponential backoff (base doubling to max) with ±20% jitter,
// so a DC outage does not make every DKMContainer retry at the same instants.
func NewJitteredBackoff(base, max time.Duration) workqueue.TypedRateLimiter[reconcile.Request] {
	return &jitteredBackoff{inner: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](base, max)}
}

type jitteredBackoff struct {
	inner workqueue.TypedRateLimiter[reconcile.Request]
}

func (j *jitteredBackoff) When(item reconcile.Request) time.Duration {
	d := j.inner.When(item)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func (j *jitteredBackoff) Forget(item reconcile.Request) { j.inner.Forget(item) }

func (j *jitteredBackoff) NumRequeues(item reconcile.Request) int { return j.inner.NumRequeues(item) }

// stopError ends a reconcile on a condition only a person can fix; it is not retried with
// backoff (that would be a hot loop on a terminal error) but looked at again after Retry, or
// after `after` when set, or, with untilChange, only when a watched object changes.
type stopError struct {
	reason      string
	untilChange bool
	after       time.Duration
}

func (e *stopError) Error() string { return "stopped: " + e.reason }

func stop(reason string) error { return &stopError{reason: reason} }

// namespacedName of a DKMContainer.
func namespacedName(obj *dkmv1.DKMContainer) types.NamespacedName {
	return types.NamespacedName{Namespace: obj.Namespace, Name: obj.Name}
}
