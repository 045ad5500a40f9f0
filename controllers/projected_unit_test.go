package controllers

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
)

// deletionPolicy Delete waits while replicas hold the key: it counts the key Secrets the
// projector made, not a user's Secret that happens to carry the dkm.io/container label.
func TestDeletionCountsOnlyProjectedSecrets(t *testing.T) {
	s := unitScheme(t)
	obj := &dkmv1.DKMContainer{ObjectMeta: metav1.ObjectMeta{Name: "vmm", Namespace: "vmm"}}
	projected := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Name: dkmv1.KeySecretName("vmm", "vmm-0"), Namespace: "vmm",
		Labels:          map[string]string{LabelContainer: "vmm", LabelPod: "vmm-0"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: "vmm-0", UID: types.UID("pod-uid")}},
	}}
	user := func(name string, labels map[string]string, owners ...metav1.OwnerReference) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "vmm", Labels: labels, OwnerReferences: owners}}
	}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(obj, projected,
		// The bind Secret, labelled by its owner.
		user("dkm-bind", map[string]string{LabelContainer: "vmm"}),
		// Labelled as if for a pod, but not named or owned as the projector does.
		user("vmm-notes", map[string]string{LabelContainer: "vmm", LabelPod: "vmm-0"}),
		// Named and labelled like a key Secret, but owned by something else than the pod.
		user(dkmv1.KeySecretName("vmm", "vmm-1"), map[string]string{LabelContainer: "vmm", LabelPod: "vmm-1"},
			metav1.OwnerReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "vmm-1", UID: "sts"}),
	).Build()
	r := &DKMContainerReconciler{Client: c}
	held, err := r.projectedSecrets(context.Background(), obj)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(held); n != 1 {
		t.Fatalf("projectedSecrets = %d, want 1 (only the key Secret the projector made)", n)
	}
}
