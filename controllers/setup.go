package controllers

import (
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
)

// Options configure the operator's controllers.
type Options struct {
	Directories DirectoryFactory
	Metrics     *Metrics
	// Resync and Retry default to DefaultResync and DefaultRetry.
	Resync, Retry time.Duration
	// LockoutRetry defaults to DefaultLockoutRetry: how long after AD reported the bind account
	// locked out it is tried once more by itself.
	LockoutRetry time.Duration
	// Namespaces are the namespaces the manager's cache watches (CacheOptions); nil: all.
	Namespaces []string
}

// Setup registers the reconciler and the replica projector with mgr around one KeyStore, which
// it returns: the projector serves pods from the keys the reconciler last read from AD. main.go
// and the envtest suites wire the operator through here, so the tests run what main runs.
func Setup(mgr ctrl.Manager, opts Options) (*KeyStore, error) {
	store := NewKeyStore()
	recorder := mgr.GetEventRecorder("dkm-operator")
	if err := (&DKMContainerReconciler{
		Client:      mgr.GetClient(),
		APIReader:   mgr.GetAPIReader(),
		Recorder:    recorder,
		Directories: opts.Directories,
		Keys:        store,
		Metrics:     opts.Metrics,
		Resync:      opts.Resync,
		Retry:       opts.Retry,

		LockoutRetry: opts.LockoutRetry,
		Namespaces:   opts.Namespaces,
	}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := (&ReplicaProjector{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  recorder,
		Keys:      store,
	}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	return store, nil
}
