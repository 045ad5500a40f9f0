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
	binary := buildOperator(t)
	k := startKubeWithNamespacedInstall(t)
	ctx := t.Context()
	d := &appsv1.Deployment{}
	if err := k.c.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: "dkm-operator-controller-manager"}, d); err != nil {
		t.Fatal(err)
	}
	op := startOperator(t, k, binary, d, "--leader-elect=true")

	lease := &coordinationv1.Lease{}
	key := client.ObjectKey{Namespace: operatorNS, Name: leaderElectionID}
	poll(t, "the operator takes the Lease", 60*time.Second, func() (bool, error) {
		err := k.c.Get(ctx, key, lease)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "", err
	})
	t.Logf("leader: %s", *lease.Spec.HolderIdentity)

	start := time.Now()
	op.stop(t)
	t.Logf("the operator exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	if err := k.c.Get(ctx, key, lease); err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
		t.Errorf("the Lease is still held by %s after the operator stopped: the next leader waits out %ds",
			*h, ptrValue(lease.Spec.LeaseDurationSeconds))
	}
}

func ptrValue(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}
