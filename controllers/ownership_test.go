package controllers

import (
	"context"
	"time"

	"github.com/go-ldap/ldap/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// The key-safety rules that hang on the ownership record in AD (docs/design.md, "Key safety").
var _ = Describe("Ownership records in AD", func() {
	var f *fixture
	BeforeEach(func(ctx context.Context) { f = newFixture(ctx) })

	It("writes its record into every object it creates, and a second DKMContainer on the path is a reader", func(ctx context.Context) {
		path := f.path("owned")
		owner := f.dkm("owner", path)
		Expect(k8sClient.Create(ctx, owner)).To(Succeed())
		first := expectReadyObj(ctx, owner)
		Expect(first.Status.Role).To(Equal(dkmv1.RoleWriter))

		record := adOwner(path)
		Expect(record.Namespace).To(Equal(f.ns))
		Expect(record.Name).To(Equal("owner"))
		Expect(record.UID).To(Equal(string(first.UID)))
		Expect(record.Claimed).To(BeFalse())
		for _, e := range adSearch(path, ldap.ScopeWholeSubtree, "(objectClass=*)", directory.OwnerAttribute) {
			Expect(e.GetAttributeValue(directory.OwnerAttribute)).To(Equal(record.String()), e.DN)
		}

		reader := f.dkm("reader", path)
		Expect(k8sClient.Create(ctx, reader)).To(Succeed())
		got := expectReadyObj(ctx, reader)
		Expect(got.Status.Role).To(Equal(dkmv1.RoleReader))
		Expect(got.Status.Owner).To(ContainSubstring(f.ns + "/owner"))
		Expect(got.Status.ActiveKeyFingerprint).To(Equal(first.Status.ActiveKeyFingerprint))
		Expect(adManagers(path)).To(HaveLen(1))
		Expect(adKeys(path)).To(HaveLen(1))
	})

	It("refuses, under Create, a path that names a container holding other objects, and changes nothing", func(ctx context.Context) {
		// A typo such as CN=System: a record-less container with objects that are not DKM's.
		path := f.path("system")
		adCreateContainer(path, "D:(A;;RPLCLORC;;;AU)(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;DA)")
		adCreateContainer("CN=Policies,"+path, "D:(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;DA)")
		before := secdesc.FormatDACL(adDACL(path), secdesc.PlainSIDs)

		obj := f.dkm("typo", path)
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		c := expectCondition(ctx, obj, dkmv1.ConditionContainerReady, metav1.ConditionFalse, dkmv1.ReasonNotDKMContainer)
		Expect(c.Message).To(ContainSubstring("CN=Policies"))
		Consistently(func() string { return secdesc.FormatDACL(adDACL(path), secdesc.PlainSIDs) }, 3*testResync, 500*time.Millisecond).
			Should(Equal(before), "the DACL of a container that is not ours is never rewritten")
		Expect(adManagers(path)).To(BeEmpty())
		Expect(adSearch(path, ldap.ScopeBaseObject, "(objectClass=*)", directory.OwnerAttribute)[0].
			GetAttributeValue(directory.OwnerAttribute)).To(BeEmpty())
	})

	It("does not take over an existing empty container under Create until it is claimed by objectGUID", func(ctx context.Context) {
		path := f.path("unclaimed")
		adCreateContainer(path, "D:(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;DA)")
		obj := f.dkm("claimer", path)
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		c := expectCondition(ctx, obj, dkmv1.ConditionContainerReady, metav1.ConditionFalse, dkmv1.ReasonContainerNotOwned)
		Expect(c.Message).To(ContainSubstring(dkmv1.AnnotationClaim))
		Expect(adManagers(path)).To(BeEmpty())

		guid := adGUID(path)
		setAnnotation(ctx, obj, dkmv1.AnnotationClaim, guid)
		got := expectReadyObj(ctx, obj)
		Expect(got.Status.Role).To(Equal(dkmv1.RoleWriter))
		Expect(adOwner(path).Claimed).To(BeTrue(), "a claimed container is recorded as claimed, so Delete never removes it")
	})

	It("reports KeyLost when CryptoPolicy names a key it cannot see, and creates no key", func(ctx context.Context) {
		// A pre-created container whose DC Manager's CryptoPolicy names a key that is gone.
		path := f.path("policy")
		adCreateContainer(path, "D:P(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;DA)(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;SY)")
		manager := "CN=DC Manager 6d2f1c3a-5b4e-4f70-9a8b-1c2d3e4f5a6b," + path
		adCreateContainer(manager, "D:")
		adAddContact("CN=CryptoPolicy,"+manager, map[string][]string{"displayName": {"3c1e5a7b-0000-4000-8000-00000000aaaa"}})

		obj := f.dkm("adopter", path)
		obj.Spec.Provisioning = dkmv1.ProvisioningAdopt
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		c := expectCondition(ctx, obj, dkmv1.ConditionKeyReady, metav1.ConditionFalse, dkmv1.ReasonKeyLost)
		Expect(c.Message).To(ContainSubstring("3c1e5a7b-0000-4000-8000-00000000aaaa"))
		Consistently(func() []*ldap.Entry { return adKeys(path) }, 3*testResync, 500*time.Millisecond).Should(BeEmpty())
		Expect(adSearch("CN=CryptoPolicy,"+manager, ldap.ScopeBaseObject, "(objectClass=*)", "displayName")[0].
			GetAttributeValue("displayName")).To(Equal("3c1e5a7b-0000-4000-8000-00000000aaaa"), "CryptoPolicy untouched")
	})

	It("reports KeyLost when the container vanishes, and leaves its DN free for a restore", func(ctx context.Context) {
		path := f.path("vanish")
		obj := f.dkm("vanish", path)
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		before := expectReadyObj(ctx, obj)

		adDeleteTree(path)
		c := expectCondition(ctx, obj, dkmv1.ConditionReady, metav1.ConditionFalse, dkmv1.ReasonKeyLost)
		Expect(c.Message).To(ContainSubstring(before.Status.ActiveKeyID))
		Consistently(func() bool { return adExists(path) }, 3*testResync, 500*time.Millisecond).Should(BeFalse())
	})

	It("deletes under deletionPolicy Delete only the objects carrying its record", func(ctx context.Context) {
		path := f.path("delown")
		obj := f.dkm("deleter", path)
		obj.Spec.DeletionPolicy = dkmv1.DeletionDelete
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		got := expectReadyObj(ctx, obj)
		// A person's object next to the keys.
		notes := "CN=Notes," + path
		adCreateContainer(notes, "D:(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;DA)")

		Expect(k8sClient.Delete(ctx, obj)).To(Succeed())
		Eventually(func() error { return k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), &dkmv1.DKMContainer{}) }, eventually).
			ShouldNot(Succeed())
		Expect(adExists(got.Status.KeyObject.DN)).To(BeFalse(), "its DC Manager and keys are gone")
		Expect(adExists(notes)).To(BeTrue(), "a person's object stays")
		Expect(adExists(path)).To(BeTrue(), "and so does the container that holds it")
	})

	It("says why Delete waits when the bind Secret is gone, and lets go once the policy is Retain", func(ctx context.Context) {
		path := f.path("blocked")
		obj := f.dkm("blocked", path)
		obj.Spec.DeletionPolicy = dkmv1.DeletionDelete
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		expectReadyObj(ctx, obj)

		// What a terminating namespace does: the bind Secret goes first.
		Expect(k8sClient.Delete(ctx, f.getSecret(ctx, "bind"))).To(Succeed())
		Expect(k8sClient.Delete(ctx, obj)).To(Succeed())
		c := expectCondition(ctx, obj, dkmv1.ConditionReady, metav1.ConditionFalse, "DeletionBlocked")
		Expect(c.Message).To(ContainSubstring("deletionPolicy: Retain"))
		Expect(adExists(path)).To(BeTrue())

		cur := get(ctx, obj)
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Spec.DeletionPolicy = dkmv1.DeletionRetain
		Expect(k8sClient.Patch(ctx, cur, patch)).To(Succeed())
		Eventually(func() error { return k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), &dkmv1.DKMContainer{}) }, eventually).
			ShouldNot(Succeed())
		Expect(adExists(path)).To(BeTrue(), "Retain leaves AD untouched")
	})

	It("moves ownership only by the annotation naming the current owner's UID", func(ctx context.Context) {
		path := f.path("handover")
		owner := f.dkm("old-owner", path)
		Expect(k8sClient.Create(ctx, owner)).To(Succeed())
		first := expectReadyObj(ctx, owner)
		next := f.dkm("new-owner", path)
		Expect(k8sClient.Create(ctx, next)).To(Succeed())
		Expect(expectReadyObj(ctx, next).Status.Role).To(Equal(dkmv1.RoleReader))

		setAnnotation(ctx, next, dkmv1.AnnotationTakeOwnership, "not-the-owner")
		expectEvent(ctx, next, "OwnershipNotTaken")
		Expect(adOwner(path).Name).To(Equal("old-owner"))

		setAnnotation(ctx, next, dkmv1.AnnotationTakeOwnership, string(first.UID))
		Eventually(func() dkmv1.Role { return get(ctx, next).Status.Role }, eventually).Should(Equal(dkmv1.RoleWriter))
		Expect(adOwner(path).Name).To(Equal("new-owner"))
		Eventually(func() dkmv1.Role { return get(ctx, owner).Status.Role }, eventually).Should(Equal(dkmv1.RoleReader))
		Expect(get(ctx, next).Status.ActiveKeyFingerprint).To(Equal(first.Status.ActiveKeyFingerprint))
	})
})

