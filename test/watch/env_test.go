// Package watch proves the event-driven AD watch (directory.Watcher wired by controllers.Setup)
// against a real Samba AD DC and envtest, with a resync period of one hour: whatever is repaired
// or reported within a second was seen by AD change notification, not by the resync.
package watch

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
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
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

// resync is the operator's resync period in these tests: nothing here waits for it.
const resync = time.Hour

// env is a DC, an API server and the operator's controllers in a manager, with the Watcher.
type env struct {
	dc      *testenv.DC
	kube    *envtest.Environment
	client  client.Client
	watcher *directory.Watcher
	ops     *opCounter
	stop    func()
	seq     atomic.Int64
}

// opCounter counts the operator's LDAP operations by op (the pool's and the Watcher's).
type opCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *opCounter) observe(op, _ string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[op]++
}

func (c *opCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// startEnv starts everything; backoff is the Watcher's reconnect backoff (min, max); the
// controllers log to logs.
func startEnv(ctx context.Context, backoffMin, backoffMax time.Duration, logs io.Writer) (_ *env, err error) {
	logf.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(true)))
	e := &env{ops: &opCounter{counts: map[string]int{}}}
	var cleanups []func()
	e.stop = func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	defer func() {
		if err != nil {
			e.stop()
		}
	}()
	if e.dc, err = testenv.StartDC(ctx, testenv.DCOptions{}); err != nil {
		return nil, err
	}
	cleanups = append(cleanups, e.dc.Close)
	if e.kube, err = testenv.NewKube(ctx, filepath.Join("config", "crd", "bases")); err != nil {
		return nil, err
	}
	cfg, err := e.kube.Start()
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() { _ = e.kube.Stop() })
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := dkmv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if e.client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return nil, err
	}
	skip := true
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:     scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Cache:      controllers.CacheOptions(nil),
		Controller: config.Controller{SkipNameValidation: &skip},
	})
	if err != nil {
		return nil, err
	}
	pool := directory.NewPool(directory.WithObserver(e.ops.observe), directory.WithPrincipalTTL(2*resync))
	cleanups = append(cleanups, pool.Close)
	e.watcher = directory.NewWatcher(pool, directory.WithWatchBackoff(backoffMin, backoffMax))
	cleanups = append(cleanups, e.watcher.Close)
	if _, err := controllers.Setup(mgr, controllers.Options{
		Directories: controllers.PoolFactory(pool),
		Metrics:     controllers.NewMetrics(nil),
		Watcher:     e.watcher,
		Resync:      resync,
		Retry:       time.Second,
	}); err != nil {
		return nil, err
	}
	mgrCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mgrCtx) }()
	cleanups = append(cleanups, func() { cancel(); <-done })
	return e, nil
}

// fixture is one namespace with the bind (Administrator), CA and KEK Secrets and a fresh
// service account.
type fixture struct {
	e       *env
	ns      string
	service testenv.Principal
}

func (e *env) newFixture(ctx context.Context) (*fixture, error) {
	n := e.seq.Add(1)
	f := &fixture{e: e, ns: fmt.Sprintf("w%d-%d", n, time.Now().UnixNano()%100000)}
	if err := e.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}}); err != nil {
		return nil, err
	}
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	for name, data := range map[string]map[string][]byte{
		"bind": {controllers.BindUsernameKey: []byte(e.dc.AdminUser), controllers.BindPasswordKey: []byte(e.dc.AdminPassword)},
		"ca":   {"ca.crt": e.dc.CAPEM},
		"kek":  {"kek": kek},
	} {
		if err := e.client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns}, Data: data}); err != nil {
			return nil, err
		}
	}
	var err error
	f.service, err = e.dc.CreateUser("svc-"+f.ns, "Svc!Passw0rd-"+f.ns)
	return f, err
}

// dkm is a DKMContainer in Create mode, Wrapped, bound as Administrator over LDAPS, at a fresh
// path under CN=System.
func (f *fixture) dkm(name string) *dkmv1.DKMContainer {
	return &dkmv1.DKMContainer{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns},
		Spec: dkmv1.DKMContainerSpec{
			Directory: dkmv1.DirectorySpec{
				URLs:              []string{f.e.dc.URL},
				BindSecretRef:     dkmv1.SecretReference{Name: "bind"},
				CABundleSecretRef: &dkmv1.SecretKeyReference{Name: "ca", Key: "ca.crt"},
			},
			Path:            fmt.Sprintf("CN=DKM-%s-%s,CN=System,%s", f.ns, name, f.e.dc.BaseDN),
			ServiceAccounts: []string{f.service.DownLevel(f.e.dc)},
			KeyProtection:   dkmv1.KeyProtectionSpec{Mode: dkmv1.KeyWrapped, KEKSecretRef: &dkmv1.SecretReference{Name: "kek"}},
		},
	}
}

// The tamper of the issue: Authenticated Users may read the container.
const tamperSDDL = "(A;;RPLCLORC;;;AU)"

var authenticatedUsers = secdesc.MustParseSID("S-1-5-11")

// addTamper appends the tamper ACE to dn's DACL as another tool would (Administrator, plain
// go-ldap), on conn.
func addTamper(conn *ldap.Conn, dn string) error {
	sd, err := readDACL(conn, dn)
	if err != nil {
		return err
	}
	ace, err := secdesc.ParseACE(tamperSDDL, secdesc.WellKnownAliases)
	if err != nil {
		return err
	}
	sd.DACL.ACEs = append(sd.DACL.ACEs, ace)
	raw, err := sd.MarshalBinary()
	if err != nil {
		return err
	}
	mod := ldap.NewModifyRequest(dn, []ldap.Control{sdFlagsDACL()})
	mod.Replace("nTSecurityDescriptor", []string{string(raw)})
	return conn.Modify(mod)
}

// tampered reports whether dn's DACL grants Authenticated Users anything.
func tampered(conn *ldap.Conn, dn string) (bool, error) {
	sd, err := readDACL(conn, dn)
	if err != nil {
		return false, err
	}
	for _, ace := range sd.DACL.ACEs {
		if ace.SID == authenticatedUsers {
			return true, nil
		}
	}
	return false, nil
}

func readDACL(conn *ldap.Conn, dn string) (*secdesc.SecurityDescriptor, error) {
	res, err := conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 10, false,
		"(objectClass=*)", []string{"nTSecurityDescriptor"}, []ldap.Control{sdFlagsDACL()}))
	if err != nil {
		return nil, err
	}
	if len(res.Entries) != 1 {
		return nil, fmt.Errorf("%s: %d entries", dn, len(res.Entries))
	}
	return secdesc.ParseDescriptor(res.Entries[0].GetRawAttributeValue("nTSecurityDescriptor"))
}

func sdFlagsDACL() ldap.Control {
	return &ldap.ControlMicrosoftSDFlags{Criticality: true, ControlValue: 0x4}
}
