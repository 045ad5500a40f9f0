// Command dkm-operator runs the DKMContainer controllers: it keeps Active Directory Distributed
// Key Management containers, their DACLs and keys right, and hands each replica pod its key.
package main

import (
	"flag"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/controllers"
	"github.com/dkm-operator/dkm-operator/internal/directory"
)

// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete

func main() {
	var (
		metricsAddr, probeAddr, namespaces string
		leaderElect                        bool
		resync, retry                      time.Duration
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	flag.BoolVar(&leaderElect, "leader-elect", true, "Elect a leader so that only one of several operator replicas acts.")
	flag.StringVar(&namespaces, "namespaces", "", "Comma-separated namespaces to watch (namespaced mode); empty watches all.")
	flag.DurationVar(&resync, "resync-period", controllers.DefaultResync, "How often a healthy DKMContainer is re-read from AD to catch drift.")
	flag.DurationVar(&retry, "retry-period", controllers.DefaultRetry, "How soon a condition a person must fix (rights, Secrets) is checked again.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	if err := run(metricsAddr, probeAddr, namespaces, leaderElect, resync, retry); err != nil {
		log.Error(err, "operator stopped")
		os.Exit(1)
	}
}

func run(metricsAddr, probeAddr, namespaces string, leaderElect bool, resync, retry time.Duration) error {
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
		Cache:                  cacheOptions(namespaces),
	})
	if err != nil {
		return err
	}

	m := controllers.NewMetrics(metrics.Registry)
	pool := directory.NewPool(directory.WithObserver(m.ObserveLDAP))
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

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}

// cacheOptions keeps the cache narrow: Secrets only when labelled as projected key Secrets
// (never every Secret in the cluster), and only the watched namespaces in namespaced mode.
func cacheOptions(namespaces string) cache.Options {
	projected, _ := labels.NewRequirement(controllers.LabelContainer, selection.Exists, nil)
	opts := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.NewSelector().Add(*projected)},
		},
	}
	if namespaces != "" {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range strings.Split(namespaces, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				opts.DefaultNamespaces[ns] = cache.Config{}
			}
		}
	}
	return opts
}
