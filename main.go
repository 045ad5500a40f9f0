// Command dkm-operator runs the DKMContainer controllers: it keeps Active Directory Distributed
// Key Management containers, their DACLs and keys right, and hands each replica pod its key.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/controllers"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/webhook"
)

// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete

// LeaderElectionID names the Lease the operator's replicas elect a leader with.
const LeaderElectionID = "dkm-operator.dkm.io"

// gracefulShutdown is how long stopping runnables may take before the lease is released.
const gracefulShutdown = 5 * time.Second

func main() {
	var (
		probeAddr, namespaces string
		leaderElect           bool
		changeNotification    bool
		resync, retry         time.Duration
		clusterID             string
		workers               int
		mo                    metricsOptions
		wh                    webhookOptions
	)
	flag.StringVar(&mo.bindAddress, "metrics-bind-address", ":8443", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	flag.BoolVar(&mo.secure, "metrics-secure", true,
		"Serve metrics over HTTPS to authenticated, authorized clients only (TokenReview and SubjectAccessReview); false serves plain HTTP to anyone.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	flag.BoolVar(&leaderElect, "leader-elect", true, "Elect a leader so that only one of several operator replicas acts.")
	flag.StringVar(&namespaces, "namespaces", "", "Comma-separated namespaces to watch (namespaced mode); empty watches all.")
	flag.DurationVar(&resync, "resync-period", controllers.DefaultResync, "How often a healthy DKMContainer is re-read from AD to catch drift.")
	flag.BoolVar(&changeNotification, "change-notification", true,
		"Watch the DKM containers with AD change notification, so a change in AD is reconciled at once; the resync period stays as the net.")
	flag.DurationVar(&retry, "retry-period", controllers.DefaultRetry, "How soon a condition a person must fix (rights, Secrets) is checked again.")
	flag.IntVar(&workers, "max-concurrent-reconciles", controllers.DefaultWorkers,
		"How many DKMContainers are reconciled at once, so that one whose DCs do not answer does not hold back the others.")
	flag.StringVar(&clusterID, "cluster-id", "", "This cluster's identity in the ownership records written to AD; empty reads the kube-system namespace's UID.")
	flag.BoolVar(&wh.enabled, "enable-webhook", true, "Serve the pod injection webhook (dkm.io/inject).")
	flag.StringVar(&wh.host, "webhook-host", "", "Address the webhook server binds to; empty binds every interface.")
	flag.IntVar(&wh.port, "webhook-port", 9443, "Port the webhook server listens on.")
	flag.StringVar(&wh.certDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs", "Directory holding the webhook's tls.crt and tls.key.")
	flag.StringVar(&wh.certManagement, "webhook-cert-management", "self",
		"self: the operator issues and rotates its webhook certificate and injects the CA bundle; external: cert-manager (or you) provide them.")
	flag.StringVar(&wh.secretName, "webhook-secret-name", "dkm-operator-webhook-server-cert", "Secret holding the webhook certificate (self mode).")
	flag.StringVar(&wh.serviceName, "webhook-service-name", "dkm-operator-webhook-service", "Service in front of the webhook (self mode: the certificate's DNS name).")
	flag.StringVar(&wh.configName, "webhook-config-name", "dkm-operator-mutating-webhook-configuration", "MutatingWebhookConfiguration whose CA bundle is injected (self mode).")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	if workers < 1 {
		log.Error(nil, "--max-concurrent-reconciles must be at least 1", "value", workers)
		os.Exit(1)
	}
	if err := run(mo, probeAddr, namespaces, leaderElect, changeNotification, resync, retry, clusterID, workers, wh); err != nil {
		log.Error(err, "operator stopped")
		os.Exit(1)
	}
}

func run(mo metricsOptions, probeAddr, namespaces string, leaderElect, changeNotification bool, resync, retry time.Duration, clusterID string, workers int, wh webhookOptions) error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := dkmv1.AddToScheme(scheme); err != nil {
		return err
	}

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsServerOptions(mo),
		HealthProbeBindAddress: probeAddr,
		LeaderElection:         leaderElect,
		LeaderElectionID:       LeaderElectionID,
		// Out of a cluster (a test, a developer's machine) the lease's namespace cannot be read
		// from the service account mount; the Deployment sets POD_NAMESPACE to the same one.
		LeaderElectionNamespace: os.Getenv("POD_NAMESPACE"),
		// A replica that stops (a rollout, a drain) hands the lease over at once instead of
		// making the next leader wait out the lease (15 s by default) with no key projected for
		// new pods. Safe because run returns, and the process exits, as soon as the manager
		// stopped: nothing acts after the lease is released. That needs every runnable to stop
		// within the graceful shutdown: past it, the manager releases the lease anyway (see
		// stopPromptly for cert-controller's, which would not).
		LeaderElectionReleaseOnCancel: true,
		// Bounded below the Deployment's terminationGracePeriodSeconds (10 s), so the release
		// happens before the kubelet kills the process; a reconcile blocked on a black-holed DC
		// is abandoned after it.
		GracefulShutdownTimeout: ptr.To(gracefulShutdown),
		Cache:                   controllers.CacheOptions(watchNamespaces(namespaces)),
		WebhookServer:           crwebhook.NewServer(crwebhook.Options{Host: wh.host, Port: wh.port, CertDir: wh.certDir}),
	})
	if err != nil {
		return err
	}

	m := controllers.NewMetrics(metrics.Registry)
	// Principals are cached beyond one resync period, so a steady-state resync is a single LDAP
	// search; an account's SID never changes, so the cost is only a slower notice of renames.
	// Clients (and with them the domain and principal caches) are kept as long: with change
	// notification the resync can be long, and a change after a quiet hour should cost an
	// observe (plus a dial and bind, the DC having closed the idle connection), not every
	// lookup again.
	pool := directory.NewPool(directory.WithObserver(m.ObserveLDAP), directory.WithPrincipalTTL(2*resync),
		directory.WithIdleTimeout(max(15*time.Minute, 2*resync)))
	defer pool.Close()
	var watcher *directory.Watcher
	if changeNotification {
		watcher = directory.NewWatcher(pool, directory.WithWatchObserver(m.ObserveWatch))
		defer watcher.Close()
	}
	if _, err := controllers.Setup(mgr, controllers.Options{
		Directories: controllers.PoolFactory(pool),
		Metrics:     m,
		Watcher:     watcher,
		ClusterID:   clusterID,
		Resync:      resync,
		Retry:       retry,
		Workers:     workers,
	}); err != nil {
		return err
	}

	webhookReady, err := setupWebhook(mgr, wh)
	if err != nil {
		return err
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	// Ready only once the webhook answers: with failurePolicy Fail, a replica that the Service
	// routes to before its certificate is in place would refuse pods in labelled namespaces.
	if err := mgr.AddReadyzCheck("webhook", webhookReady); err != nil {
		return err
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}

// watchNamespaces parses --namespaces.
func watchNamespaces(flag string) []string {
	var out []string
	for _, ns := range strings.Split(flag, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			out = append(out, ns)
		}
	}
	return out
}

type metricsOptions struct {
	bindAddress string
	secure      bool
}

// With --metrics-secure, the metrics endpoint asks the API server who a scraper is (TokenReview
// of its bearer token) and whether it may get /metrics (SubjectAccessReview).
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// metricsServerOptions serves metrics either over HTTPS (a self-signed certificate, generated at
// start) to clients whose token the API server authenticates and that may get the non-resource
// URL /metrics (the metrics-reader ClusterRole), or, with secure off, over plain HTTP to anyone.
func metricsServerOptions(mo metricsOptions) metricsserver.Options {
	opts := metricsserver.Options{BindAddress: mo.bindAddress}
	if mo.secure {
		opts.SecureServing = true
		opts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return opts
}

type webhookOptions struct {
	enabled                             bool
	host                                string
	port                                int
	certDir, certManagement             string
	secretName, serviceName, configName string
}

// Self-managed certificates (cert-controller) watch every MutatingWebhookConfiguration (list and
// watch cannot be narrowed by name) but write only the operator's own, named by the default
// --webhook-config-name under the default install (config/default, the Helm chart rewrites it).
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;update;patch,resourceNames=dkm-operator-mutating-webhook-configuration

// setupWebhook registers the pod injection webhook and returns the readiness check that passes
// once it serves. In self mode, open-policy-agent's cert-controller issues the serving
// certificate into a Secret of the operator's namespace, rotates it and injects the CA bundle,
// and the webhook starts once the certificate is in place.
func setupWebhook(mgr ctrl.Manager, wh webhookOptions) (healthz.Checker, error) {
	if !wh.enabled {
		return healthz.Ping, nil
	}
	switch wh.certManagement {
	case "external":
		if err := webhook.SetupWithManager(mgr); err != nil {
			return nil, err
		}
		return mgr.GetWebhookServer().StartedChecker(), nil
	case "self":
	default:
		return nil, fmt.Errorf("--webhook-cert-management must be self or external, not %q", wh.certManagement)
	}
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		return nil, errors.New("--webhook-cert-management=self needs POD_NAMESPACE (set it from the downward API)")
	}
	ready := make(chan struct{})
	if err := rotator.AddRotator(stopPromptly{mgr}, &rotator.CertRotator{
		SecretKey:      types.NamespacedName{Namespace: ns, Name: wh.secretName},
		CertDir:        wh.certDir,
		CAName:         "dkm-operator-ca",
		CAOrganization: "dkm-operator",
		DNSName:        fmt.Sprintf("%s.%s.svc", wh.serviceName, ns),
		IsReady:        ready,
		Webhooks:       []rotator.WebhookInfo{{Name: wh.configName, Type: rotator.Mutating}},
		// Every replica serves the webhook, so every replica needs the certificate.
		RequireLeaderElection: false,
	}); err != nil {
		return nil, fmt.Errorf("setting up webhook certificate rotation: %w", err)
	}
	// The webhook server must not be created before the certificate exists (it would fail to
	// start and stop the manager), so neither can its started check. Registering is a runnable
	// of the non-leader group, not a goroutine of its own: the manager stops that group before
	// the webhook server, so a certificate that turns ready during a shutdown can no longer add
	// the server to a manager that stopped its webhooks (controller-runtime panics then).
	var started atomic.Pointer[healthz.Checker]
	if err := mgr.Add(everyReplica(func(ctx context.Context) error {
		select {
		case <-ready:
		case <-ctx.Done():
			return nil
		}
		if err := webhook.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("registering the pod injection webhook: %w", err)
		}
		check := mgr.GetWebhookServer().StartedChecker()
		started.Store(&check)
		return nil
	})); err != nil {
		return nil, err
	}
	return func(req *http.Request) error {
		check := started.Load()
		if check == nil {
			return errors.New("the webhook certificate is not in place yet")
		}
		return (*check)(req)
	}, nil
}

