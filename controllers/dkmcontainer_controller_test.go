package controllers

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

var _ = Describe("DKMContainer reconciler", func() {
	var f *fixture
	BeforeEach(func(ctx context.Context) { f = newFixture(ctx) })

	// expectReady waits for Ready=True and returns the object.
	expectReady := func(ctx context.Context, obj *dkmv1.DKMContainer) *dkmv1.DKMContainer {
		expectCondition(ctx, obj, dkmv1.ConditionReady, metav1.ConditionTrue, dkmv1.ReasonReady)
		return get(ctx, obj)
	}
	// template is the DACL the container must carry for the fixture's service account.
	template := func(extra ...secdesc.SID) *secdesc.SecurityDescriptor {
		domain := secdesc.MustParseSID(dc.DomainSID)
		sd, err := secdesc.DKMTemplate(domain, domain, append([]secdesc.SID{secdesc.MustParseSID(f.service.SID)}, extra...))
		Expect(err).NotTo(HaveOccurred())
		return sd
	}
	aliases := func() secdesc.Aliases {
		d := secdesc.MustParseSID(dc.DomainSID)
		return secdesc.DomainAliases(d, d)
	}

	It("creates the container with the template DACL, the DC Manager object and a key (Create)", func(ctx context.Context) {
		path := f.path("create")
		obj := f.dkm("vmm", path)
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		got := expectReady(ctx, obj)

		Expect(got.Status.Container.DN).To(Equal(path))
		Expect(got.Status.Container.CreatedByOperator).To(BeTrue())
		Expect(got.Status.KeyObject.DN).To(HavePrefix("CN=DC Manager "))
		Expect(got.Status.ActiveKeyFingerprint).To(MatchRegexp(`^sha256:[0-9a-f]{16}$`))
		Expect(got.Status.Keys).To(HaveLen(1))
		Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		for _, c := range phaseConditions {
			Expect(condition(ctx, obj, c).Status).To(Equal(metav1.ConditionTrue), c)
		}

		dacl := adDACL(path)
		Expect(secdesc.DiffDACL(dacl, template(), aliases()).Empty()).To(BeTrue(), secdesc.FormatDACL(dacl, aliases()))
		Expect(dacl.IsDACLProtected()).To(BeTrue())
		Expect(secdesc.FormatDACL(dacl, secdesc.PlainSIDs)).NotTo(ContainSubstring(secdesc.SIDAuthenticatedUsers.String()))
		Expect(adManagers(path)).To(HaveLen(1))
		keys := adKeys(path)
		Expect(keys).To(HaveLen(1))
		Expect(keys[0].GetAttributeValue("l")).To(Equal(got.Status.ActiveKeyID))
		Expect(keys[0].GetRawAttributeValue("thumbnailPhoto")).To(HaveLen(74), "a Wrapped envelope")
		Expect(keyStore.Get(client.ObjectKeyFromObject(obj)).Active().Fingerprint.String()).To(Equal(got.Status.ActiveKeyFingerprint))
		expectEvent(ctx, obj, dkmv1.ReasonKeyCreated)
	})

	It("adopts a pre-created container with delegated rights, and names a missing right until it is granted", func(ctx context.Context) {
		operator, err := dc.CreateUser("op-"+f.ns, "Op!Passw0rd-"+f.ns)
		Expect(err).NotTo(HaveOccurred())
		f.secret(ctx, "bind", map[string][]byte{BindUsernameKey: []byte(operator.UPN(dc)), BindPasswordKey: []byte(operator.Password)})
		path := f.path("adopt")
		// A domain admin pre-creates the container: admins in full, and the operator with Read,
		// Write and Modify permissions but *without* Create child objects.
		adCreateContainer(path, "D:P(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;DA)(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;SY)"+
			"(A;CI;LCRPLORCWPWD;;;"+operator.SID+")")
		obj := f.dkm("adopted", path)
		obj.Spec.Provisioning = dkmv1.ProvisioningAdopt
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())

		c := expectCondition(ctx, obj, dkmv1.ConditionContainerReady, metav1.ConditionFalse, dkmv1.ReasonInsufficientRight)
		Expect(c.Message).To(ContainSubstring("Create container objects"))
		Expect(expectEvent(ctx, obj, dkmv1.ReasonInsufficientRight)).To(ContainSubstring("Create container objects"))
		Expect(adManagers(path)).To(BeEmpty(), "no key is created without the rights")

		// The admin fixes the rights; the key appears with no other action.
		adAddACE(path, "(A;CI;CC;;;"+operator.SID+")")
		got := expectReady(ctx, obj)
		Expect(condition(ctx, obj, dkmv1.ConditionContainerReady).Message).To(Equal("container " + path + " exists (adopted)"))
		Expect(got.Status.Container.CreatedByOperator).To(BeFalse())
		Expect(got.Status.KeyObject.CreatedByOperator).To(BeTrue())
		Expect(adKeys(path)).To(HaveLen(1))
		// Enforce replaced the admin's DACL with the template, keeping the operator's access.
		Expect(secdesc.DiffDACL(adDACL(path), template(secdesc.MustParseSID(operator.SID)), aliases()).Empty()).To(BeTrue())
	})

	It("refuses Adopt of a container that does not exist", func(ctx context.Context) {
		obj := f.dkm("absent", f.path("absent"))
		obj.Spec.Provisioning = dkmv1.ProvisioningAdopt
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		expectCondition(ctx, obj, dkmv1.ConditionContainerReady, metav1.ConditionFalse, dkmv1.ReasonContainerMissing)
		Expect(adExists(f.path("absent"))).To(BeFalse())
	})

	It("repairs an ACL tamper under Enforce and only reports it under Audit", func(ctx context.Context) {
		enforced, audited := f.dkm("enforced", f.path("enforce")), f.dkm("audited", f.path("audit"))
		audited.Spec.AccessPolicy = dkmv1.AccessAudit
		Expect(k8sClient.Create(ctx, enforced)).To(Succeed())
		Expect(k8sClient.Create(ctx, audited)).To(Succeed())
		expectReady(ctx, enforced)
		expectReady(ctx, audited)

		// The tamper as another tool writes it; status and events name it in our canonical SDDL.
		adAddACE(enforced.Spec.Path, "(A;;RPLCLORC;;;AU)")
		adAddACE(audited.Spec.Path, "(A;;RPLCLORC;;;AU)")
		ace, err := secdesc.ParseACE("(A;;RPLCLORC;;;AU)", secdesc.WellKnownAliases)
		Expect(err).NotTo(HaveOccurred())
		tamper := secdesc.FormatACE(ace, aliases())

		c := expectCondition(ctx, enforced, dkmv1.ConditionAccessControlled, metav1.ConditionTrue, dkmv1.ReasonDriftRepaired)
		Expect(c.Message).To(ContainSubstring(tamper))
		Expect(get(ctx, enforced).Status.LastDrift.Unexpected).To(Equal([]string{tamper}))
		Expect(get(ctx, enforced).Status.LastDrift.Repaired).To(BeTrue())
		Expect(secdesc.FormatDACL(adDACL(enforced.Spec.Path), secdesc.WellKnownAliases)).NotTo(ContainSubstring(";AU)"))
		Expect(expectEvent(ctx, enforced, dkmv1.ReasonDriftRepaired)).To(ContainSubstring(tamper))

		// The tamper grants read of the container object alone, not of the keys below it: the
		// DACL is still safe, so Audit stays Ready and reports the drift (dacl_gate_test.go has
		// the unsafe case).
		c = expectCondition(ctx, audited, dkmv1.ConditionAccessControlled, metav1.ConditionTrue, dkmv1.ReasonSafeDACL)
		Expect(c.Message).To(ContainSubstring(tamper))
		Expect(get(ctx, audited).Status.LastDrift.Repaired).To(BeFalse())
		Expect(expectEvent(ctx, audited, dkmv1.ReasonDriftDetected)).To(ContainSubstring(tamper))
		Consistently(func() string {
			return secdesc.FormatDACL(adDACL(audited.Spec.Path), secdesc.WellKnownAliases)
		}, 3*testResync, 500*time.Millisecond).Should(ContainSubstring(tamper), "Audit changes nothing")
	})

	It("keeps the event of a long drift within the API server's note limit, and all of the drift in status", func(ctx context.Context) {
		obj := f.dkm("longdrift", f.path("longdrift"))
		obj.Spec.AccessPolicy = dkmv1.AccessAudit
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		expectReady(ctx, obj)

		// 30 tampered ACEs in one write, each letting another account read the keys: the drift
		// in SDDL is far over an event note's 1024 bytes.
		sd := adDACL(obj.Spec.Path)
		var tampered []string
		for i := range 30 {
			ace, err := secdesc.ParseACE(fmt.Sprintf("(A;CI;RPLCLORC;;;%s-%d)", dc.DomainSID, 7000+i), secdesc.WellKnownAliases)
			Expect(err).NotTo(HaveOccurred())
			sd.DACL.ACEs = append(sd.DACL.ACEs, ace)
			tampered = append(tampered, secdesc.FormatACE(ace, aliases()))
		}
		adSetDACL(obj.Spec.Path, sd)

		// Status keeps all of it: the condition's message and status.lastDrift.
		Eventually(func(g Gomega) {
			g.Expect(get(ctx, obj).Status.LastDrift).NotTo(BeNil())
			g.Expect(get(ctx, obj).Status.LastDrift.Unexpected).To(ConsistOf(tampered))
			msg := condition(ctx, obj, dkmv1.ConditionAccessControlled).Message
			for _, ace := range tampered {
				g.Expect(msg).To(ContainSubstring(ace))
			}
		}, eventually, 200*time.Millisecond).Should(Succeed())
		// The event is cut to fit; without that the API server refuses it and it is lost.
		note := expectEvent(ctx, obj, dkmv1.ReasonDriftDetected)
		Expect(len(note)).To(BeNumerically("<=", MaxEventNoteBytes))
		Expect(note).To(HaveSuffix(truncatedNote))
		Expect(note).To(ContainSubstring(tampered[0]))
	})

	It("reports KeyLost when the key object vanishes, creates nothing, and regenerates only when asked by key ID", func(ctx context.Context) {
		path := f.path("lost")
		obj := f.dkm("lost", path)
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		before := expectReady(ctx, obj)
		lostID := before.Status.ActiveKeyID

		adDeleteTree(before.Status.KeyObject.DN)
		c := expectCondition(ctx, obj, dkmv1.ConditionKeyReady, metav1.ConditionFalse, dkmv1.ReasonKeyLost)
		Expect(c.Message).To(ContainSubstring(lostID))
		Expect(c.Message).To(ContainSubstring(dkmv1.AnnotationRegenerateLostKey))
		expectEvent(ctx, obj, dkmv1.ReasonKeyLost)
		Consistently(func() int { return len(adManagers(path)) }, 3*testResync, 500*time.Millisecond).Should(BeZero())

		// An annotation naming another key is not enough.
		annotate(ctx, obj, "00000000-0000-4000-8000-000000000000")
		Eventually(func() string { return condition(ctx, obj, dkmv1.ConditionKeyReady).Message }, eventually).
			Should(ContainSubstring("which is not a lost key"))
		Expect(adManagers(path)).To(BeEmpty())

		annotate(ctx, obj, lostID)
		after := expectReady(ctx, obj)
		Expect(after.Status.ActiveKeyID).NotTo(Equal(lostID))
		Expect(after.Status.ActiveKeyFingerprint).NotTo(Equal(before.Status.ActiveKeyFingerprint))
		Expect(adKeys(path)).To(HaveLen(1))
		expectEvent(ctx, obj, "KeyLossAcknowledged")
	})

	It("gives a re-applied resource the same key (Retain), and a second resource on the same container too", func(ctx context.Context) {
		path := f.path("reapply")
		obj := f.dkm("first", path)
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		first := expectReady(ctx, obj)

		Expect(k8sClient.Delete(ctx, obj)).To(Succeed())
		Eventually(func() error { return k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), &dkmv1.DKMContainer{}) }, eventually).
			ShouldNot(Succeed())
		Expect(adKeys(path)).To(HaveLen(1), "Retain leaves AD untouched")

		again := f.dkm("first", path)
		Expect(k8sClient.Create(ctx, again)).To(Succeed())
		Expect(expectReady(ctx, again).Status.ActiveKeyFingerprint).To(Equal(first.Status.ActiveKeyFingerprint))

		other := f.dkm("second", path)
		Expect(k8sClient.Create(ctx, other)).To(Succeed())
		Expect(expectReady(ctx, other).Status.ActiveKeyFingerprint).To(Equal(first.Status.ActiveKeyFingerprint))
		Expect(adManagers(path)).To(HaveLen(1))
	})

	It("removes only what it created under deletionPolicy Delete", func(ctx context.Context) {
		path := f.path("delete")
		obj := f.dkm("deleted", path)
		obj.Spec.DeletionPolicy = dkmv1.DeletionDelete
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		expectReady(ctx, obj)
		Expect(k8sClient.Delete(ctx, obj)).To(Succeed())
		Eventually(func() bool { return adExists(path) }, eventually).Should(BeFalse())
	})

	It("refuses a container holding several DC Manager objects and names them", func(ctx context.Context) {
		path := f.path("multi")
		obj := f.dkm("multi", path)
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		first := expectReady(ctx, obj)
		second := "CN=DC Manager 11111111-2222-4333-8444-555555555555," + path
		adCreateContainer(second, "D:")
		c := expectCondition(ctx, obj, dkmv1.ConditionKeyReady, metav1.ConditionFalse, dkmv1.ReasonMultipleKeyObjects)
		Expect(c.Message).To(ContainSubstring(second))
		Expect(c.Message).To(ContainSubstring(first.Status.KeyObject.DN))
		Expect(get(ctx, obj).Status.ActiveKeyFingerprint).To(Equal(first.Status.ActiveKeyFingerprint), "status keeps the key")
		Expect(adKeys(path)).To(HaveLen(1), "nothing created or removed")
	})

	It("rotates by adding a version and keeps the old ones", func(ctx context.Context) {
		obj := f.dkm("rotating", f.path("rotate"))
		obj.Spec.Rotation = &dkmv1.RotationSpec{Period: &metav1.Duration{Duration: time.Hour}}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		first := expectReady(ctx, obj)
		clockAhead(time.Hour)
		Eventually(func() int { return len(get(ctx, obj).Status.Keys) }, eventually).Should(BeNumerically(">=", 2))
		got := get(ctx, obj)
		Expect(got.Status.ActiveKeyID).NotTo(Equal(first.Status.ActiveKeyID))
		Expect(got.Status.Keys[0].ID).To(Equal(first.Status.ActiveKeyID), "the first version is retained")
		expectEvent(ctx, obj, dkmv1.ReasonKeyRotated)
	})

	DescribeTable("gives each bad input its own condition reason and event, and writes nothing to AD",
		func(ctx context.Context, condType, reason string, mutate func(*fixture, *dkmv1.DKMContainer)) {
			path := f.path("bad")
			obj := f.dkm("bad", path)
			mutate(f, obj)
			Expect(k8sClient.Create(ctx, obj)).To(Succeed())
			c := expectCondition(ctx, obj, condType, metav1.ConditionFalse, reason)
			Expect(c.Message).NotTo(BeEmpty())
			expectEvent(ctx, obj, reason)
			ready := condition(ctx, obj, dkmv1.ConditionReady)
			Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			Expect(ready.Reason).To(Equal(reason))
			if condType != dkmv1.ConditionKeyReady {
				Expect(adExists(obj.Spec.Path)).To(BeFalse())
			}
			Expect(adKeys(obj.Spec.Path)).To(BeEmpty())
		},
		Entry("wrong bind password", dkmv1.ConditionDirectoryReachable, dkmv1.ReasonInvalidCredentials,
			func(f *fixture, o *dkmv1.DKMContainer) {
				f.secret(context.Background(), "wrongpw", map[string][]byte{BindUsernameKey: []byte(dc.AdminUser), BindPasswordKey: []byte("nope")})
				o.Spec.Directory.BindSecretRef.Name = "wrongpw"
			}),
		Entry("missing bind Secret", dkmv1.ConditionDirectoryReachable, dkmv1.ReasonBindSecretMissing,
			func(f *fixture, o *dkmv1.DKMContainer) { o.Spec.Directory.BindSecretRef.Name = "absent" }),
		Entry("bad CA", dkmv1.ConditionDirectoryReachable, dkmv1.ReasonTLSError,
			func(f *fixture, o *dkmv1.DKMContainer) {
				other, err := testenv.NewCA("not the DC's CA")
				Expect(err).NotTo(HaveOccurred())
				f.secret(context.Background(), "otherca", map[string][]byte{"ca.crt": other.CertPEM})
				o.Spec.Directory.CABundleSecretRef.Name = "otherca"
			}),
		Entry("unknown service account", dkmv1.ConditionAccessControlled, dkmv1.ReasonUnknownAccount,
			func(f *fixture, o *dkmv1.DKMContainer) { o.Spec.ServiceAccounts = []string{`DEMO\no-such-account`} }),
		Entry("service account that stands for everybody", dkmv1.ConditionAccessControlled, dkmv1.ReasonInvalidAccount,
			func(f *fixture, o *dkmv1.DKMContainer) { o.Spec.ServiceAccounts = []string{"S-1-5-11"} }),
		Entry("Everyone, which has no object in AD", dkmv1.ConditionAccessControlled, dkmv1.ReasonInvalidAccount,
			func(f *fixture, o *dkmv1.DKMContainer) { o.Spec.ServiceAccounts = []string{"S-1-1-0"} }),
		Entry("Anonymous Logon, next to a real service account", dkmv1.ConditionAccessControlled, dkmv1.ReasonInvalidAccount,
			func(f *fixture, o *dkmv1.DKMContainer) {
				o.Spec.ServiceAccounts = append(o.Spec.ServiceAccounts, "S-1-5-7")
			}),
		Entry("BUILTIN Users", dkmv1.ConditionAccessControlled, dkmv1.ReasonInvalidAccount,
			func(f *fixture, o *dkmv1.DKMContainer) { o.Spec.ServiceAccounts = []string{"S-1-5-32-545"} }),
		Entry("malformed DN that passes the CRD pattern", dkmv1.ConditionContainerReady, dkmv1.ReasonInvalidPath,
			func(f *fixture, o *dkmv1.DKMContainer) { o.Spec.Path = `CN=bad\zz,CN=System,` + dc.BaseDN }),
		Entry("parent DN that does not exist", dkmv1.ConditionContainerReady, dkmv1.ReasonParentMissing,
			func(f *fixture, o *dkmv1.DKMContainer) { o.Spec.Path = "CN=VMMDKM,CN=NoSuchParent," + dc.BaseDN }),
		Entry("missing KEK Secret", dkmv1.ConditionKeyReady, dkmv1.ReasonKEKSecretMissing,
			func(f *fixture, o *dkmv1.DKMContainer) { o.Spec.KeyProtection.KEKSecretRef.Name = "absent" }),
		Entry("KEK of the wrong length", dkmv1.ConditionKeyReady, dkmv1.ReasonKEKInvalid,
			func(f *fixture, o *dkmv1.DKMContainer) {
				f.secret(context.Background(), "shortkek", map[string][]byte{"kek": []byte("sixteen bytes!!!")})
				o.Spec.KeyProtection.KEKSecretRef.Name = "shortkek"
			}),
	)

	It("keeps status and keys through a directory outage and recovers after it", func(ctx context.Context) {
		outage, err := testenv.StartDC(ctx, testenv.DCOptions{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(outage.Close)
		f.secret(ctx, "outage-ca", map[string][]byte{"ca.crt": outage.CAPEM})
		svc, err := outage.CreateUser("svc-outage", "Svc!Passw0rd-outage")
		Expect(err).NotTo(HaveOccurred())
		obj := f.dkm("outage", "CN=DKM-outage,CN=System,"+outage.BaseDN)
		obj.Spec.Directory.URLs = []string{outage.URL}
		obj.Spec.Directory.CABundleSecretRef.Name = "outage-ca"
		obj.Spec.ServiceAccounts = []string{svc.UPN(outage)}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		before := expectReady(ctx, obj)

		Expect(outage.Stop()).To(Succeed())
		expectCondition(ctx, obj, dkmv1.ConditionDirectoryReachable, metav1.ConditionFalse, dkmv1.ReasonDirectoryDown)
		during := get(ctx, obj)
		Expect(during.Status.ActiveKeyFingerprint).To(Equal(before.Status.ActiveKeyFingerprint), "nothing is blanked")
		Expect(keyStore.Get(client.ObjectKeyFromObject(obj))).NotTo(BeNil(), "keys stay in memory for replicas")

		Expect(outage.Start(ctx)).To(Succeed())
		after := expectReady(ctx, obj)
		Expect(after.Status.ActiveKeyFingerprint).To(Equal(before.Status.ActiveKeyFingerprint))
	})
})

func annotate(ctx context.Context, obj *dkmv1.DKMContainer, lostID string) {
	cur := get(ctx, obj)
	patch := client.MergeFrom(cur.DeepCopy())
	if cur.Annotations == nil {
		cur.Annotations = map[string]string{}
	}
	cur.Annotations[dkmv1.AnnotationRegenerateLostKey] = lostID
	Expect(k8sClient.Patch(ctx, cur, patch)).To(Succeed())
}
