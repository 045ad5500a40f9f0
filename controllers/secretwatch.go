package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
)

// The reconciler reads the bind, CA and KEK Secrets straight from the API server and must hear
// when they change: a refused bind is retried only then (bindgate.go), and a fixed KEK or CA
// should take effect at once. Those Secrets carry no label, and the manager's cache holds only
// Secrets labelled dkm.io/container (CacheOptions), with their data. Its settings are per type
// (a metadata-only watch of Secrets through it would see the labelled ones only), so the watch
// runs on caches of its own: metadata only, one per namespace that holds a DKMContainer
// (namespaceCaches; a cluster's other Secrets, however many, are never listed), cut down to the
// identity and version (no data ever, and no annotations, which can hold a kubectl-applied
// Secret's data in last-applied-configuration).

// indexReferencedSecrets indexes DKMContainers by the names of the Secrets they reference.
const indexReferencedSecrets = "dkm.io/referenced-secrets"

// referencedSecrets are the names of the bind, CA and KEK Secrets obj reads.
func referencedSecrets(obj *dkmv1.DKMContainer) []string {
	names := []string{obj.Spec.Directory.BindSecretRef.Name}
	if ref := obj.Spec.Directory.CABundleSecretRef; ref != nil {
		names = append(names, ref.Name)
	}
	if ref := obj.Spec.KeyProtection.KEKSecretRef; ref != nil {
		names = append(names, ref.Name)
	}
	slices.Sort(names)
	return slices.DeleteFunc(slices.Compact(names), func(n string) bool { return n == "" })
}

// secretMetadata is the type the Secret watch caches.
func secretMetadata() *metav1.PartialObjectMetadata {
	secret := &metav1.PartialObjectMetadata{}
	secret.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return secret
}

// watchReferencedSecrets indexes DKMContainers by referenced Secret and sets up r.secrets, the
// per-namespace Secret metadata caches; watch (given the controller once it is built) makes
// it enqueue every DKMContainer referencing a Secret that was created, changed or deleted.
func (r *DKMContainerReconciler) watchReferencedSecrets(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &dkmv1.DKMContainer{}, indexReferencedSecrets,
		func(o client.Object) []string { return referencedSecrets(o.(*dkmv1.DKMContainer)) }); err != nil {
		return fmt.Errorf("indexing DKMContainers by Secret: %w", err)
	}
	r.secrets = newSecretCaches(mgr.GetConfig(), cache.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(), HTTPClient: mgr.GetHTTPClient(),
	})
	return mgr.Add(r.secrets)
}

// newSecretCaches returns the Secret metadata caches, cut down to identity and version.
func newSecretCaches(config *rest.Config, base cache.Options) *namespaceCaches {
	base.DefaultTransform = secretIdentityOnly
	return &namespaceCaches{config: config, base: base, object: secretMetadata()}
}

// secretSource is the source of one namespace's Secret metadata cache.
func (r *DKMContainerReconciler) secretSource(c cache.Cache) source.Source {
	return source.Kind(c, secretMetadata(),
		handler.TypedEnqueueRequestsFromMapFunc(r.containersReferencing),
		predicate.TypedResourceVersionChangedPredicate[*metav1.PartialObjectMetadata]{})
}

// watchSecretsOf starts watching the Secrets of ns, where obj is. It does not wait for the
// cache: its first list enqueues obj again, so a change made meanwhile is not missed.
func (r *DKMContainerReconciler) watchSecretsOf(ctx context.Context, ns string) {
	if r.secrets == nil {
		return // not set up (tests call Reconcile directly)
	}
	if _, err := r.secrets.ensure(ns); err != nil && !errors.Is(err, errCachesNotStarted) {
		logf.FromContext(ctx).Error(err, "watching the Secrets of a namespace", "namespace", ns)
	}
}

// releaseSecretsOf stops watching the Secrets of ns when no DKMContainer is left there.
func (r *DKMContainerReconciler) releaseSecretsOf(ctx context.Context, ns string) error {
	if r.secrets == nil {
		return nil
	}
	list := &dkmv1.DKMContainerList{}
	if err := r.List(ctx, list, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("listing the DKMContainers of namespace %s: %w", ns, err)
	}
	if len(list.Items) == 0 {
		r.secrets.release(ns)
	}
	return nil
}

// secretIdentityOnly keeps of a Secret's metadata only what tells its versions apart.
func secretIdentityOnly(in any) (any, error) {
	m, ok := in.(*metav1.PartialObjectMetadata)
	if !ok {
		return in, nil
	}
	return &metav1.PartialObjectMetadata{
		TypeMeta: m.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
			DeletionTimestamp: m.DeletionTimestamp,
		},
	}, nil
}

// containersReferencing maps a Secret to the DKMContainers of its namespace that reference it.
func (r *DKMContainerReconciler) containersReferencing(ctx context.Context, s *metav1.PartialObjectMetadata) []reconcile.Request {
	list := &dkmv1.DKMContainerList{}
	if err := r.List(ctx, list, client.InNamespace(s.Namespace), client.MatchingFields{indexReferencedSecrets: s.Name}); err != nil {
		logf.FromContext(ctx).Error(err, "listing the DKMContainers that reference a Secret", "secret", s.Namespace+"/"+s.Name)
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, d := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: d.Namespace, Name: d.Name}})
	}
	return reqs
}
