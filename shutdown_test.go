package main

import (
	"context"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// A runnable added through stopPromptly that ignores its stop (as cert-controller's rotator and
// controller do while they retry a conflicting Secret update, for up to 10 s) must not hold the
// manager's shutdown: the manager stops such non-leader runnables first, so before stopPromptly
// the leader-elected runnables were cancelled only when the graceful shutdown timed out, and
// the manager returned "failed waiting for all runnables to end within grace period". The
// manager needs no reachable API server for this (no informer is ever started).
func TestStopPromptlyDoesNotWaitForRunnablesThatIgnoreTheStop(t *testing.T) {
	grace := 2 * time.Second
	mgr, err := ctrl.NewManager(&rest.Config{Host: "https://127.0.0.1:1"}, ctrl.Options{
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		GracefulShutdownTimeout: &grace,
	})
	if err != nil {
		t.Fatal(err)
	}
	retrying := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	if err := (stopPromptly{mgr}).Add(everyReplica(func(context.Context) error {
		close(retrying)
		<-release // a backoff that does not look at the context
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	// A leader-elected runnable, as a reconciler is: it must be stopped at once too.
	leaderStopped := make(chan struct{})
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		close(leaderStopped)
		return nil
	})); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	result := make(chan error, 1)
	go func() { result <- mgr.Start(ctx) }()
	select {
	case <-retrying:
	case <-time.After(30 * time.Second):
		t.Fatal("the manager did not start the runnable")
	}
	stop := time.Now()
	cancel()
	select {
	case err := <-result:
		took := time.Since(stop)
		t.Logf("the manager stopped %v after its context ended (graceful shutdown %v)", took.Round(time.Millisecond), grace)
		if err != nil {
			t.Errorf("the manager stopped with %v", err)
		}
		if took >= grace {
			t.Errorf("the manager took %v to stop: it waited for the runnable that ignores its stop", took)
		}
	case <-time.After(3 * grace):
		t.Fatal("the manager did not stop")
	}
	select {
	case <-leaderStopped:
	default:
		t.Error("the manager returned before it stopped its leader-elected runnable")
	}
}

// The wrapper keeps a runnable in the manager's group it would have been in.
func TestAbandonOnStopKeepsTheGroup(t *testing.T) {
	noop := func(context.Context) error { return nil }
	if (abandonOnStop{everyReplica(noop)}).NeedLeaderElection() {
		t.Error("a runnable of every replica became leader-elected")
	}
	if !(abandonOnStop{manager.RunnableFunc(noop)}).NeedLeaderElection() {
		t.Error("a runnable that does not say became one of every replica; the manager has it leader-elected")
	}
}
