package e2e

import (
	"bytes"
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/controllers"
	"github.com/dkm-operator/dkm-operator/internal/keys"
)

// settle is how long a replacement's key Secret must stay put once it looks right: long enough
// for a late garbage collection of the old owner's Secret, or a projector retry, to show.
const settle = 3 * time.Second

var _ = Describe("Replica key Secrets with a real garbage collector", func() {
	var f *fixture
	BeforeEach(func(ctx context.Context) {
		f = newFixture(ctx)
	})

	It("are deleted with their pod by kube-controller-manager, not by the operator", func(ctx context.Context) {
		op := startOperator()
		obj := f.createDKM(ctx, "vmm")
		pod := createPod(ctx, f.ns, "vmm-solo")
		name := dkmv1.KeySecretName(obj.Name, pod.Name)
		Eventually(secretView(ctx, f.ns, name), eventually, poll).Should(SatisfyAll(
			HaveField("Labelled", BeTrue()),
			HaveField("Fingerprint", activeFingerprint(ctx, obj)),
			HaveField("Owners", ConsistOf(SatisfyAll(
				HaveField("APIVersion", "v1"), HaveField("Kind", "Pod"),
				HaveField("Name", pod.Name), HaveField("UID", pod.UID)))),
		))
		// A control: owned by the same pod but not labelled for the operator, which never sees it.
		bystander := createOwnedSecret(ctx, pod, "bystander")

		// With the operator stopped, only the garbage collector can remove the key Secret.
		op.stop()
		Expect(k8sClient.Delete(ctx, pod, client.GracePeriodSeconds(0))).To(Succeed())
		for _, n := range []string{name, bystander} {
			Eventually(notFound(ctx, f.ns, n), eventually, poll).Should(BeTrue(), "Secret %s outlived its pod", n)
			Eventually(func() bool { return kcm.Collected("", "v1", "Secret", f.ns, n) }, eventually, poll).
				Should(BeTrue(), "kube-controller-manager's log does not show it deleting Secret %s", n)
		}
	})

	It("hand a StatefulSet's replacement pod-0 the same key, owned by its new UID, and keep it there", func(ctx context.Context) {
		startOperator()
		obj := f.createDKM(ctx, "vmm")
		createStatefulSet(ctx, f.ns, "vmm")
		const podName = "vmm-0"
		name := dkmv1.KeySecretName(obj.Name, podName)

		uid := waitForPod(ctx, f.ns, podName, "")
		Eventually(secretView(ctx, f.ns, name), eventually, poll).Should(SatisfyAll(
			HaveField("Owners", ConsistOf(HaveField("UID", uid))),
			HaveField("Fingerprint", activeFingerprint(ctx, obj)),
		))
		// The key bytes stay in this variable: they are compared, never printed.
		want, err := secretKey(ctx, f.ns, name)
		Expect(err).NotTo(HaveOccurred())

		for round := 1; round <= 3; round++ {
			old := uid
			start := time.Now()
			Expect(k8sClient.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: f.ns}},
				client.GracePeriodSeconds(0), client.Preconditions{UID: &old})).To(Succeed())
			uid = waitForPod(ctx, f.ns, podName, old)
			Eventually(holdsKey(ctx, f.ns, name, uid, want), eventually, poll).Should(Succeed(), "failover %d", round)
			AddReportEntry(fmt.Sprintf("failover %d: replacement pod-0 holds its key after", round), time.Since(start).Round(time.Millisecond))
			Consistently(holdsKey(ctx, f.ns, name, uid, want), settle, poll).Should(Succeed(), "failover %d", round)
		}
	})
})

// keySecretView is what a spec may print about a key Secret: never its bytes.
type keySecretView struct {
	Labelled    bool
	Owners      []metav1.OwnerReference
	Fingerprint string
}

