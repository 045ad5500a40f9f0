// Command demo is `make demo`: dkm-operator's main job on an embedded default. It starts a local
// control plane (etcd, kube-apiserver, kube-controller-manager) and a local Samba AD DC, installs
// the CRDs, runs the operator binary with its generated ClusterRole, applies the Create sample
// with its Secrets, scales a StatefulSet of three replicas, shows what the operator did (the
// DKMContainer, the container's DACL, each pod's key fingerprint — never a key) and fails
// pod-0 over. Everything it starts is stopped before it exits, so it can be run again.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	d := &demo{out: os.Stdout, started: time.Now()}
	err := d.run(ctx)
	cancel()
	if err != nil && d.operatorLog != "" {
		fmt.Fprintf(os.Stderr, "\nLast lines of the operator's log:\n%s\n", tail(d.operatorLog, 30))
	}
	d.shutdown()
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		os.Exit(1)
	}
}

// demo holds what the run started, so shutdown can stop it in reverse order.
type demo struct {
	out     io.Writer
	started time.Time
	stops   []stopper
	// operatorLog is the operator's log, printed when the demo fails.
	operatorLog string
	step        int
}

type stopper struct {
	name string
	stop func() error
}

// onShutdown registers a stop function; shutdown runs them last-in first-out.
func (d *demo) onShutdown(name string, stop func() error) {
	d.stops = append(d.stops, stopper{name, stop})
}

func (d *demo) shutdown() {
	var stopped []string
	var errs []error
	for i := len(d.stops) - 1; i >= 0; i-- {
		s := d.stops[i]
		if err := s.stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping %s: %w", s.name, err))
			continue
		}
		stopped = append(stopped, s.name)
	}
	if len(stopped) > 0 {
		fmt.Fprintf(d.out, "\nStopped: %s.\n", strings.Join(stopped, ", "))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(os.Stderr, "%v\n", err)
	}
}

// section prints a numbered heading.
func (d *demo) section(format string, args ...any) {
	d.step++
	fmt.Fprintf(d.out, "\n== %d. %s\n", d.step, fmt.Sprintf(format, args...))
}

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

func (d *demo) run(ctx context.Context) error {
	d.printf("dkm-operator demo: a local control plane, a local Samba AD DC, the operator, and a failover.\n")
	env, err := d.startDirectory(ctx)
	if err != nil {
		return err
	}
	if err := d.startControlPlane(ctx, env); err != nil {
		return err
	}
	if err := d.startOperator(ctx, env); err != nil {
		return err
	}
	if err := d.applySample(ctx, env); err != nil {
		return err
	}
	if err := d.showContainer(ctx, env); err != nil {
		return err
	}
	if err := d.startReplicas(ctx, env); err != nil {
		return err
	}
	if err := d.failover(ctx, env); err != nil {
		return err
	}
	if err := d.drill(ctx, env); err != nil {
		return err
	}
	d.printf("\n$ kubectl get dkm -n %s -o wide\n", namespace)
	if err := d.printTable(ctx, env, "/apis/dkm.io/v1alpha1/namespaces/"+namespace+"/dkmcontainers"); err != nil {
		return err
	}
	if err := d.showMetrics(ctx, env); err != nil {
		return err
	}
	d.printf("\nDemo finished in %s.\n", time.Since(d.started).Round(100*time.Millisecond))
	return nil
}