// stopPromptly is the manager cert-controller's runnables are added through: each of them
// returns from Start as soon as the manager stops it, whether or not its work has. cert-controller
// (v0.16.0) retries a conflicting update of its certificate Secret in a backoff that knows no
// context (10 tries, 5 to 10 s of sleeps plus two RSA key generations a try), in its
// rotator's Start and in its controller's reconcile, whose end the controller waits for. A stop
// during that backoff outlasted the 5 s graceful shutdown, and since the manager stops this
// group before the leader-elected one, the reconcilers were cancelled only when the grace period
// ran out, just before the Lease was released. What the abandoned work does is harmless: it is
// not leader-elected (every replica runs it, RequireLeaderElection false), it only writes the
// certificate Secret and the webhook configuration's CA bundle, and the process exits as soon as
// the manager returns.
type stopPromptly struct{ ctrl.Manager }

func (m stopPromptly) Add(r manager.Runnable) error {
	switch r.(type) {
	case interface{ GetCache() cache.Cache }, crwebhook.Server, interface{ Warmup(context.Context) error }:
		// The manager groups these by their type, which a wrapper would hide. cert-controller adds
		// none of them (its cache and controller are wrapped in types of its own).
		return m.Manager.Add(r)
	}
	return m.Manager.Add(abandonOnStop{r})
}

// abandonOnStop runs a runnable and returns when it does or when ctx ends, whichever is first.
type abandonOnStop struct{ manager.Runnable }

func (r abandonOnStop) Start(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- r.Runnable.Start(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return nil
	}
}

// NeedLeaderElection keeps the wrapped runnable in its group: a runnable that does not say is
// leader-elected, as the manager has it.
func (r abandonOnStop) NeedLeaderElection() bool {
	le, ok := r.Runnable.(manager.LeaderElectionRunnable)
	return !ok || le.NeedLeaderElection()
}

// everyReplica is a runnable that runs on every replica, leader or not.
type everyReplica func(ctx context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }
func (everyReplica) NeedLeaderElection() bool          { return false }