func expectReadyObj(ctx context.Context, obj *dkmv1.DKMContainer) *dkmv1.DKMContainer {
	expectCondition(ctx, obj, dkmv1.ConditionReady, metav1.ConditionTrue, dkmv1.ReasonReady)
	return get(ctx, obj)
}

// adOwner reads the ownership record of dn.
func adOwner(dn string) directory.Owner {
	e := adSearch(dn, ldap.ScopeBaseObject, "(objectClass=*)", directory.OwnerAttribute)
	Expect(e).To(HaveLen(1))
	o, err := directory.ParseOwner(e[0].GetAttributeValue(directory.OwnerAttribute))
	Expect(err).NotTo(HaveOccurred())
	return o
}

// adGUID reads dn's objectGUID in text form.
func adGUID(dn string) string {
	e := adSearch(dn, ldap.ScopeBaseObject, "(objectClass=*)", "objectGUID")
	Expect(e).To(HaveLen(1))
	g, err := secdesc.GUIDFromBytes(e[0].GetRawAttributeValue("objectGUID"))
	Expect(err).NotTo(HaveOccurred())
	return g.String()
}

// adAddContact adds a contact as Administrator (a person or another product writing AD).
func adAddContact(dn string, attrs map[string][]string) {
	conn, err := dc.Dial()
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	add := ldap.NewAddRequest(dn, nil)
	add.Attribute("objectClass", []string{"contact"})
	for k, v := range attrs {
		add.Attribute(k, v)
	}
	Expect(conn.Add(add)).To(Succeed())
}

func setAnnotation(ctx context.Context, obj *dkmv1.DKMContainer, key, value string) {
	cur := get(ctx, obj)
	patch := client.MergeFrom(cur.DeepCopy())
	if cur.Annotations == nil {
		cur.Annotations = map[string]string{}
	}
	cur.Annotations[key] = value
	Expect(k8sClient.Patch(ctx, cur, patch)).To(Succeed())
}
