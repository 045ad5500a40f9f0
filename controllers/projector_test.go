package controllers

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/keys"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

var _ = Describe("Replica projection", func() {
	var f *fixture
	BeforeEach(func(ctx context.Context) {
		f = newFixture(ctx)
		for _, sa := range []string{"vmm", "intruder"} {
			Expect(k8sClient.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: f.ns}})).To(Succeed())
		}
	})

	withReplicas := func(obj *dkmv1.DKMContainer) *dkmv1.DKMContainer {
		obj.Spec.Replicas = &dkmv1.ReplicasSpec{
			Selector:            metav1.LabelSelector{MatchLabels: map[string]string{"app": "vmm"}},
			ServiceAccountNames: []string{"vmm"},
		}
		return obj
	}
	pod := func(ctx context.Context, name, sa string) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns, Labels: map[string]string{"app": "vmm"}},
			Spec: corev1.PodSpec{
				ServiceAccountName: sa,
				Containers:         []corev1.Container{{Name: "vmm", Image: "vmm:2012"}},
			},
		}
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		return p
	}
	secretOf := func(ctx context.Context, obj *dkmv1.DKMContainer, podName string) func() (*corev1.Secret, error) {
		return func() (*corev1.Secret, error) {
			s := &corev1.Secret{}
			err := k8sClient.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: dkmv1.KeySecretName(obj.Name, podName)}, s)
			return s, err
		}
	}
	// adKey unwraps the active key straight from AD with the KEK, independent of the operator.
	adKey := func(ctx context.Context, obj *dkmv1.DKMContainer) []byte {
		got := get(ctx, obj)
		kek := &corev1.Secret{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "kek"}, kek)).To(Succeed())
		ring, err := keys.ParseKEKSecret(kek.Data)
		Expect(err).NotTo(HaveOccurred())
		p, err := keys.NewProtector(keys.ModeWrapped, ring)
		Expect(err).NotTo(HaveOccurred())
		var blob []byte
		for _, e := range adKeys(obj.Spec.Path) {
			if e.GetAttributeValue("l") == got.Status.ActiveKeyID {
				blob = e.GetRawAttributeValue("thumbnailPhoto")
			}
		}
		Expect(blob).NotTo(BeEmpty())
		guid, err := secdesc.ParseGUID(got.Status.Container.GUID)
		Expect(err).NotTo(HaveOccurred())
		container, err := keys.ObjectGUIDFromBytes(guid.Bytes())
		Expect(err).NotTo(HaveOccurred())
		id, err := keys.ParseKeyID(got.Status.ActiveKeyID)
		Expect(err).NotTo(HaveOccurred())
		opened, err := p.Open(blob, keys.Binding{Container: container, KeyID: id})
		Expect(err).NotTo(HaveOccurred())
		return opened.Material.Reveal()
	}

	It("gives three replicas identical keys that match AD, and a replacement pod the same key", func(ctx context.Context) {
		obj := withReplicas(f.dkm("vmm", f.path("proj")))
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		for i := 0; i < 3; i++ {
			pod(ctx, fmt.Sprintf("vmm-%d", i), "vmm")
		}
		expectCondition(ctx, obj, dkmv1.ConditionReady, metav1.ConditionTrue, dkmv1.ReasonReady)
		want := adKey(ctx, obj)
		Expect(want).To(HaveLen(32))
		for i := 0; i < 3; i++ {
			name := fmt.Sprintf("vmm-%d", i)
			Eventually(secretOf(ctx, obj, name), eventually).Should(WithTransform(
				func(s *corev1.Secret) []byte { return s.Data[SecretKeyActive] }, Equal(want)), name)
			s, _ := secretOf(ctx, obj, name)()
			Expect(s.Labels).To(HaveKeyWithValue(LabelContainer, obj.Name))
			Expect(s.OwnerReferences).To(ConsistOf(HaveField("Name", name)))
			Expect(string(s.Data[SecretKeyActiveID])).To(Equal(get(ctx, obj).Status.ActiveKeyID))
			Expect(s.Data).To(HaveKeyWithValue(SecretKeyVersionPrefix+get(ctx, obj).Status.ActiveKeyID, want))
		}
		Eventually(func() int32 { return get(ctx, obj).Status.ProjectedReplicas }, eventually).Should(Equal(int32(3)))

		// Failover: pod-0 is deleted (envtest has no garbage collector, so its Secret is removed by
		// the projector as the pod is gone) and its replacement gets the same key.
		old := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "vmm-0", Namespace: f.ns}}
		Expect(k8sClient.Delete(ctx, old, client.GracePeriodSeconds(0))).To(Succeed())
		Eventually(func() error { _, err := secretOf(ctx, obj, "vmm-0")(); return err }, eventually).ShouldNot(Succeed())
		replacement := pod(ctx, "vmm-0", "vmm")
		Eventually(secretOf(ctx, obj, "vmm-0"), eventually).Should(SatisfyAll(
			WithTransform(func(s *corev1.Secret) []byte { return s.Data[SecretKeyActive] }, Equal(want)),
			WithTransform(func(s *corev1.Secret) string { return string(s.OwnerReferences[0].UID) }, Equal(string(replacement.UID))),
		))
	})

	It("gives nothing to a pod running as a service account that is not allowed, and says why", func(ctx context.Context) {
		obj := withReplicas(f.dkm("vmm", f.path("deny")))
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		intruder := pod(ctx, "intruder", "intruder")
		pod(ctx, "vmm-0", "vmm")
		Eventually(secretOf(ctx, obj, "vmm-0"), eventually).Should(Not(BeNil()))
		Eventually(func(g Gomega) {
			list := &eventsv1.EventList{}
			g.Expect(k8sClient.List(ctx, list, client.InNamespace(f.ns))).To(Succeed())
			g.Expect(list.Items).To(ContainElement(SatisfyAll(
				HaveField("Reason", "KeyDenied"), HaveField("Regarding.Name", intruder.Name))))
		}, eventually).Should(Succeed())
		Consistently(func() error { _, err := secretOf(ctx, obj, "intruder")(); return err }, 2*time.Second).ShouldNot(Succeed())
	})

	It("restores a Secret that was edited or deleted, and updates every Secret after a rotation", func(ctx context.Context) {
		obj := withReplicas(f.dkm("vmm", f.path("restore")))
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		pod(ctx, "vmm-0", "vmm")
		pod(ctx, "vmm-1", "vmm")
		expectCondition(ctx, obj, dkmv1.ConditionReady, metav1.ConditionTrue, dkmv1.ReasonReady)
		want := adKey(ctx, obj)
		Eventually(secretOf(ctx, obj, "vmm-0"), eventually).Should(Not(BeNil()))

		s, err := secretOf(ctx, obj, "vmm-0")()
		Expect(err).NotTo(HaveOccurred())
		s.Data[SecretKeyActive] = []byte("tampered")
		Expect(k8sClient.Update(ctx, s)).To(Succeed())
		Eventually(func() []byte { s, _ := secretOf(ctx, obj, "vmm-0")(); return s.Data[SecretKeyActive] }, eventually).Should(Equal(want))

		Expect(k8sClient.Delete(ctx, s)).To(Succeed())
		Eventually(func() []byte { s, _ := secretOf(ctx, obj, "vmm-0")(); return s.Data[SecretKeyActive] }, eventually).Should(Equal(want))

		// Rotation: every pod's Secret follows the new active key and keeps the old version.
		cur := get(ctx, obj)
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Spec.Rotation = &dkmv1.RotationSpec{Period: &metav1.Duration{Duration: time.Hour}}
		clockAhead(time.Hour)
		Expect(k8sClient.Patch(ctx, cur, patch)).To(Succeed())
		Eventually(func() int { return len(get(ctx, obj).Status.Keys) }, eventually).Should(BeNumerically(">=", 2))
		for _, name := range []string{"vmm-0", "vmm-1"} {
			Eventually(func(g Gomega) {
				s, err := secretOf(ctx, obj, name)()
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(s.Data[SecretKeyActive]).NotTo(Equal(want))
				g.Expect(len(s.Data)).To(BeNumerically(">=", 4), "key, key-id and two versions")
				g.Expect(s.Data).To(ContainElement(Equal(want)), "the old version is kept")
			}, eventually).Should(Succeed())
		}
	})

	It("takes the Secret from a pod that leaves the selector, and gives it back when the pod returns", func(ctx context.Context) {
		obj := withReplicas(f.dkm("vmm", f.path("leave")))
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		p := pod(ctx, "vmm-0", "vmm")
		pod(ctx, "vmm-1", "vmm")
		Eventually(secretOf(ctx, obj, "vmm-0"), eventually).Should(Not(BeNil()))
		Eventually(func() int32 { return get(ctx, obj).Status.ProjectedReplicas }, eventually).Should(Equal(int32(2)))

		relabel := func(app string) {
			cur := &corev1.Pod{}
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), cur)).To(Succeed())
			cur.Labels["app"] = app
			Expect(k8sClient.Update(ctx, cur)).To(Succeed())
		}
		relabel("other")
		Eventually(func() error { _, err := secretOf(ctx, obj, "vmm-0")(); return err }, eventually).Should(
			WithTransform(apierrors.IsNotFound, BeTrue()))
		Eventually(func() int32 { return get(ctx, obj).Status.ProjectedReplicas }, eventually).Should(Equal(int32(1)))
		_, err := secretOf(ctx, obj, "vmm-1")()
		Expect(err).NotTo(HaveOccurred(), "the other replica keeps its Secret")

		relabel("vmm")
		Eventually(secretOf(ctx, obj, "vmm-0"), eventually).Should(WithTransform(
			func(s *corev1.Secret) string { return string(s.Data[SecretKeyActiveID]) }, Equal(get(ctx, obj).Status.ActiveKeyID)))
		Eventually(func() int32 { return get(ctx, obj).Status.ProjectedReplicas }, eventually).Should(Equal(int32(2)))
	})

	It("serves every other pod while one pod's Secret cannot be written, and says which", func(ctx context.Context) {
		obj := withReplicas(f.dkm("vmm", f.path("stuck")))
		// A person's immutable Secret squats on vmm-0's Secret name: it cannot be made a key
		// Secret, and is not the projector's to delete.
		squatter := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: dkmv1.KeySecretName(obj.Name, "vmm-0"), Namespace: f.ns,
				Labels: map[string]string{LabelContainer: obj.Name}},
			Immutable: new(true),
			Data:      map[string][]byte{"n": []byte("x")},
		}
		Expect(k8sClient.Create(ctx, squatter)).To(Succeed())
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		pod(ctx, "vmm-0", "vmm")
		pod(ctx, "vmm-1", "vmm")
		Eventually(secretOf(ctx, obj, "vmm-1"), eventually).Should(Not(BeNil()))
		c := expectCondition(ctx, obj, dkmv1.ConditionReplicasProjected, metav1.ConditionFalse, dkmv1.ReasonProjectionFailed)
		Expect(c.Message).To(ContainSubstring("vmm-0"))
		Expect(get(ctx, obj).Status.ProjectedReplicas).To(Equal(int32(1)))

		// The squatter goes: vmm-0 gets its key, and status counts both.
		Expect(k8sClient.Delete(ctx, squatter)).To(Succeed())
		Eventually(secretOf(ctx, obj, "vmm-0"), eventually).Should(WithTransform(
			func(s *corev1.Secret) []metav1.OwnerReference { return s.OwnerReferences }, ConsistOf(HaveField("Name", "vmm-0"))))
		expectCondition(ctx, obj, dkmv1.ConditionReplicasProjected, metav1.ConditionTrue, dkmv1.ReasonReady)
		Eventually(func() int32 { return get(ctx, obj).Status.ProjectedReplicas }, eventually).Should(Equal(int32(2)))
	})

	It("watches pods only in the namespaces it is asked for, cut down to what projection reads", func(ctx context.Context) {
		p := pod(ctx, "vmm-0", "vmm")
		elsewhere := newFixture(ctx).ns
		Expect(k8sClient.Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: elsewhere, Labels: map[string]string{"app": "vmm"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web"}}},
		})).To(Succeed())

		caches := newPodCaches(cfg, cache.Options{Scheme: scheme})
		caches.watch = func(cache.Cache) error { return nil }
		cctx, cancel := context.WithCancel(ctx)
		DeferCleanup(cancel)
		go func() { _ = caches.Start(cctx) }()
		var pods client.Reader
		Eventually(func() (err error) { pods, err = caches.reader(ctx, f.ns); return err }, eventually).Should(Succeed())
		cached := &corev1.Pod{}
		Eventually(func() error { return pods.Get(ctx, client.ObjectKeyFromObject(p), cached) }, eventually).Should(Succeed())
		Expect(cached.UID).To(Equal(p.UID))
		Expect(cached.Labels).To(Equal(p.Labels))
		Expect(cached.Spec.ServiceAccountName).To(Equal("vmm"))
		Expect(cached.Spec.Containers).To(BeEmpty(), "containers are not cached")
		Expect(cached.ManagedFields).To(BeEmpty(), "managed fields are not cached")
		Expect(pods.Get(ctx, client.ObjectKey{Namespace: elsewhere, Name: "web"}, &corev1.Pod{})).NotTo(Succeed(),
			"another namespace's pods are not watched")
		Expect(caches.namespaces()).To(ConsistOf(f.ns))

		caches.release(f.ns)
		Expect(caches.namespaces()).To(BeEmpty())
	})

	It("keeps Secrets and serves new pods from memory while the directory is down", func(ctx context.Context) {
		outage, err := testenv.StartDC(ctx, testenv.DCOptions{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(outage.Close)
		f.secret(ctx, "outage-ca", map[string][]byte{"ca.crt": outage.CAPEM})
		svc, err := outage.CreateUser("svc-proj", "Svc!Passw0rd-proj")
		Expect(err).NotTo(HaveOccurred())
		obj := withReplicas(f.dkm("vmm", "CN=DKM-proj,CN=System,"+outage.BaseDN))
		obj.Spec.Directory.URLs = []string{outage.URL}
		obj.Spec.Directory.CABundleSecretRef.Name = "outage-ca"
		obj.Spec.ServiceAccounts = []string{svc.UPN(outage)}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		pod(ctx, "vmm-0", "vmm")
		Eventually(secretOf(ctx, obj, "vmm-0"), eventually).Should(Not(BeNil()))
		before, _ := secretOf(ctx, obj, "vmm-0")()

		Expect(outage.Stop()).To(Succeed())
		expectCondition(ctx, obj, dkmv1.ConditionDirectoryReachable, metav1.ConditionFalse, dkmv1.ReasonDirectoryDown)
		pod(ctx, "vmm-1", "vmm")
		Eventually(func() []byte { s, _ := secretOf(ctx, obj, "vmm-1")(); return s.Data[SecretKeyActive] }, eventually).
			Should(Equal(before.Data[SecretKeyActive]))
		Consistently(func() []byte { s, _ := secretOf(ctx, obj, "vmm-0")(); return s.Data[SecretKeyActive] }, 3*testResync).
			Should(Equal(before.Data[SecretKeyActive]), "an outage never blanks a Secret")
	})

	It("writes a lost key back from the cluster on the restore annotation, leaving replica Secrets untouched", func(ctx context.Context) {
		obj := withReplicas(f.dkm("vmm", f.path("restore-lost")))
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		pod(ctx, "vmm-0", "vmm")
		before := expectReadyObj(ctx, obj)
		want := adKey(ctx, obj)
		Eventually(func() []byte { s, _ := secretOf(ctx, obj, "vmm-0")(); return s.Data[SecretKeyActive] }, eventually).Should(Equal(want))
		replica, _ := secretOf(ctx, obj, "vmm-0")()

		adDeleteTree(obj.Spec.Path)
		c := expectCondition(ctx, obj, dkmv1.ConditionReady, metav1.ConditionFalse, dkmv1.ReasonKeyLost)
		Expect(c.Message).To(ContainSubstring(dkmv1.AnnotationRestoreLostKey + "=" + before.Status.ActiveKeyID))
		Expect(adExists(obj.Spec.Path)).To(BeFalse(), "nothing is written before the annotation")

		setAnnotation(ctx, obj, dkmv1.AnnotationRestoreLostKey, before.Status.ActiveKeyID)
		after := expectReadyObj(ctx, obj)
		Expect(after.Status.ActiveKeyID).To(Equal(before.Status.ActiveKeyID))
		Expect(after.Status.ActiveKeyFingerprint).To(Equal(before.Status.ActiveKeyFingerprint))
		Expect(after.Status.Container.GUID).NotTo(Equal(before.Status.Container.GUID), "a new container")
		Expect(adKey(ctx, obj)).To(Equal(want), "AD holds the same key, sealed for the new container's objectGUID")
		Expect(adOwner(obj.Spec.Path).UID).To(Equal(string(after.UID)), "with the ownership record")
		expectEvent(ctx, obj, dkmv1.ReasonKeyRestored)
		now, err := secretOf(ctx, obj, "vmm-0")()
		Expect(err).NotTo(HaveOccurred())
		Expect(now.ResourceVersion).To(Equal(replica.ResourceVersion), "the replica's Secret was never rewritten")
	})
})

var _ = DescribeTable("KeySecretName",
	func(dkm, pod string) {
		name := dkmv1.KeySecretName(dkm, pod)
		Expect(len(name)).To(BeNumerically("<=", 253))
		Expect(name).To(MatchRegexp(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`))
	},
	Entry("short", "vmm", "vmm-0"),
	Entry("long", string(make253('a')), string(make253('b'))),
)

var _ = It("KeySecretName keeps dash-ambiguous pairs apart", func() {
	Expect(dkmv1.KeySecretName("a", "b-c")).NotTo(Equal(dkmv1.KeySecretName("a-b", "c")))
})

func make253(c byte) []byte {
	b := make([]byte, 253)
	for i := range b {
		b[i] = c
	}
	return b
}
