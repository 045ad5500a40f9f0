package controllers

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/keys"
)

// A failed write must never cost a replica its key: the envtest suite proves restoring and
// deleting against a real apiserver, this proves the error paths a real apiserver rarely takes.
func TestProjectorKeepsSecretWhenRestoreFails(t *testing.T) {
	ctx := context.Background()
	s := unitScheme(t)
	obj := &dkmv1.DKMContainer{
		ObjectMeta: metav1.ObjectMeta{Name: "vmm", Namespace: "vmm"},
		Spec: dkmv1.DKMContainerSpec{Replicas: &dkmv1.ReplicasSpec{
			Selector:            metav1.LabelSelector{MatchLabels: map[string]string{"app": "vmm"}},
			ServiceAccountNames: []string{"vmm"},
		}},
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "vmm-0", Namespace: "vmm", UID: types.UID("pod-uid"), Labels: map[string]string{"app": "vmm"}},
		Spec:       corev1.PodSpec{ServiceAccountName: "vmm"},
	}
	var guid keys.ObjectGUID
	_, _ = rand.Read(guid[:])
	ring, _, err := keys.NewRing(guid, keys.Plain{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The pod's Secret exists but was tampered with, so the projector must restore it.
	tampered := desiredSecret(obj, pod, ring)
	tampered.Data[SecretKeyActive] = []byte("tampered")

	deletes := 0
	c := fake.NewClientBuilder().WithScheme(s).
		WithObjects(obj, pod, tampered).
		WithStatusSubresource(&dkmv1.DKMContainer{}).
		WithInterceptorFuncs(interceptor.Funcs{
			Update: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.UpdateOption) error {
				if _, ok := o.(*corev1.Secret); ok {
					return apierrors.NewServiceUnavailable("etcd is having a moment")
				}
				return c.Update(ctx, o, opts...)
			},
			Delete: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.DeleteOption) error {
				deletes++
				return c.Delete(ctx, o, opts...)
			},
		}).Build()
	store := NewKeyStore()
	store.Set(obj, ring)
	p := &ReplicaProjector{Client: c, APIReader: c, Recorder: events.NewFakeRecorder(10), Keys: store}

	_, err = p.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
	if !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("Reconcile: %v, want the restore's error returned (and retried)", err)
	}
	if deletes != 0 {
		t.Errorf("the projector deleted %d Secret(s) after a failed restore", deletes)
	}
	got := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(tampered), got); err != nil {
		t.Fatalf("the pod's Secret is gone after a failed restore: %v", err)
	}
	status := &dkmv1.DKMContainer{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), status); err != nil {
		t.Fatal(err)
	}
	if cond := meta.FindStatusCondition(status.Status.Conditions, dkmv1.ConditionReplicasProjected); cond == nil ||
		cond.Status != metav1.ConditionFalse || cond.Reason != dkmv1.ReasonProjectionFailed {
		t.Errorf("ReplicasProjected = %+v, want False/%s", cond, dkmv1.ReasonProjectionFailed)
	}
}

// unitScheme is the scheme of the unit tests' fake clients: client-go's types and ours.
func unitScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := dkmv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}
