package controllers

import (
	"context"
	"fmt"
	"strings"

	logf "sigs.k8s.io/controller-runtime/pkg/log"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
)

// LabelContainer marks the key Secrets projected for a DKMContainer (value: its name).
const LabelContainer = "dkm.io/container"

// reconcileDelete honours spec.deletionPolicy. Retain (the default) leaves AD untouched. Delete
// removes only what this operator created — the container when it created it, otherwise the
// DC Manager object it created — and never while a replica still holds a key Secret.
func (r *DKMContainerReconciler) reconcileDelete(ctx context.Context, obj *dkmv1.DKMContainer) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(obj, Finalizer) {
		return ctrl.Result{}, nil
	}
	if obj.Spec.DeletionPolicy == dkmv1.DeletionDelete {
		if done, res, err := r.deleteFromAD(ctx, obj); !done {
			return res, err
		}
	}
	r.Keys.Forget(namespacedName(obj))
	r.Metrics.Forget(obj.Namespace, obj.Name)
	r.forgetWatch(namespacedName(obj))
	patch := client.MergeFrom(obj.DeepCopy())
	controllerutil.RemoveFinalizer(obj, Finalizer)
	if err := r.Patch(ctx, obj, patch); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, nil
}

// deleteFromAD removes what this DKMContainer created in AD, decided from the ownership
// records in AD (never from status): objects whose record names this owner with origin created,
// each deleted by objectGUID, deepest first. Anything else (a claimed or adopted container, a
// person's objects, another owner's) stays. done is false while it must wait or retry.
func (r *DKMContainerReconciler) deleteFromAD(ctx context.Context, obj *dkmv1.DKMContainer) (done bool, res ctrl.Result, err error) {
	if waiting, err := r.keyStillHeld(ctx, obj); err != nil || waiting != "" {
		if err != nil {
			return false, ctrl.Result{}, err
		}
		r.blockDeletion(ctx, obj, "DeletionWaiting", waiting)
		return false, ctrl.Result{RequeueAfter: jitter(r.retry())}, nil
	}
	s := newScope(obj, r.now())
	if err := r.connect(ctx, s); err != nil {
		// Directory unreachable or the bind Secret gone (a terminating namespace deletes it
		// first): keep the finalizer, say why and how out; never silently skip the cleanup.
		r.blockDeletion(ctx, obj, "DeletionBlocked", fmt.Sprintf(
			"deletionPolicy Delete cannot reach AD to remove what this DKMContainer created (%v); restore the bind "+
				"Secret or the directory, or set spec.deletionPolicy: Retain to let this resource go and leave AD untouched", err))
		return false, ctrl.Result{RequeueAfter: jitter(r.retry())}, nil
	}
	obs, err := s.dir.Observe(ctx, obj.Spec.Path)
	if err != nil {
		return false, ctrl.Result{}, fmt.Errorf("reading %s before deleting: %w", obj.Spec.Path, err)
	}
	if !obs.Exists {
		r.normal(obj, "DeletionRetained", "Delete", fmt.Sprintf("deletionPolicy Delete: %s does not exist; nothing removed", obj.Spec.Path))
		return true, ctrl.Result{}, nil
	}
	left, err := s.dir.DeleteOwned(ctx, obs.Container.GUID, r.owner(obj))
	if err != nil {
		r.warn(obj, "DeletionFailed", "Delete", fmt.Sprintf("deleting what this DKMContainer created under %s: %v", obj.Spec.Path, err))
		return false, ctrl.Result{}, err
	}
	msg := fmt.Sprintf("deletionPolicy Delete: removed what this DKMContainer created under %s", obj.Spec.Path)
	if len(left) > 0 {
		msg += fmt.Sprintf("; left %d object(s) it did not create (or that still hold such objects), first %s", len(left), left[0])
	}
	r.normal(obj, "Deleted", "Delete", msg)
	return true, ctrl.Result{}, nil
}

// keyStillHeld says why AD must not be touched yet: a replica of this DKMContainer still holds
// a key Secret, or another DKMContainer in this cluster reads the same path. (Readers in other
// clusters cannot be seen from here; docs/design.md says so.)
func (r *DKMContainerReconciler) keyStillHeld(ctx context.Context, obj *dkmv1.DKMContainer) (string, error) {
	inUse, err := r.projectedSecrets(ctx, obj)
	if err != nil {
		return "", err
	}
	if len(inUse) > 0 {
		return fmt.Sprintf("deletionPolicy Delete: %d replica(s) still hold the key; AD is left untouched until they are gone", len(inUse)), nil
	}
	all := &dkmv1.DKMContainerList{}
	if err := r.List(ctx, all); err != nil {
		return "", fmt.Errorf("listing DKMContainers: %w", err)
	}
	for _, other := range all.Items {
		if other.UID != obj.UID && other.DeletionTimestamp.IsZero() && strings.EqualFold(other.Spec.Path, obj.Spec.Path) {
			return fmt.Sprintf("deletionPolicy Delete: DKMContainer %s/%s reads the same container; AD is left untouched while it exists",
				other.Namespace, other.Name), nil
		}
	}
	return "", nil
}

// blockDeletion tells why the finalizer stays, on the Ready condition and as an event (the
// event may be refused in a terminating namespace; the condition is not).
func (r *DKMContainerReconciler) blockDeletion(ctx context.Context, obj *dkmv1.DKMContainer, reason, msg string) {
	r.warn(obj, reason, "Delete", msg)
	markFalse(obj, dkmv1.ConditionReady, reason, msg)
	if err := r.applyStatus(ctx, obj); err != nil {
		logf.FromContext(ctx).Info("recording why deletion waits", "error", err.Error())
	}
}

// projectedSecrets lists the key Secrets the projector made for obj: labelled for it, and named
// and owned as the projector names and owns them (isProjectedSecret). Deletion counts them;
// recovery and restore read keys from them.
func (r *DKMContainerReconciler) projectedSecrets(ctx context.Context, obj *dkmv1.DKMContainer) ([]*corev1.Secret, error) {
	list := &corev1.SecretList{}
	if err := r.List(ctx, list, client.InNamespace(obj.Namespace), client.MatchingLabels{LabelContainer: obj.Name}); err != nil {
		return nil, fmt.Errorf("listing key Secrets: %w", err)
	}
	var out []*corev1.Secret
	for i := range list.Items {
		if isProjectedSecret(&list.Items[i], obj.Name) {
			out = append(out, &list.Items[i])
		}
	}
	return out, nil
}
