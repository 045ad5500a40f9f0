//go:build linux

package deploy

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// conflictMessage is what the API server answers an update of an object that changed since it
// was read.
const conflictMessage = "the object has been modified"

// TestShutdownWhileCertificateUpdatesConflict stops the operator (SIGTERM, as leader) while
// cert-controller retries a conflicting update of its certificate Secret. cert-controller
// retries in a backoff that ignores the stop (10 tries, at least 5.1 s of sleeps between them),
// in its rotator's start and in its controller's reconcile; before main.go stopped waiting for
// them, a stop then outlasted the 5 s graceful shutdown and the operator exited 1 ("failed
// waiting for all runnables to end within grace period"), its reconcilers cancelled only as
// the Lease was released. A CI run met it by chance (a reconcile racing the rotator's first
// write on a busy machine). Here, once the operator leads and its certificate is in place, the
// test empties the Secret (which makes cert-controller's controller issue a new one) and keeps
// changing its annotations, so that every update cert-controller makes from its cache
// conflicts, and stops the operator at the first conflict. The operator must exit cleanly, well
// within the grace period, and release the Lease.
func TestShutdownWhileCertificateUpdatesConflict(t *testing.T) {
	l := startLeader(t)
	k, d, op := l.k, l.d, l.op
	ctx := t.Context()
	secretKey := client.ObjectKey{Namespace: operatorNS, Name: namesFromArgs(t, d).secret}
	poll(t, "the operator fills the certificate Secret", 60*time.Second, func() (bool, error) {
		s := &corev1.Secret{}
		err := k.c.Get(ctx, secretKey, s)
		return err == nil && len(s.Data["tls.crt"]) > 0, err
	})
	// Conflicts the operator met on its own (its rotator and its controller both fill the
	// empty Secret at start, and one of them may lose).
	before := strings.Count(op.output(), conflictMessage)

	churnCtx, stopChurn := context.WithCancel(ctx)
	churned := make(chan int, 1)
	go func() {
		n := 0
		defer func() { churned <- n }()
		for churnCtx.Err() == nil {
			s := &corev1.Secret{}
			if err := k.c.Get(churnCtx, secretKey, s); err == nil {
				if n == 0 {
					s.Data = nil
				}
				if s.Annotations == nil {
					s.Annotations = map[string]string{}
				}
				s.Annotations["test.dkm.io/churn"] = strconv.Itoa(n)
				if k.c.Update(churnCtx, s) == nil {
					n++
				}
			}
			select {
			case <-churnCtx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	defer func() {
		stopChurn()
		t.Logf("the test changed the certificate Secret %d times", <-churned)
	}()
	// Polled often: the stop must come early in the backoff that follows the first conflict.
	if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		return strings.Count(op.output(), conflictMessage) > before, nil
	}); err != nil {
		t.Fatalf("cert-controller did not retry a conflicting update of the emptied certificate Secret:\n%s", op.output())
	}

	start := time.Now()
	op.stop(t)
	took := time.Since(start)
	t.Logf("the operator exited %v after SIGTERM, mid-retry", took.Round(time.Millisecond))
	if logs := op.output(); strings.Contains(logs, "grace period") {
		t.Errorf("the operator outlasted its graceful shutdown:\n%s", grepLines(logs, "grace period"))
	}
	if took >= 5*time.Second {
		t.Errorf("the operator took %v to stop, not within its 5 s graceful shutdown", took)
	}
	l.expectReleased(t)
}
