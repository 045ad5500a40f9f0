// Command dkm-operator runs the DKMContainer controllers: it keeps Active Directory Distributed
// Key Management containers, their DACLs and keys right, and hands each replica pod its key.
package main

import (
	"flag"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
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
		Cache:                  controllers.CacheOptions(watchNamespaces(namespaces)),
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

	if err := (&controllers.ReplicaProjector{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("dkm-operator"),
		Keys:      keyStore,
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
