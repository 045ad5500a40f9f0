package testenv

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// TestControllerManager starts kube-controller-manager against a bare envtest API server: start-up
// returning at all means its garbage collector deleted an orphaned ConfigMap. Stop must leave no
// process behind.
func TestControllerManager(t *testing.T) {
	ctx := context.Background()
	env, err := NewKube(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Start(); err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })

	start := time.Now()
	cm, err := StartControllerManager(ctx, env)
	if err != nil {
		t.Fatalf("starting kube-controller-manager: %v", err)
	}
	t.Logf("kube-controller-manager collecting garbage %s after start", time.Since(start).Round(time.Millisecond))
	pid := cm.cmd.Process.Pid

	if err := cm.Stop(); err != nil {
		t.Fatalf("stopping kube-controller-manager: %v", err)
	}
	if !cm.Exited() {
		t.Fatal("Stop returned while kube-controller-manager still runs")
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("process %d still exists after Stop", pid)
	}
	if err := cm.Stop(); err != nil {
		t.Fatalf("a second Stop: %v", err)
	}
}
