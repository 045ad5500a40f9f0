package controllers

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

// The suite runs the reconciler in a real manager against envtest's kube-apiserver and a real
// Samba AD DC. Timings are short so that "the operator continues by itself" is observable.
const (
	testResync = 2 * time.Second
	testRetry  = time.Second
	eventually = 30 * time.Second

	// testLockoutRetry: a locked-out bind account is tried again by itself after this long.
	testLockoutRetry = 8 * time.Second
)

var (
	kube      *envtest.Environment
	cfg       *rest.Config
	k8sClient client.Client
	scheme    = runtime.NewScheme()
	dc        *testenv.DC
	keyStore  *KeyStore
	// suiteBinds counts the binds the reconciler sends, by identity.
	suiteBinds = &bindCounter{}
	// operator is the non-admin account Adopt tests bind as.
	suiteSeq atomic.Int64
	// suiteClock is the reconciler's clock.
	suiteClock = &offsetClock{}
)

// offsetClock is the wall clock moved forward by an offset a test sets.
type offsetClock struct{ offset atomic.Int64 }

func (c *offsetClock) now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// clockAhead moves the reconciler's clock forward by d until the test ends: rotation.period is
// at least an hour, so this is how a test makes a rotation due. Every reconcile while it is
// ahead finds the newest key due again (AD's whenCreated is the wall clock); setting it back
// at the end stops that.
func clockAhead(d time.Duration) {
	suiteClock.offset.Store(int64(d))
	DeferCleanup(func() { suiteClock.offset.Store(0) })
}

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controllers Suite")
}

var _ = BeforeSuite(func(ctx context.Context) {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(dkmv1.AddToScheme(scheme)).To(Succeed())

	var err error
	dc, err = testenv.StartDC(ctx, testenv.DCOptions{})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(dc.Close)

	kube, err = testenv.NewKube(ctx, filepath.Join("config", "crd", "bases"))
	Expect(err).NotTo(HaveOccurred())
	cfg, err = kube.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(kube.Stop)
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   CacheOptions(nil),
	})
	Expect(err).NotTo(HaveOccurred())
	pool := directory.NewPool()
	DeferCleanup(pool.Close)
	keyStore, err = Setup(mgr, Options{
		Directories: suiteBinds.wrap(PoolFactory(pool)),
		Metrics:     NewMetrics(nil),
		Resync:      testResync,
		Retry:       testRetry,
		Now:         suiteClock.now,

		LockoutRetry: testLockoutRetry,
	})
	Expect(err).NotTo(HaveOccurred())

	mgrCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(mgrCtx)).To(Succeed())
	}()
	DeferCleanup(func() { cancel(); <-done })
}, NodeTimeout(10*time.Minute))

// fixture is one test's namespace, Secrets and DKMContainer builder.
type fixture struct {
	ns      string
	service testenv.Principal
}

// newFixture creates a namespace with the bind (Administrator), CA and KEK Secrets and a fresh
// AD service account.
func newFixture(ctx context.Context) *fixture {
	n := suiteSeq.Add(1)
	f := &fixture{ns: fmt.Sprintf("t%d-%d", n, time.Now().UnixNano()%100000)}
	Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}})).To(Succeed())
	f.secret(ctx, "bind", map[string][]byte{BindUsernameKey: []byte(dc.AdminUser), BindPasswordKey: []byte(dc.AdminPassword)})
	f.secret(ctx, "ca", map[string][]byte{"ca.crt": dc.CAPEM})
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	f.secret(ctx, "kek", map[string][]byte{"kek": kek})
	var err error
	f.service, err = dc.CreateUser(fmt.Sprintf("svc-%s", f.ns), "Svc!Passw0rd-"+f.ns)
	Expect(err).NotTo(HaveOccurred())
	return f
}

func (f *fixture) secret(ctx context.Context, name string, data map[string][]byte) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns}, Data: data}
	existing := &corev1.Secret{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(s), existing); err == nil {
		existing.Data = data
		Expect(k8sClient.Update(ctx, existing)).To(Succeed())
		return
	}
	Expect(k8sClient.Create(ctx, s)).To(Succeed())
}

// path is a fresh container DN under CN=System for this test.
func (f *fixture) path(suffix string) string {
	return fmt.Sprintf("CN=DKM-%s-%s,CN=System,%s", f.ns, suffix, dc.BaseDN)
}

// dkm returns a DKMContainer in Create mode, Wrapped, bound as Administrator over LDAPS.
func (f *fixture) dkm(name, path string) *dkmv1.DKMContainer {
	return &dkmv1.DKMContainer{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns},
		Spec: dkmv1.DKMContainerSpec{
			Directory: dkmv1.DirectorySpec{
				URLs:              []string{dc.URL},
				BindSecretRef:     dkmv1.SecretReference{Name: "bind"},
				CABundleSecretRef: &dkmv1.SecretKeyReference{Name: "ca", Key: "ca.crt"},
			},
			Path:            path,
			ServiceAccounts: []string{f.service.DownLevel(dc)},
			KeyProtection:   dkmv1.KeyProtectionSpec{Mode: dkmv1.KeyWrapped, KEKSecretRef: &dkmv1.SecretReference{Name: "kek"}},
		},
	}
}

// get re-reads a DKMContainer.
func get(ctx context.Context, obj *dkmv1.DKMContainer) *dkmv1.DKMContainer {
	out := &dkmv1.DKMContainer{}
	Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), out)).To(Succeed())
	return out
}

// condition returns a condition of the current object (zero value when absent).
func condition(ctx context.Context, obj *dkmv1.DKMContainer, t string) metav1.Condition {
	out := &dkmv1.DKMContainer{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), out); err != nil {
		return metav1.Condition{}
	}
	if c := meta.FindStatusCondition(out.Status.Conditions, t); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// expectCondition waits until the condition has the status and reason.
func expectCondition(ctx context.Context, obj *dkmv1.DKMContainer, t string, status metav1.ConditionStatus, reason string) metav1.Condition {
	var c metav1.Condition
	Eventually(func(g Gomega) {
		c = condition(ctx, obj, t)
		g.Expect(c.Status).To(Equal(status), "condition %s: %+v", t, c)
		g.Expect(c.Reason).To(Equal(reason), "condition %s: %+v", t, c)
	}, eventually, 200*time.Millisecond).Should(Succeed())
	return c
}

// expectEvent waits for an event with the reason on obj and returns its note.
func expectEvent(ctx context.Context, obj *dkmv1.DKMContainer, reason string) string {
	var note string
	Eventually(func(g Gomega) {
		list := &eventsv1.EventList{}
		g.Expect(k8sClient.List(ctx, list, client.InNamespace(obj.Namespace))).To(Succeed())
		for _, e := range list.Items {
			if e.Regarding.Name == obj.Name && e.Reason == reason {
				note = e.Note
				return
			}
		}
		g.Expect(false).To(BeTrue(), "no %s event for %s", reason, obj.Name)
	}, eventually, 200*time.Millisecond).Should(Succeed())
	return note
}

// getSecret reads one of the fixture's Secrets.
func (f *fixture) getSecret(ctx context.Context, name string) *corev1.Secret {
	s := &corev1.Secret{}
	Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: name}, s)).To(Succeed())
	return s
}
