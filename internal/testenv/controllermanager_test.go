package testenv

import (
	"context"
	"os"
	"regexp"
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
	pid := cm.process.cmd.Process.Pid
	// The probe ConfigMap's deletion is in the collector's log: Collected reads it right.
	if !collectedProbe(cm) {
		t.Error("the garbage collector's deletion of the probe ConfigMap is not in its log")
	}

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

// collectedProbe finds the probe's dependent, whose name ends in a random suffix.
func collectedProbe(cm *ControllerManager) bool {
	data, err := os.ReadFile(cm.LogFile)
	if err != nil {
		return false
	}
	m := regexp.MustCompile(`name: (kcm-probe-[a-z0-9]+-dependent-[a-z0-9]+),`).FindStringSubmatch(string(data))
	return m != nil && cm.Collected("", "v1", "ConfigMap", "default", m[1])
}