// secretView reads a key Secret into its printable view.
func secretView(ctx context.Context, ns, name string) func() (keySecretView, error) {
	return func() (keySecretView, error) {
		s := &corev1.Secret{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
			return keySecretView{}, err
		}
		return keySecretView{
			Labelled:    s.Labels[controllers.LabelContainer] != "",
			Owners:      s.OwnerReferences,
			Fingerprint: fingerprint(s.Data[controllers.SecretKeyActive]),
		}, nil
	}
}

// secretKey returns the active key bytes of a key Secret.
func secretKey(ctx context.Context, ns, name string) ([]byte, error) {
	s := &corev1.Secret{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		return nil, err
	}
	return s.Data[controllers.SecretKeyActive], nil
}

// holdsKey checks that the key Secret is owned by exactly the pod with the UID and holds the
// wanted key; failures name the key by fingerprint only.
func holdsKey(ctx context.Context, ns, name string, owner types.UID, want []byte) func(Gomega) {
	return func(g Gomega) {
		s := &corev1.Secret{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s)).To(Succeed())
		g.Expect(s.OwnerReferences).To(ConsistOf(HaveField("UID", owner)), "owned by the current pod")
		got := s.Data[controllers.SecretKeyActive]
		g.Expect(bytes.Equal(got, want)).To(BeTrue(), "key %s, want %s", fingerprint(got), fingerprint(want))
	}
}

// fingerprint names key bytes the way status does, so messages can compare keys safely.
func fingerprint(key []byte) string {
	m, err := keys.NewMaterial(key)
	if err != nil {
		return fmt.Sprintf("(not a key: %d bytes)", len(key))
	}
	return m.Fingerprint().String()
}

// notFound reports whether the Secret is gone.
func notFound(ctx context.Context, ns, name string) func() bool {
	return func() bool {
		return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.Secret{}))
	}
}

// createPod creates a replica pod. There is no scheduler or kubelet: it stays Pending, and
// deleting it removes it at once.
func createPod(ctx context.Context, ns, name string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: replicaLabels}, Spec: replicaPodSpec()}
	Expect(k8sClient.Create(ctx, p)).To(Succeed())
	return p
}

func replicaPodSpec() corev1.PodSpec {
	return corev1.PodSpec{
		ServiceAccountName: "vmm",
		Containers:         []corev1.Container{{Name: "vmm", Image: "vmm:2012"}},
	}
}

// createOwnedSecret creates an unlabelled Secret owned by the pod, as any other tool might.
func createOwnedSecret(ctx context.Context, pod *corev1.Pod, suffix string) string {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name + "-" + suffix, Namespace: pod.Namespace,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}},
		},
		StringData: map[string]string{"note": "not a key"},
	}
	Expect(k8sClient.Create(ctx, s)).To(Succeed())
	return s.Name
}

// createStatefulSet creates a one-replica StatefulSet of replica pods; kube-controller-manager's
// StatefulSet controller creates pod-0, and again after pod-0 is deleted.
func createStatefulSet(ctx context.Context, ns, name string) {
	one := int32(1)
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &one,
			ServiceName: name,
			Selector:    &metav1.LabelSelector{MatchLabels: replicaLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: replicaLabels},
				Spec:       replicaPodSpec(),
			},
		},
	}
	Expect(k8sClient.Create(ctx, sts)).To(Succeed())
}

// waitForPod waits for a pod of that name, created by a StatefulSet, whose UID is not notUID,
// and returns its UID.
func waitForPod(ctx context.Context, ns, name string, notUID types.UID) types.UID {
	var uid types.UID
	Eventually(func(g Gomega) {
		p := &corev1.Pod{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p)).To(Succeed())
		g.Expect(p.UID).NotTo(Equal(notUID), "still the deleted pod")
		g.Expect(p.DeletionTimestamp).To(BeNil())
		g.Expect(p.OwnerReferences).To(ContainElement(SatisfyAll(
			HaveField("Kind", "StatefulSet"), HaveField("Controller", HaveValue(BeTrue())))))
		uid = p.UID
	}, eventually, poll).Should(Succeed())
	return uid
}
