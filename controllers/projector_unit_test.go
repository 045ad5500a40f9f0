package controllers

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
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
	tampered := desiredSecret(obj, pod, ringData(ring))
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

	_, err = p.reconcilePod(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(pod)})
	if !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("reconcilePod: %v, want the restore's error returned (and retried)", err)
	}
	if _, err := p.reconcileStatus(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(obj)}); err != nil {
		t.Fatalf("reconcileStatus: %v", err)
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

// A burst's status events land in one write per statusDelay: the first at once, every later
// one in the window joins the one booked after it.
func TestStatusPace(t *testing.T) {
	obj := types.NamespacedName{Namespace: "vmm", Name: "vmm"}
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	var pace statusPace
	for _, step := range []struct {
		now  time.Time
		want time.Duration
	}{
		{at(0), 0}, // free: now
		{at(100 * time.Millisecond), 900 * time.Millisecond},  // booked for t0+1s
		{at(500 * time.Millisecond), 500 * time.Millisecond},  // joins it
		{at(1200 * time.Millisecond), 800 * time.Millisecond}, // the next slot, t0+2s
		{at(5 * time.Second), 0},                              // long quiet: now again
	} {
		if got := pace.next(obj, step.now); got != step.want {
			t.Errorf("next at +%s = %s, want %s", step.now.Sub(t0), got, step.want)
		}
	}
	other := types.NamespacedName{Namespace: "vmm", Name: "other"}
	if got := pace.next(other, at(5*time.Second)); got != 0 {
		t.Errorf("another DKMContainer waits %s, want its own pace", got)
	}
}

// The pod cache keeps only what projection reads.
func TestProjectionFields(t *testing.T) {
	deleting := metav1.Now()
	in := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "vmm-0", Namespace: "vmm", UID: "uid", ResourceVersion: "7", DeletionTimestamp: &deleting,
			Labels: map[string]string{"app": "vmm"}, Annotations: map[string]string{"big": "x"},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
			OwnerReferences: []metav1.OwnerReference{{Kind: "StatefulSet", Name: "vmm"}},
		},
		Spec:   corev1.PodSpec{ServiceAccountName: "vmm", NodeName: "node", Containers: []corev1.Container{{Name: "vmm"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"},
	}
	out, err := projectionFields(in)
	if err != nil {
		t.Fatal(err)
	}
	want := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "vmm-0", Namespace: "vmm", UID: "uid", ResourceVersion: "7",
			DeletionTimestamp: &deleting, Labels: map[string]string{"app": "vmm"}},
		Spec:   corev1.PodSpec{ServiceAccountName: "vmm"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if !equality.Semantic.DeepEqual(out, want) {
		t.Errorf("projectionFields = %+v, want %+v", out, want)
	}
	if tomb, _ := projectionFields("not a pod"); tomb != "not a pod" {
		t.Errorf("projectionFields changed a non-pod: %v", tomb)
	}
}
