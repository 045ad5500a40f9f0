package watch

import (
	"context"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
)

// within is the bound: a change in AD is answered within a second (the resync is an
// hour away).
const within = time.Second

var e *env

func TestWatch(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "AD Watch Suite")
}

var _ = BeforeSuite(func(ctx context.Context) {
	var err error
	// Reconnect after 2 s at the earliest: the DC restart test tampers inside that window.
	e, err = startEnv(ctx, 2*time.Second, 4*time.Second, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { e.stop() })
}, NodeTimeout(10*time.Minute))

var _ = Describe("The AD watch, with a resync period of one hour", func() {
	var f *fixture
	BeforeEach(func(ctx context.Context) {
		var err error
		f, err = e.newFixture(ctx)
		Expect(err).NotTo(HaveOccurred())
	})

	It("repairs a DACL tamper under Enforce within a second", func(ctx context.Context) {
		obj := f.dkm("enforced")
		Expect(e.client.Create(ctx, obj)).To(Succeed())
		expectLive(ctx, obj)
		conn := dial()

		Expect(addTamper(conn, obj.Spec.Path)).To(Succeed())
		Eventually(func() (bool, error) { return tampered(conn, obj.Spec.Path) }, within, 10*time.Millisecond).
			Should(BeFalse(), "the tamper is repaired")
		Eventually(func(g Gomega) {
			g.Expect(get(ctx, obj).Status.LastDrift).NotTo(BeNil())
			g.Expect(get(ctx, obj).Status.LastDrift.Repaired).To(BeTrue())
		}, 5*time.Second, 50*time.Millisecond).Should(Succeed())
	})

	It("reports a DACL tamper under Audit within a second, and changes nothing", func(ctx context.Context) {
		obj := f.dkm("audited")
		obj.Spec.AccessPolicy = dkmv1.AccessAudit
		Expect(e.client.Create(ctx, obj)).To(Succeed())
		expectLive(ctx, obj)
		conn := dial()

		Expect(addTamper(conn, obj.Spec.Path)).To(Succeed())
		Eventually(func(g Gomega) {
			drift := get(ctx, obj).Status.LastDrift
			g.Expect(drift).NotTo(BeNil())
			g.Expect(drift.Unexpected).To(ContainElement(ContainSubstring(";AU)")))
			g.Expect(drift.Repaired).To(BeFalse())
		}, within, 10*time.Millisecond).Should(Succeed())
		expectEvent(ctx, obj, dkmv1.ReasonDriftDetected)
		Expect(tampered(conn, obj.Spec.Path)).To(BeTrue(), "Audit changes nothing")
	})

	It("reports KeyLost within a second of a key contact's deletion", func(ctx context.Context) {
		obj := f.dkm("lost")
		Expect(e.client.Create(ctx, obj)).To(Succeed())
		ready := expectLive(ctx, obj)
		Expect(ready.Status.KeyObject).NotTo(BeNil())

		// The active key's contact, below the DC Manager object status names.
		conn := dial()
		res, err := conn.Search(ldap.NewSearchRequest(ready.Status.KeyObject.DN, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 10, false,
			"(&(objectClass=contact)(l="+ldap.EscapeFilter(ready.Status.ActiveKeyID)+"))", []string{"1.1"}, nil))
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Entries).To(HaveLen(1))
		Expect(conn.Del(ldap.NewDelRequest(res.Entries[0].DN, nil))).To(Succeed())
		Eventually(func(g Gomega) {
			c := meta.FindStatusCondition(get(ctx, obj).Status.Conditions, dkmv1.ConditionKeyReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(dkmv1.ReasonKeyLost))
		}, within, 10*time.Millisecond).Should(Succeed())
	})

	It("reconnects after a DC restart and repairs a tamper made before it reconnected", func(ctx context.Context) {
		obj := f.dkm("restart")
		Expect(e.client.Create(ctx, obj)).To(Succeed())
		expectLive(ctx, obj)
		key := client.ObjectKeyFromObject(obj).String()

		Expect(e.dc.Stop()).To(Succeed())
		Eventually(func() directory.WatchMode { return e.watcher.State(key).Mode }, 10*time.Second, 20*time.Millisecond).
			Should(Equal(directory.WatchConnecting))
		Expect(e.dc.Start(ctx)).To(Succeed())
		conn := dial()
		Expect(addTamper(conn, obj.Spec.Path)).To(Succeed())
		Expect(e.watcher.State(key).Mode).To(Equal(directory.WatchConnecting), "the tamper is made while no search is open")

		Eventually(func() directory.WatchMode { return e.watcher.State(key).Mode }, 30*time.Second, 20*time.Millisecond).
			Should(Equal(directory.WatchLive))
		Eventually(func() (bool, error) { return tampered(conn, obj.Spec.Path) }, 10*time.Second, 20*time.Millisecond).
			Should(BeFalse(), "the tamper made while the watch was down is repaired after it reconnected")

		// And the reopened searches see the next tamper at once.
		Expect(addTamper(conn, obj.Spec.Path)).To(Succeed())
		Eventually(func() (bool, error) { return tampered(conn, obj.Spec.Path) }, within, 10*time.Millisecond).Should(BeFalse())
	}, SpecTimeout(3*time.Minute))
})

// expectLive waits until obj is Ready and its DirectoryReachable message says change
// notification is active, and returns it.
func expectLive(ctx context.Context, obj *dkmv1.DKMContainer) *dkmv1.DKMContainer {
	var out *dkmv1.DKMContainer
	Eventually(func(g Gomega) {
		out = get(ctx, obj)
		ready := meta.FindStatusCondition(out.Status.Conditions, dkmv1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "Ready: %+v", ready)
		reach := meta.FindStatusCondition(out.Status.Conditions, dkmv1.ConditionDirectoryReachable)
		g.Expect(reach.Message).To(ContainSubstring("AD change notification is active"))
	}, 60*time.Second, 100*time.Millisecond).Should(Succeed())
	return out
}

func get(ctx context.Context, obj *dkmv1.DKMContainer) *dkmv1.DKMContainer {
	out := &dkmv1.DKMContainer{}
	Expect(e.client.Get(ctx, client.ObjectKeyFromObject(obj), out)).To(Succeed())
	return out
}

func expectEvent(ctx context.Context, obj *dkmv1.DKMContainer, reason string) {
	Eventually(func(g Gomega) {
		list := &eventsv1.EventList{}
		g.Expect(e.client.List(ctx, list, client.InNamespace(obj.Namespace))).To(Succeed())
		found := false
		for _, ev := range list.Items {
			found = found || ev.Regarding.Name == obj.Name && ev.Reason == reason
		}
		g.Expect(found).To(BeTrue(), "no %s event for %s", reason, obj.Name)
	}, 10*time.Second, 100*time.Millisecond).Should(Succeed())
}

// dial is an Administrator connection of the test's own, closed after the spec.
func dial() *ldap.Conn {
	conn, err := e.dc.Dial()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(conn.Close)
	return conn
}
