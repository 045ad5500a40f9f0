// Command operator is the dkm-operator's controllers as main.go wires them (controllers.Setup
// around a directory Pool, no webhook, no leader election), with one addition for the
// fault-schedule suite: the reconciler's clock runs ahead by the duration written in
// --clock-offset-file. rotation.period is at least an hour, so a schedule makes a rotation due
// by moving this clock, not by waiting. It runs as a process so that a crash is a SIGKILL.
package main

import (
	"flag"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/controllers"
	"github.com/dkm-operator/dkm-operator/internal/directory"
)

func main() {
	var resync, retry time.Duration
	var clockFile string
	flag.DurationVar(&resync, "resync-period", controllers.DefaultResync, "as the operator's flag")
	flag.DurationVar(&retry, "retry-period", controllers.DefaultRetry, "as the operator's flag")
	flag.StringVar(&clockFile, "clock-offset-file", "", "a file holding how far the reconciler's clock runs ahead (e.g. 1h); missing: 0")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	if err := run(resync, retry, clockFile); err != nil {
		ctrl.Log.Error(err, "operator stopped")
		os.Exit(1)
	}
}

func run(resync, retry time.Duration, clockFile string) error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := dkmv1.AddToScheme(scheme); err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   controllers.CacheOptions(nil),
	})
	if err != nil {
		return err
	}
	pool := directory.NewPool(directory.WithPrincipalTTL(2 * resync))
	defer pool.Close()
	if _, err := controllers.Setup(mgr, controllers.Options{
		Directories: controllers.PoolFactory(pool),
		Metrics:     controllers.NewMetrics(nil),
		Resync:      resync,
		Retry:       retry,
		Now:         clock(clockFile),
	}); err != nil {
		return err
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}

// clock returns time.Now plus the offset the file holds, read every 50ms.
func clock(path string) func() time.Time {
	if path == "" {
		return time.Now
	}
	var offset atomic.Int64
	read := func() {
		b, err := os.ReadFile(path)
		if err != nil {
			offset.Store(0)
			return
		}
		if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil {
			offset.Store(int64(d))
		}
	}
	read()
	go func() {
		for range time.Tick(50 * time.Millisecond) {
			read()
		}
	}()
	return func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
}
