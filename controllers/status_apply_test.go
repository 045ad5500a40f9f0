package controllers

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
)

var _ = Describe("Status ownership", func() {
	It("lets the reconciler and the projector write from stale copies without a conflict or a lost field", func(ctx context.Context) {
		f := newFixture(ctx)
		obj := f.dkm("status", f.path("status"))
		obj.Spec.Replicas = &dkmv1.ReplicasSpec{
			Selector:            metav1.LabelSelector{MatchLabels: map[string]string{"app": "status"}},
			ServiceAccountNames: []string{"default"},
		}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		ready := expectReadyObj(ctx, obj)
		Expect(ready.Status.Container.CreatedByOperator).To(BeTrue())

		// Both controllers hold the same, soon stale, copy. The projector writes first; under
		// the merge patches with optimistic locking the reconciler's write then failed with a
		// conflict, and what that reconcile had learnt was lost.
		stale := ready.DeepCopy()
		projector := stale.DeepCopy()
		setCondition(projector, dkmv1.ConditionReplicasProjected, metav1.ConditionTrue, dkmv1.ReasonReady, "projector wrote this")
		projector.Status.ProjectedReplicas = 7
		part, err := projectorStatus(projector)
		Expect(err).NotTo(HaveOccurred())
		Expect(applyStatus(ctx, k8sClient, projector, ProjectorFieldOwner, part)).To(Succeed())

		reconciler := stale.DeepCopy()
		reconciler.Status.LastDrift = &dkmv1.DriftStatus{Time: metav1.Now(), Unexpected: []string{"(A;;RP;;;AU)"}}
		part, err = reconcilerStatus(reconciler)
		Expect(err).NotTo(HaveOccurred())
		Expect(applyStatus(ctx, k8sClient, reconciler, ReconcilerFieldOwner, part)).To(Succeed(), "no conflict on a stale copy")

		got := get(ctx, obj)
		Expect(got.Status.LastDrift).NotTo(BeNil(), "the reconciler's write landed")
		Expect(got.Status.Container.CreatedByOperator).To(BeTrue(), "and kept what it owned")
		Expect(got.Status.ProjectedReplicas).To(BeEquivalentTo(7), "the projector's count survived the reconciler's write")
		c := meta.FindStatusCondition(got.Status.Conditions, dkmv1.ConditionReplicasProjected)
		Expect(c).NotTo(BeNil())
		Expect(c.Message).To(Equal("projector wrote this"))
		Expect(meta.FindStatusCondition(got.Status.Conditions, dkmv1.ConditionKeyReady)).NotTo(BeNil())
	})
})
