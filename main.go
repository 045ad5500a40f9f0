// Command dkm-operator runs the DKMContainer controllers: it keeps Active Directory Distributed
// Key Management containers, their DACLs and keys right, and hands each replica pod its key.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/controllers"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/webhook"
)

// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete

func main() {
	var (
		metricsAddr, probeAddr, namespaces string
		leaderElect                        bool
		resync, retry                      time.Duration
		wh                                 webhookOptions
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	flag.BoolVar(&leaderElect, "leader-elect", true, "Elect a leader so that only one of several operator replicas acts.")
	flag.StringVar(&namespaces, "namespaces", "", "Comma-separated namespaces to watch (namespaced mode); empty watches all.")
	flag.DurationVar(&resync, "resync-period", controllers.DefaultResync, "How often a healthy DKMContainer is re-read from AD to catch drift.")
	flag.DurationVar(&retry, "retry-period", controllers.DefaultRetry, "How soon a condition a person must fix (rights, Secrets) is checked again.")
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

	if err := run(metricsAddr, probeAddr, namespaces, leaderElect, resync, retry, wh); err != nil {
		log.Error(err, "operator stopped")
		os.Exit(1)
	}
}

func run(metricsAddr, probeAddr, namespaces string, leaderElect bool, resync, retry time.Duration, wh webhookOptions) error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := dkmv1.AddToScheme(scheme); err != nil {
		return err
	}

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
		LeaderElection:         leaderElect,
		LeaderElectionID:       "dkm-operator.dkm.io",
		Cache:                  controllers.CacheOptions(watchNamespaces(namespaces)),
		WebhookServer:          crwebhook.NewServer(crwebhook.Options{Host: wh.host, Port: wh.port, CertDir: wh.certDir}),
	})
	if err != nil {
		return err
	}

	m := controllers.NewMetrics(metrics.Registry)
	// Principals are cached beyond one resync period, so a steady-state resync is a single LDAP
	// search; an account's SID never changes, so the cost is only a slower notice of renames.
	pool := directory.NewPool(directory.WithObserver(m.ObserveLDAP), directory.WithPrincipalTTL(2*resync))
	defer pool.Close()
	keyStore := controllers.NewKeyStore()

	if err := (&controllers.DKMContainerReconciler{
		Client:      mgr.GetClient(),
		APIReader:   mgr.GetAPIReader(),
		Recorder:    mgr.GetEventRecorder("dkm-operator"),
		Directories: controllers.PoolFactory(pool),
		Keys:        keyStore,
		Metrics:     m,
		Resync:      resync,
		Retry:       retry,
	}).SetupWithManager(mgr); err != nil {
		return err
	}

	if err := (&controllers.ReplicaProjector{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("dkm-operator"),
		Keys:      keyStore,
	}).SetupWithManager(mgr); err != nil {
		return err
	}

	if err := setupWebhook(mgr, wh); err != nil {
		return err
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
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

// setupWebhook registers the pod injection webhook. In self mode, open-policy-agent's
// cert-controller issues the serving certificate into a Secret of the operator's namespace,
// rotates it and injects the CA bundle, and the webhook starts once the certificate is in place.
func setupWebhook(mgr ctrl.Manager, wh webhookOptions) error {
	if !wh.enabled {
		return nil
	}
	switch wh.certManagement {
	case "external":
		return webhook.SetupWithManager(mgr)
	case "self":
	default:
		return fmt.Errorf("--webhook-cert-management must be self or external, not %q", wh.certManagement)
	}
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		return errors.New("--webhook-cert-management=self needs POD_NAMESPACE (set it from the downward API)")
	}
	ready := make(chan struct{})
	if err := rotator.AddRotator(mgr, &rotator.CertRotator{
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
		return fmt.Errorf("setting up webhook certificate rotation: %w", err)
	}
	go func() {
		<-ready
		if err := webhook.SetupWithManager(mgr); err != nil {
			ctrl.Log.Error(err, "registering the pod injection webhook")
			os.Exit(1)
		}
	}()
	return nil
}
