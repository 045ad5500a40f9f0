package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/controllers"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

// Generous timings: the machines have two cores, shared with other builds and tests.
const (
	eventually = 30 * time.Second
	poll       = 100 * time.Millisecond
	// operatorResync and operatorRetry are short so the operator's own loops are exercised.
	operatorResync = 2 * time.Second
	operatorRetry  = time.Second
)

var (
	scheme    = runtime.NewScheme()
	cfg       *rest.Config
	k8sClient client.Client
	dc        *testenv.DC
	kcm       *testenv.ControllerManager
	nsSeq     atomic.Int64
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "End-to-end Suite")
}

var _ = BeforeSuite(func(ctx context.Context) {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(dkmv1.AddToScheme(scheme)).To(Succeed())

	var err error
	dc, err = testenv.StartDC(ctx, testenv.DCOptions{})
	Expect(err).NotTo(HaveOccurred(), "starting the Samba AD DC")
	DeferCleanup(dc.Close)

	kube := startKube(ctx)
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	// The CRDs are installed before kube-controller-manager starts, so its garbage collector
	// discovers DKMContainers in its first sync.
	start := time.Now()
	kcm, err = testenv.StartControllerManager(ctx, kube, "statefulset-controller")
	Expect(err).NotTo(HaveOccurred(), "starting kube-controller-manager")
	AddReportEntry("kube-controller-manager collecting garbage after", time.Since(start).Round(time.Millisecond))
	DeferCleanup(kcm.Stop)
}, NodeTimeout(10*time.Minute))

// startKube starts envtest's etcd and kube-apiserver with the operator's CRDs.
func startKube(ctx context.Context) *envtest.Environment {
	kube, err := testenv.NewKube(ctx, filepath.Join("config", "crd", "bases"))
	Expect(err).NotTo(HaveOccurred())
	cfg, err = kube.Start()
	Expect(err).NotTo(HaveOccurred(), "starting envtest")
	DeferCleanup(kube.Stop)
	return kube
}

// The collector's log is the first thing to read when a spec about collection fails.
var _ = AfterEach(func() {
	if CurrentSpecReport().Failed() && kcm != nil {
		fmt.Fprintf(GinkgoWriter, "--- kube-controller-manager log (last lines) ---\n%s\n", kcm.LogTail(60))
	}
})

// operator is the dkm-operator's two controllers in one manager, wired as main.go wires them
// (without the webhook). A spec can stop it to show that something else did the work.
type operator struct {
	cancel context.CancelFunc
	done   chan struct{}
	pool   *directory.Pool
	once   sync.Once
}

// startOperator starts a fresh manager with an empty key store; it stops at the end of the spec.
func startOperator() *operator {
	// Each spec starts its own manager in this process, so controller names repeat.
	skipNameValidation := true
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:     scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Cache:      controllers.CacheOptions(nil),
		Controller: config.Controller{SkipNameValidation: &skipNameValidation},
	})
	Expect(err).NotTo(HaveOccurred())
	op := &operator{done: make(chan struct{}), pool: directory.NewPool()}
	_, err = controllers.Setup(mgr, controllers.Options{
		Directories: controllers.PoolFactory(op.pool),
		Metrics:     controllers.NewMetrics(nil),
		Resync:      operatorResync,
		Retry:       operatorRetry,
	})
	Expect(err).NotTo(HaveOccurred())

	var ctx context.Context
	ctx, op.cancel = context.WithCancel(context.Background())
	go func() {
		defer GinkgoRecover()
		defer close(op.done)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	DeferCleanup(op.stop)
	return op
}

// stop stops the manager and waits until its controllers have returned; it is idempotent.
func (op *operator) stop() {
	op.once.Do(func() {
		op.cancel()
		<-op.done
		op.pool.Close()
	})
}

// fixture is one spec's namespace: bind (Administrator), CA and KEK Secrets, the Kubernetes
// service account replicas run as, and a fresh AD service account for the container's DACL.
type fixture struct {
	ns      string
	service testenv.Principal
}

func newFixture(ctx context.Context) *fixture {
	f := &fixture{ns: fmt.Sprintf("e2e-%d-%d", nsSeq.Add(1), time.Now().UnixNano()%100000)}
	Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}})).To(Succeed())
	f.secret(ctx, "bind", map[string][]byte{
		controllers.BindUsernameKey: []byte(dc.AdminUser), controllers.BindPasswordKey: []byte(dc.AdminPassword)})
	f.secret(ctx, "ca", map[string][]byte{"ca.crt": dc.CAPEM})
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	f.secret(ctx, "kek", map[string][]byte{"kek": kek})
	Expect(k8sClient.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "vmm", Namespace: f.ns}})).To(Succeed())
	var err error
	f.service, err = dc.CreateUser("svc-"+f.ns, "Svc!Passw0rd-"+f.ns)
	Expect(err).NotTo(HaveOccurred(), "creating the AD service account")
	return f
}

func (f *fixture) secret(ctx context.Context, name string, data map[string][]byte) {
	Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns}, Data: data})).To(Succeed())
}

// replicaLabels select the replica pods of the fixture's DKMContainer.
var replicaLabels = map[string]string{"app": "vmm"}

// createDKM creates a DKMContainer (Create mode, Wrapped, Administrator over LDAPS) whose
// replicas are the pods labelled app=vmm running as the Kubernetes service account vmm, and
// waits until it is Ready.
func (f *fixture) createDKM(ctx context.Context, name string) *dkmv1.DKMContainer {
	obj := &dkmv1.DKMContainer{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns},
		Spec: dkmv1.DKMContainerSpec{
			Directory: dkmv1.DirectorySpec{
				URLs:              []string{dc.URL},
				BindSecretRef:     dkmv1.SecretReference{Name: "bind"},
				CABundleSecretRef: &dkmv1.SecretKeyReference{Name: "ca", Key: "ca.crt"},
			},
			Path:            fmt.Sprintf("CN=DKM-%s-%s,CN=System,%s", f.ns, name, dc.BaseDN),
			ServiceAccounts: []string{f.service.DownLevel(dc)},
			KeyProtection:   dkmv1.KeyProtectionSpec{Mode: dkmv1.KeyWrapped, KEKSecretRef: &dkmv1.SecretReference{Name: "kek"}},
			Replicas: &dkmv1.ReplicasSpec{
				Selector:            metav1.LabelSelector{MatchLabels: replicaLabels},
				ServiceAccountNames: []string{"vmm"},
			},
		},
	}
	Expect(k8sClient.Create(ctx, obj)).To(Succeed())
	Eventually(func(g Gomega) {
		cur := &dkmv1.DKMContainer{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), cur)).To(Succeed())
		ready := meta.FindStatusCondition(cur.Status.Conditions, dkmv1.ConditionReady)
		g.Expect(ready).NotTo(BeNil(), "no Ready condition yet")
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "Ready: %s: %s", ready.Reason, ready.Message)
	}, eventually, poll).Should(Succeed())
	return obj
}

// activeFingerprint is the DKMContainer's status fingerprint of its active key: what the
// operator read from AD, named without revealing it.
func activeFingerprint(ctx context.Context, obj *dkmv1.DKMContainer) string {
	cur := &dkmv1.DKMContainer{}
	Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), cur)).To(Succeed())
	return cur.Status.ActiveKeyFingerprint
}
