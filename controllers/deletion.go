package controllers

import (
	"context"
	"fmt"

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
	patch := client.MergeFrom(obj.DeepCopy())
	controllerutil.RemoveFinalizer(obj, Finalizer)
	if err := r.Patch(ctx, obj, patch); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, nil
}

// deleteFromAD removes what the operator created. done is false while it must wait or retry.
func (r *DKMContainerReconciler) deleteFromAD(ctx context.Context, obj *dkmv1.DKMContainer) (done bool, res ctrl.Result, err error) {
	inUse, err := r.projectedSecrets(ctx, obj)
	if err != nil {
		return false, ctrl.Result{}, err
	}
	if inUse > 0 {
		r.warn(obj, "DeletionWaiting", "Delete", fmt.Sprintf(
			"deletionPolicy Delete: %d replica(s) still hold the key; AD is left untouched until they are gone", inUse))
		return false, ctrl.Result{RequeueAfter: jitter(r.retry())}, nil
	}
	target := ""
	switch {
	case obj.Status.Container != nil && obj.Status.Container.CreatedByOperator:
		target = obj.Status.Container.DN
	case obj.Status.KeyObject != nil && obj.Status.KeyObject.CreatedByOperator:
		target = obj.Status.KeyObject.DN
	}
	if target == "" {
		r.normal(obj, "DeletionRetained", "Delete", "deletionPolicy Delete: the operator created nothing in AD for this resource; nothing removed")
		return true, ctrl.Result{}, nil
	}
	s := newScope(obj, r.now())
	if err := r.connect(ctx, s); err != nil {
		// Directory unreachable or credentials gone: keep the finalizer and retry; deleting the
		// resource must never silently skip the AD cleanup it asked for.
		return false, ctrl.Result{RequeueAfter: jitter(r.retry())}, nil
	}
	if err := s.dir.DeleteTree(ctx, target); err != nil {
		r.warn(obj, "DeletionFailed", "Delete", fmt.Sprintf("deleting %s: %v", target, err))
		return false, ctrl.Result{}, err
	}
	r.normal(obj, "Deleted", "Delete", "deletionPolicy Delete: removed "+target)
	return true, ctrl.Result{}, nil
}

// projectedSecrets counts the key Secrets the projector made for obj.
func (r *DKMContainerReconciler) projectedSecrets(ctx context.Context, obj *dkmv1.DKMContainer) (int, error) {
	list := &corev1.SecretList{}
	if err := r.List(ctx, list, client.InNamespace(obj.Namespace), client.MatchingLabels{LabelContainer: obj.Name}); err != nil {
		return 0, fmt.Errorf("listing key Secrets: %w", err)
	}
	return countProjected(list.Items, obj.Name), nil
}
