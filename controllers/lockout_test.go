package controllers

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

// bindCounter keeps every directory client the reconciler was handed, by bind identity, so a
// test can count the binds sent as one account (the pool may drop and replace clients).
type bindCounter struct {
	mu      sync.Mutex
	clients map[string][]*directory.Client
}

func (b *bindCounter) wrap(next DirectoryFactory) DirectoryFactory {
	return func(cfg directory.Config) (Directory, error) {
		d, err := next(cfg)
		if err != nil {
			return nil, err
		}
		if c, ok := d.(*directory.Client); ok {
			b.mu.Lock()
			if b.clients == nil {
				b.clients = map[string][]*directory.Client{}
			}
			if !slices.Contains(b.clients[cfg.Username], c) {
				b.clients[cfg.Username] = append(b.clients[cfg.Username], c)
			}
			b.mu.Unlock()
		}
		return d, nil
	}
}

// binds is how many binds the reconciler sent as user.
func (b *bindCounter) binds(user string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, c := range b.clients[user] {
		n += c.Ops()["bind"]
	}
	return n
}

// These tests run with the domain's lockout threshold at 5, as many domains have it: a bind
// identity whose password the operator keeps trying would be locked out within five tries.
var _ = Describe("Binding without locking the account out", func() {
	var f *fixture
	BeforeEach(func(ctx context.Context) {
		f = newFixture(ctx)
		previous, err := dc.SetLockoutThreshold(5)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			_, err := dc.SetLockoutThreshold(previous)
			Expect(err).NotTo(HaveOccurred())
		})
	})

	// adopted creates a bind account and a container a domain admin pre-created for it with the
	// rights Adopt needs, and returns the account and a DKMContainer (not yet created) using it.
	adopted := func(prefix string) (testenv.Principal, *dkmv1.DKMContainer) {
		op, err := dc.CreateUser(prefix+"-"+f.ns, "Op!Passw0rd-"+f.ns)
		Expect(err).NotTo(HaveOccurred())
		path := f.path(prefix)
		adCreateContainer(path, "D:P(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;DA)(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;SY)"+
			"(A;CI;CCLCRPLORCWPWD;;;"+op.SID+")")
		obj := f.dkm(prefix, path)
		obj.Spec.Provisioning = dkmv1.ProvisioningAdopt
		// Gone at the end (Retain: AD is left alone), so it does not reconcile through the
		// rest of the suite.
		DeferCleanup(func(ctx context.Context) { _ = k8sClient.Delete(ctx, obj) })
		return op, obj
	}
	badLogons := func(op testenv.Principal) (int, int64) {
		bad, lockoutTime, err := dc.BadLogons(op.DN)
		Expect(err).NotTo(HaveOccurred())
		return bad, lockoutTime
	}
	reasonOf := func(ctx context.Context, obj *dkmv1.DKMContainer) string {
		return condition(ctx, obj, dkmv1.ConditionDirectoryReachable).Reason
	}

	It("binds once with a password AD refuses, however long it stays wrong, and takes the fixed Secret at once", func(ctx context.Context) {
		op, obj := adopted("lk")
		const wrong = "Wr0ng-Passw0rd-Secret"
		f.secret(ctx, "bind", map[string][]byte{BindUsernameKey: []byte(op.UPN(dc)), BindPasswordKey: []byte(wrong)})
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		c := expectCondition(ctx, obj, dkmv1.ConditionDirectoryReachable, metav1.ConditionFalse, dkmv1.ReasonInvalidCredentials)
		GinkgoWriter.Printf("DirectoryReachable: %s\n", c.Message)
		Expect(c.Message).To(ContainSubstring(f.ns + "/bind"))
		Expect(c.Message).NotTo(ContainSubstring(wrong))

		// 45 retry periods, longer than any failure memory of the directory client, with
		// reconciles for other reasons on the way: a spec change and an annotation.
		stays := func(d time.Duration) {
			Consistently(func(g Gomega) {
				bad, lockoutTime := badLogons(op)
				g.Expect(bad).To(BeNumerically("<=", 1), "badPwdCount")
				g.Expect(lockoutTime).To(BeZero(), "lockoutTime")
				g.Expect(reasonOf(ctx, obj)).To(Equal(dkmv1.ReasonInvalidCredentials))
			}, d, time.Second).Should(Succeed())
		}
		stays(15 * testRetry)
		cur := get(ctx, obj)
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Spec.AccessPolicy = dkmv1.AccessAudit
		Expect(k8sClient.Patch(ctx, cur, patch)).To(Succeed())
		stays(15 * testRetry)
		cur = get(ctx, obj)
		patch = client.MergeFrom(cur.DeepCopy())
		cur.Annotations = map[string]string{"example.com/note": "looked at it"}
		Expect(k8sClient.Patch(ctx, cur, patch)).To(Succeed())
		stays(15 * testRetry)
		bad, lockoutTime := badLogons(op)
		GinkgoWriter.Printf("after %d retry periods: badPwdCount %d, lockoutTime %d, binds %d\n", 45, bad, lockoutTime, suiteBinds.binds(op.UPN(dc)))
		Expect(suiteBinds.binds(op.UPN(dc))).To(Equal(1))

		// The admin puts the right password in the Secret: the operator binds at once, with
		// nothing restarted and no retry period to wait for.
		fixed := time.Now()
		f.secret(ctx, "bind", map[string][]byte{BindUsernameKey: []byte(op.UPN(dc)), BindPasswordKey: []byte(op.Password)})
		Eventually(func() metav1.ConditionStatus {
			return condition(ctx, obj, dkmv1.ConditionReady).Status
		}, 10*time.Second, 50*time.Millisecond).Should(Equal(metav1.ConditionTrue))
		GinkgoWriter.Printf("Ready %s after the Secret was fixed\n", time.Since(fixed).Round(time.Millisecond))
		AddReportEntry("time to Ready after the fix", time.Since(fixed).Round(time.Millisecond).String())
		bad, lockoutTime = badLogons(op)
		GinkgoWriter.Printf("after the fix: badPwdCount %d, lockoutTime %d, binds %d\n", bad, lockoutTime, suiteBinds.binds(op.UPN(dc)))
		Expect(lockoutTime).To(BeZero())
	})

	It("says AccountLockedOut for a locked bind account, and binds again once unlocked and the Secret touched", func(ctx context.Context) {
		op, obj := adopted("lo")
		_ = dc.LockOut(op.UPN(dc), 5)
		_, lockoutTime := badLogons(op)
		Expect(lockoutTime).NotTo(BeZero(), "locked out by 5 wrong passwords")
		// The Secret holds the right password: it is the account that is locked.
		f.secret(ctx, "bind", map[string][]byte{BindUsernameKey: []byte(op.UPN(dc)), BindPasswordKey: []byte(op.Password)})
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		c := expectCondition(ctx, obj, dkmv1.ConditionDirectoryReachable, metav1.ConditionFalse, dkmv1.ReasonAccountLockedOut)
		GinkgoWriter.Printf("DirectoryReachable: %s\n", c.Message)
		Expect(strings.ToLower(c.Message)).To(ContainSubstring("unlock"))
		Expect(c.Message).NotTo(ContainSubstring(op.Password))
		Expect(condition(ctx, obj, dkmv1.ConditionReady).Reason).To(Equal(dkmv1.ReasonAccountLockedOut))
		Expect(expectEvent(ctx, obj, dkmv1.ReasonAccountLockedOut)).To(ContainSubstring("locked out"))

		// The admin unlocks the account; the operator does not notice by itself before the
		// lockout window has passed, but a touch of the Secret makes it bind at once.
		Expect(dc.Unlock(op.DN)).To(Succeed())
		Consistently(func() string { return reasonOf(ctx, obj) }, 3*testRetry, 200*time.Millisecond).Should(Equal(dkmv1.ReasonAccountLockedOut))
		Expect(suiteBinds.binds(op.UPN(dc))).To(Equal(1))
		touched := time.Now()
		s := f.getSecret(ctx, "bind")
		s.Annotations = map[string]string{"example.com/retry": "now"}
		Expect(k8sClient.Update(ctx, s)).To(Succeed())
		Eventually(func() metav1.ConditionStatus {
			return condition(ctx, obj, dkmv1.ConditionReady).Status
		}, 10*time.Second, 50*time.Millisecond).Should(Equal(metav1.ConditionTrue))
		GinkgoWriter.Printf("Ready %s after the Secret was touched\n", time.Since(touched).Round(time.Millisecond))
	})
	It("tries a locked-out account once more by itself after each lockout window, never more often", func(ctx context.Context) {
		op, obj := adopted("lw")
		_ = dc.LockOut(op.UPN(dc), 5)
		f.secret(ctx, "bind", map[string][]byte{BindUsernameKey: []byte(op.UPN(dc)), BindPasswordKey: []byte(op.Password)})
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		expectCondition(ctx, obj, dkmv1.ConditionDirectoryReachable, metav1.ConditionFalse, dkmv1.ReasonAccountLockedOut)
		start := time.Now()
		// Still locked over two windows: one bind at first, then one per window.
		Consistently(func() string { return reasonOf(ctx, obj) }, 2*testLockoutRetry+2*time.Second, 200*time.Millisecond).
			Should(Equal(dkmv1.ReasonAccountLockedOut))
		binds := suiteBinds.binds(op.UPN(dc))
		GinkgoWriter.Printf("%d binds in %s with a %s lockout window\n", binds, time.Since(start).Round(time.Second), testLockoutRetry)
		Expect(binds).To(BeNumerically(">=", 2))
		Expect(binds).To(BeNumerically("<=", 3))

		// The admin unlocks it and does nothing else: the next window's attempt binds.
		Expect(dc.Unlock(op.DN)).To(Succeed())
		unlocked := time.Now()
		Eventually(func() metav1.ConditionStatus {
			return condition(ctx, obj, dkmv1.ConditionReady).Status
		}, testLockoutRetry+10*time.Second, 100*time.Millisecond).Should(Equal(metav1.ConditionTrue))
		GinkgoWriter.Printf("Ready %s after the unlock, with no change to the Secret\n", time.Since(unlocked).Round(time.Millisecond))
	})
})

// writes is how many LDAP writes (add, modify, delete) the reconciler sent as user.
func (b *bindCounter) writes(user string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, c := range b.clients[user] {
		ops := c.Ops()
		n += ops["add"] + ops["modify"] + ops["delete"]
	}
	return n
}
