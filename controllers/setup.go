package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dkm-operator/dkm-operator/internal/directory"
)

// Options configure the operator's controllers.
type Options struct {
	Directories DirectoryFactory
	Metrics     *Metrics
	// Watcher, when set, reconciles a DKMContainer as soon as AD notifies a change below its
	// container; nil leaves changes to the resync.
	Watcher *directory.Watcher
	// ClusterID names this cluster in AD ownership records; see ClusterID.
	ClusterID string
	// Resync and Retry default to DefaultResync and DefaultRetry.
	Resync, Retry time.Duration
	// LockoutRetry defaults to DefaultLockoutRetry: how long after AD reported the bind account
	// locked out it is tried once more by itself.
	LockoutRetry time.Duration
	// Workers is how many DKMContainers are reconciled at once (default DefaultWorkers).
	Workers int
	// Now is the reconciler's clock (nil: time.Now). Tests move it forward to make a rotation
	// due, since rotation.period is at least an hour.
	Now func() time.Time
}

// Setup registers the reconciler and the replica projector with mgr around one KeyStore, which
// it returns: the projector serves pods from the keys the reconciler last read from AD. main.go
// and the envtest suites wire the operator through here, so the tests run what main runs.
func Setup(mgr ctrl.Manager, opts Options) (*KeyStore, error) {
	if opts.ClusterID == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		id, err := ClusterID(ctx, mgr.GetAPIReader())
		if err != nil {
			return nil, err
		}
		opts.ClusterID = id
	}
	store := NewKeyStore()
	recorder := mgr.GetEventRecorder("dkm-operator")
	if err := (&DKMContainerReconciler{
		Client:      mgr.GetClient(),
		APIReader:   mgr.GetAPIReader(),
		Recorder:    recorder,
		Directories: opts.Directories,
		Keys:        store,
		Metrics:     opts.Metrics,
		Watcher:     opts.Watcher,
		ClusterID:   opts.ClusterID,
		Resync:      opts.Resync,
		Retry:       opts.Retry,
		Now:         opts.Now,
		Workers:     opts.Workers,

		LockoutRetry: opts.LockoutRetry,
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

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get,resourceNames=kube-system

// ClusterID is the UID of the kube-system namespace: stable for a cluster's life and different
// in every cluster, so AD ownership records tell two clusters on one path apart.
func ClusterID(ctx context.Context, c client.Reader) (string, error) {
	ns := &corev1.Namespace{}
	// A fresh API server creates kube-system moments after it starts serving: wait for it.
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, types.NamespacedName{Name: "kube-system"}, ns)
		return err == nil, client.IgnoreNotFound(err)
	})
	if err != nil {
		return "", fmt.Errorf("reading the kube-system namespace's UID, this cluster's identity in AD ownership records "+
			"(grant get on it, or pass --cluster-id): %w", err)
	}
	return string(ns.UID), nil
}
