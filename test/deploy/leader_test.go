//go:build linux

package deploy

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// leaderElectionID is main.LeaderElectionID: the Lease the operator's replicas elect a leader with.
const leaderElectionID = "dkm-operator.dkm.io"

// TestLeaderLeaseReleasedOnShutdown runs the operator binary with leader election, as its
// Deployment says and with the RBAC it grants, and stops it as the kubelet would (SIGTERM): the
// Lease must be released on the way out, so another replica takes over at once instead of after
// the lease duration, with no pod served meanwhile.
func TestLeaderLeaseReleasedOnShutdown(t *testing.T) {
	l := startLeader(t)
	t.Logf("leader: %s", l.holder())

	start := time.Now()
	l.op.stop(t)
	t.Logf("the operator exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	l.expectReleased(t)
}

// leader is the operator binary, run as its namespaced install's Deployment says (with the RBAC
// it grants and leader election on), once it holds the Lease.
type leader struct {
	k     *kubeWithEgress
	d     *appsv1.Deployment
	op    *operatorProcess
	lease *coordinationv1.Lease
}

func startLeader(t *testing.T) *leader {
	t.Helper()
	binary := buildOperator(t)
	l := &leader{k: startKubeWithNamespacedInstall(t), d: &appsv1.Deployment{}, lease: &coordinationv1.Lease{}}
	if err := l.k.c.Get(t.Context(), client.ObjectKey{Namespace: operatorNS, Name: "dkm-operator-controller-manager"}, l.d); err != nil {
		t.Fatal(err)
	}
	l.op = startOperator(t, l.k, binary, l.d, "--leader-elect=true")
	poll(t, "the operator takes the Lease", 60*time.Second, func() (bool, error) {
		err := l.k.c.Get(t.Context(), leaseKey, l.lease)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil && l.holder() != "", err
	})
	return l
}

var leaseKey = client.ObjectKey{Namespace: operatorNS, Name: leaderElectionID}

// holder is the Lease's holder as last read.
func (l *leader) holder() string {
	if h := l.lease.Spec.HolderIdentity; h != nil {
		return *h
	}
	return ""
}

// expectReleased: after the operator stopped, nobody holds the Lease, so the next leader takes
// over at once instead of waiting out the lease duration.
func (l *leader) expectReleased(t *testing.T) {
	t.Helper()
	if err := l.k.c.Get(t.Context(), leaseKey, l.lease); err != nil {
		t.Fatal(err)
	}
	if h := l.holder(); h != "" {
		t.Errorf("the Lease is still held by %s after the operator stopped: the next leader waits out %ds",
			h, ptrValue(l.lease.Spec.LeaseDurationSeconds))
	}
}

func ptrValue(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}
