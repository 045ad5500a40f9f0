package controllers

import (
	"context"
	"time"

	"github.com/go-ldap/ldap/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

// Issue 14, against Samba and a real API server: with changeApproval Manual the operator sends
// no LDAP write until the DKMContainer is annotated with the pending plan's hash, and a changed
// spec makes an approval of the earlier plan worthless. The writes are counted on the
// connections of a bind identity only this DKMContainer uses (a domain admin of its own): the
// other specs' DKMContainers, reconciled meanwhile as Administrator, may write.
var _ = Describe("changeApproval Manual", func() {
	It("writes nothing to AD until the plan's hash is approved, and a changed spec needs a new approval", func(ctx context.Context) {
		f := newFixture(ctx)
		admin := domainAdmin("op-" + f.ns)
		f.secret(ctx, "bind", map[string][]byte{BindUsernameKey: []byte(admin.UPN(dc)), BindPasswordKey: []byte(admin.Password)})
		writes := func() int { return suiteBinds.writes(admin.UPN(dc)) }
		obj := f.dkm("manual", f.path("manual"))
		obj.Spec.ChangeApproval = dkmv1.ChangeApprovalManual
		before := writes()
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())

		expectCondition(ctx, obj, dkmv1.ConditionContainerReady, metav1.ConditionFalse, dkmv1.ReasonChangesPendingApproval)
		first := pendingPlan(ctx, obj)
		Expect(first.Changes).To(HaveLen(4), "container, DC Manager, key, CryptoPolicy: %v", first.Changes)
		Expect(expectEvent(ctx, obj, dkmv1.ReasonChangesPendingApproval)).To(ContainSubstring(first.Hash))
		Consistently(func() int { return writes() - before }, 2*time.Second, 200*time.Millisecond).
			Should(BeZero(), "LDAP writes before approval")
		Expect(containerExists(ctx, obj.Spec.Path)).To(BeFalse())

		// The spec changes (a second service account): the plan, and its hash, change too, and
		// the approval of the first plan approves nothing.
		other, err := dc.CreateUser("svc2-"+f.ns, "Svc2!Passw0rd-"+f.ns)
		Expect(err).NotTo(HaveOccurred())
		cur := get(ctx, obj)
		cur.Spec.ServiceAccounts = append(cur.Spec.ServiceAccounts, other.DownLevel(dc))
		cur.Annotations = map[string]string{dkmv1.AnnotationApproveChanges: first.Hash}
		Expect(k8sClient.Update(ctx, cur)).To(Succeed())
		var second *dkmv1.PlannedChanges
		Eventually(func(g Gomega) {
			second = pendingPlan(ctx, obj)
			g.Expect(second.Hash).NotTo(Equal(first.Hash))
		}, eventually, 200*time.Millisecond).Should(Succeed())
		Consistently(func() int { return writes() - before }, 2*time.Second, 200*time.Millisecond).
			Should(BeZero(), "LDAP writes with the approval of a plan the spec no longer gives")
		Expect(containerExists(ctx, obj.Spec.Path)).To(BeFalse())

		cur = get(ctx, obj)
		cur.Annotations[dkmv1.AnnotationApproveChanges] = second.Hash
		Expect(k8sClient.Update(ctx, cur)).To(Succeed())
		expectCondition(ctx, obj, dkmv1.ConditionReady, metav1.ConditionTrue, dkmv1.ReasonReady)
		Expect(containerExists(ctx, obj.Spec.Path)).To(BeTrue())
		Expect(writes() - before).To(BeNumerically(">=", 4))
		Expect(get(ctx, obj).Status.Changes).To(BeNil())
	})
})

// domainAdmin is a new account in Domain Admins: it may create containers in CN=System.
func domainAdmin(name string) testenv.Principal {
	p, err := dc.CreateUser(name, "Op!Passw0rd-"+name)
	Expect(err).NotTo(HaveOccurred())
	conn, err := dc.Dial()
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	mod := ldap.NewModifyRequest("CN=Domain Admins,CN=Users,"+dc.BaseDN, nil)
	mod.Add("member", []string{p.DN})
	Expect(conn.Modify(mod)).To(Succeed())
	return p
}

// pendingPlan waits for a pending plan in status and returns it.
func pendingPlan(ctx context.Context, obj *dkmv1.DKMContainer) *dkmv1.PlannedChanges {
	var p *dkmv1.PlannedChanges
	Eventually(func(g Gomega) {
		ch := get(ctx, obj).Status.Changes
		g.Expect(ch).NotTo(BeNil())
		g.Expect(ch.Pending).NotTo(BeNil())
		p = ch.Pending
	}, eventually, 200*time.Millisecond).Should(Succeed())
	return p
}

// containerExists reads AD directly (its own connection, not counted as the operator's).
func containerExists(ctx context.Context, path string) bool {
	pool := directory.NewPool()
	defer pool.Close()
	c, err := pool.Client(directory.Config{URLs: []string{dc.URL}, Username: dc.AdminUser, Password: dc.AdminPassword, CAPEM: dc.CAPEM})
	Expect(err).NotTo(HaveOccurred())
	obs, err := c.Observe(ctx, path)
	Expect(err).NotTo(HaveOccurred())
	return obs.Exists
}
