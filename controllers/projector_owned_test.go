package controllers

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
)

// A person may label their own Secrets dkm.io/container=<name> (to find them, or copying the
// projected ones' labels): the projector must delete only the key Secrets it made.
var _ = Describe("Projector cleanup", func() {
	It("deletes only key Secrets it made, never a user's Secret labelled for the same DKMContainer", func(ctx context.Context) {
		f := newFixture(ctx)
		Expect(k8sClient.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "vmm", Namespace: f.ns}})).To(Succeed())
		// The bind, CA and KEK Secrets, and an unrelated one, all labelled for the DKMContainer.
		for _, name := range []string{"bind", "ca", "kek"} {
			s := f.getSecret(ctx, name)
			s.Labels = map[string]string{LabelContainer: "vmm"}
			Expect(k8sClient.Update(ctx, s)).To(Succeed())
		}
		notes := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vmm-notes", Namespace: f.ns,
			Labels: map[string]string{LabelContainer: "vmm", LabelPod: "vmm-0"}}, StringData: map[string]string{"n": "x"}}
		Expect(k8sClient.Create(ctx, notes)).To(Succeed())

		obj := f.dkm("vmm", f.path("owned"))
		obj.Spec.Replicas = &dkmv1.ReplicasSpec{
			Selector:            metav1.LabelSelector{MatchLabels: map[string]string{"app": "vmm"}},
			ServiceAccountNames: []string{"vmm"},
		}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "vmm-0", Namespace: f.ns, Labels: map[string]string{"app": "vmm"}},
			Spec:       corev1.PodSpec{ServiceAccountName: "vmm", Containers: []corev1.Container{{Name: "vmm", Image: "vmm:2012"}}},
		}
		Expect(k8sClient.Create(ctx, pod)).To(Succeed())
		projected := client.ObjectKey{Namespace: f.ns, Name: dkmv1.KeySecretName(obj.Name, pod.Name)}
		Eventually(func() error { return k8sClient.Get(ctx, projected, &corev1.Secret{}) }, eventually).Should(Succeed())

		userSecrets := func(g Gomega) {
			for _, name := range []string{"bind", "ca", "kek", "vmm-notes"} {
				g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: name}, &corev1.Secret{})).To(Succeed(), name)
			}
		}
		Consistently(userSecrets, 3*time.Second, 200*time.Millisecond).Should(Succeed())
		expectCondition(ctx, obj, dkmv1.ConditionReady, metav1.ConditionTrue, dkmv1.ReasonReady)

		// The pod goes: its key Secret is removed (envtest runs no garbage collector), the
		// user's Secrets stay.
		Expect(k8sClient.Delete(ctx, pod, client.GracePeriodSeconds(0))).To(Succeed())
		Eventually(func() error { return k8sClient.Get(ctx, projected, &corev1.Secret{}) }, eventually).ShouldNot(Succeed())
		Consistently(userSecrets, 2*time.Second, 200*time.Millisecond).Should(Succeed())
	})
})
