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
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// The safe-DACL gate (docs/design.md, rule 6) against the Samba DC: Audit is Ready under a DACL that is
// safe but not the template, and writes no key while anyone else could read one.
var _ = Describe("Safe-DACL gate", func() {
	var f *fixture
	BeforeEach(func(ctx context.Context) { f = newFixture(ctx) })

	domainAliases := func() secdesc.Aliases {
		d := secdesc.MustParseSID(dc.DomainSID)
		return secdesc.DomainAliases(d, d)
	}
	// templateSDDL is the DKM template for the fixture's service account (the bind identity is
	// the Administrator, a template principal).
	templateSDDL := func() string {
		d := secdesc.MustParseSID(dc.DomainSID)
		sd, err := secdesc.DKMTemplate(d, d, []secdesc.SID{secdesc.MustParseSID(f.service.SID)})
		Expect(err).NotTo(HaveOccurred())
		return secdesc.FormatDACL(sd, domainAliases())
	}
	canonical := func(aceSDDL string) string {
		ace, err := secdesc.ParseACE(aceSDDL, domainAliases())
		Expect(err).NotTo(HaveOccurred())
		return secdesc.FormatACE(ace, domainAliases())
	}

	It("checks the GUIDs it relies on against the DC's schema", func() {
		schema := "CN=Schema,CN=Configuration," + dc.BaseDN
		guid := func(e *ldap.Entry, attr string) secdesc.GUID {
			g, err := secdesc.GUIDFromBytes(e.GetRawAttributeValue(attr))
			Expect(err).NotTo(HaveOccurred(), "%s of %s", attr, e.DN)
			return g
		}
		photo := adSearch(schema, ldap.ScopeSingleLevel, "(lDAPDisplayName=thumbnailPhoto)", "schemaIDGUID", "attributeSecurityGUID")
		Expect(photo).To(HaveLen(1))
		Expect(guid(photo[0], "schemaIDGUID")).To(Equal(secdesc.GUIDThumbnailPhoto))
		Expect(guid(photo[0], "attributeSecurityGUID")).To(Equal(secdesc.GUIDPersonalInformation), "thumbnailPhoto's property set")
		set := adSearch("CN=Extended-Rights,CN=Configuration,"+dc.BaseDN, ldap.ScopeSingleLevel,
			"(rightsGuid="+secdesc.GUIDPersonalInformation.String()+")", "cn", "validAccesses")
		Expect(set).To(HaveLen(1))
		Expect(set[0].GetAttributeValue("cn")).To(Equal("Personal-Information"))
		Expect(set[0].GetAttributeValue("validAccesses")).To(Equal("48"), "a property set: RP|WP")

		for name, want := range map[string]secdesc.GUID{
			"contact": secdesc.GUIDClassContact, "organizationalPerson": secdesc.GUIDClassOrganizationalPerson,
			"person": secdesc.GUIDClassPerson, "top": secdesc.GUIDClassTop, "container": secdesc.GUIDClassContainer,
		} {
			class := adSearch(schema, ldap.ScopeSingleLevel, "(&(objectClass=classSchema)(lDAPDisplayName="+name+"))", "schemaIDGUID", "subClassOf")
			Expect(class).To(HaveLen(1), name)
			Expect(guid(class[0], "schemaIDGUID")).To(Equal(want), name)
		}
		// contact's superclasses are exactly the ones the gate counts as reaching key objects.
		var chain []string
		for name := "contact"; name != "top"; {
			class := adSearch(schema, ldap.ScopeSingleLevel, "(&(objectClass=classSchema)(lDAPDisplayName="+name+"))", "subClassOf")
			Expect(class).To(HaveLen(1), name)
			name = class[0].GetAttributeValue("subClassOf")
			chain = append(chain, name)
		}
		Expect(chain).To(Equal([]string{"organizationalPerson", "person", "top"}))
	})

	It("makes an adopted container Ready under Audit when its DACL is safe though not the template", func(ctx context.Context) {
		operator, err := dc.CreateUser("op-"+f.ns, "Op!Passw0rd-"+f.ns)
		Expect(err).NotTo(HaveOccurred())
		f.secret(ctx, "bind", map[string][]byte{BindUsernameKey: []byte(operator.UPN(dc)), BindPasswordKey: []byte(operator.Password)})
		path := f.path("adopt-safe")
		// A domain admin's own DACL: protected; admins, the service account and the operator on
		// everything below; Authenticated Users may read the container object itself, which
		// holds no key. No Enterprise Admins, Administrator or BUILTIN ACE, no tokenGroups ACEs.
		const auOnContainer = "(A;;RPLCLORC;;;AU)"
		dacl := "D:P(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;DA)(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;SY)" +
			"(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;" + f.service.SID + ")(A;CI;CCDCLCRPWPLORC;;;" + operator.SID + ")" + auOnContainer
		adCreateContainer(path, dacl)
		before := secdesc.FormatDACL(adDACL(path), domainAliases())

		obj := f.dkm("adopt-safe", path)
		obj.Spec.Provisioning = dkmv1.ProvisioningAdopt
		obj.Spec.AccessPolicy = dkmv1.AccessAudit
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		expectCondition(ctx, obj, dkmv1.ConditionReady, metav1.ConditionTrue, dkmv1.ReasonReady)

		c := expectCondition(ctx, obj, dkmv1.ConditionAccessControlled, metav1.ConditionTrue, dkmv1.ReasonSafeDACL)
		Expect(c.Message).To(ContainSubstring("is safe"))
		Expect(c.Message).To(ContainSubstring("; unexpected "))
		Expect(c.Message).To(ContainSubstring(canonical(auOnContainer)))
		Expect(c.Message).To(ContainSubstring("missing "))
		got := get(ctx, obj)
		Expect(got.Status.LastDrift).NotTo(BeNil())
		Expect(got.Status.LastDrift.Unexpected).To(ContainElement(canonical(auOnContainer)))
		Expect(got.Status.LastDrift.Missing).NotTo(BeEmpty())
		Expect(got.Status.LastDrift.Repaired).To(BeFalse())
		Expect(got.Status.ActiveKeyFingerprint).To(MatchRegexp(`^sha256:[0-9a-f]{16}$`))
		Expect(adKeys(path)).To(HaveLen(1), "the key is written under the safe DACL")
		Expect(expectEvent(ctx, obj, dkmv1.ReasonDriftDetected)).To(ContainSubstring(canonical(auOnContainer)))
		Expect(secdesc.FormatDACL(adDACL(path), domainAliases())).To(Equal(before), "Audit changes nothing")
	})

	It("writes no key under Audit while Authenticated Users could read the key objects, and creates it once they cannot", func(ctx context.Context) {
		path := f.path("unsafe")
		const auRead = "(A;CI;RPLCLORC;;;AU)" // inherited by the DC Manager and key objects
		adCreateContainer(path, templateSDDL()+auRead)
		obj := f.dkm("unsafe", path)
		obj.Spec.Provisioning = dkmv1.ProvisioningAdopt
		obj.Spec.AccessPolicy = dkmv1.AccessAudit
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())

		// Checked in AD first, by another tool: the DACL was seen, and nothing was created below it.
		Eventually(func() string { return condition(ctx, obj, dkmv1.ConditionAccessControlled).Reason }, eventually).ShouldNot(BeEmpty())
		Consistently(func() int { return len(adManagers(path)) + len(adKeys(path)) }, 3*testResync, 500*time.Millisecond).
			Should(BeZero(), "no DC Manager or key object under an unsafe DACL")

		c := expectCondition(ctx, obj, dkmv1.ConditionKeyReady, metav1.ConditionFalse, dkmv1.ReasonUnsafeDACL)
		Expect(c.Message).To(HavePrefix("the DACL of " + path + " is unsafe: " + canonical(auRead) + " lets Authenticated Users read the key"))
		Expect(c.Message).To(ContainSubstring("no key is created"))
		a := expectCondition(ctx, obj, dkmv1.ConditionAccessControlled, metav1.ConditionFalse, dkmv1.ReasonUnsafeDACL)
		Expect(a.Message).To(ContainSubstring(canonical(auRead)))
		ready := condition(ctx, obj, dkmv1.ConditionReady)
		Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		Expect(ready.Reason).To(Equal(dkmv1.ReasonUnsafeDACL))
		Expect(expectEvent(ctx, obj, dkmv1.ReasonUnsafeDACL)).To(ContainSubstring(canonical(auRead)))
		Expect(adManagers(path)).To(BeEmpty())
		Expect(get(ctx, obj).Status.ActiveKeyID).To(BeEmpty())

		// The admin removes the ACE: the key is created with no other action.
		adSetDACL(path, mustParseSDDL(templateSDDL(), domainAliases()))
		expectCondition(ctx, obj, dkmv1.ConditionReady, metav1.ConditionTrue, dkmv1.ReasonReady)
		Expect(adKeys(path)).To(HaveLen(1))
		Expect(condition(ctx, obj, dkmv1.ConditionAccessControlled).Reason).To(Equal(dkmv1.ReasonReady), "the template again")
	})

	It("keeps serving the existing key but rotates nothing while the DACL is unsafe", func(ctx context.Context) {
		path := f.path("unsafe-rotate")
		obj := f.dkm("unsafe-rotate", path)
		obj.Spec.AccessPolicy = dkmv1.AccessAudit
		obj.Spec.Rotation = &dkmv1.RotationSpec{Period: &metav1.Duration{Duration: time.Hour}}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		expectCondition(ctx, obj, dkmv1.ConditionReady, metav1.ConditionTrue, dkmv1.ReasonReady)
		template := adDACL(path)

		adAddACE(path, "(A;CI;RP;;;AU)")
		expectCondition(ctx, obj, dkmv1.ConditionKeyReady, metav1.ConditionFalse, dkmv1.ReasonUnsafeDACL)
		clockAhead(time.Hour) // a rotation is due from now on
		frozen := get(ctx, obj)
		versions := len(adKeys(path))
		Expect(frozen.Status.Keys).To(HaveLen(versions))
		Consistently(func() int { return len(adKeys(path)) }, 3*testResync+3*time.Second, 500*time.Millisecond).
			Should(Equal(versions), "rotation is a key write: none while the DACL is unsafe")
		c := condition(ctx, obj, dkmv1.ConditionKeyReady)
		Expect(c.Message).To(ContainSubstring("a rotation that is due wait"))
		Expect(c.Message).To(ContainSubstring(frozen.Status.ActiveKeyID + " (" + frozen.Status.ActiveKeyFingerprint))
		Expect(c.Message).To(ContainSubstring("still read and served to replicas"))

		// Reading is not writing: the ring is loaded from AD again (as after an operator restart).
		name := client.ObjectKeyFromObject(obj)
		keyStore.Forget(name)
		Eventually(func() string {
			if ring := keyStore.Get(name); ring != nil {
				return ring.Active().Fingerprint.String()
			}
			return ""
		}, eventually, 200*time.Millisecond).Should(Equal(frozen.Status.ActiveKeyFingerprint))
		Expect(len(adKeys(path))).To(Equal(versions))

		// Safe again: rotation resumes by itself.
		adSetDACL(path, template)
		Eventually(func() int { return len(adKeys(path)) }, eventually, 500*time.Millisecond).Should(BeNumerically(">", versions))
		expectCondition(ctx, obj, dkmv1.ConditionKeyReady, metav1.ConditionTrue, dkmv1.ReasonReady)
	})
})

func mustParseSDDL(text string, a secdesc.Aliases) *secdesc.SecurityDescriptor {
	sd, err := secdesc.ParseSDDL(text, a)
	Expect(err).NotTo(HaveOccurred())
	return sd
}
