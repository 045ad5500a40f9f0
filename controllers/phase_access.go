package controllers

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// reconcileAccess compares the container's explicit ACEs with the DKM template. Enforce writes
// the template back (DACL only); Audit reports and changes nothing, and is Ready when the DACL is
// safe though not the template (reportDrift, dacl_gate.go). Both record the drift in status and
// an event naming the ACEs in SDDL. It owns AccessControlled.
func (r *DKMContainerReconciler) reconcileAccess(ctx context.Context, s *scope) error {
	const cond = dkmv1.ConditionAccessControlled
	desired, err := s.desiredDACL()
	if err != nil {
		return err
	}
	diff := secdesc.DiffDACL(s.obs.Container.SD, desired, s.aliases)
	if diff.Empty() {
		markTrue(s.obj, cond, dkmv1.ReasonReady, fmt.Sprintf("the DACL of %s is the protected DKM template", s.obs.Container.DN))
		return nil
	}
	drift := driftStatus(diff, s.now)
	r.Metrics.DriftDetected(s.obj)

	if !s.repairsDACL() {
		s.obj.Status.LastDrift = drift
		return r.reportDrift(s, diff, s.whyNoRepair())
	}

	if err := s.dir.ReplaceDACL(ctx, s.obs.Container.DN, secdesc.RepairDescriptor(desired)); err != nil {
		return r.repairFailed(ctx, s, err)
	}
	drift.Repaired = true
	s.obj.Status.LastDrift = drift
	s.obs.Container.SD = desired
	r.Metrics.DriftRepaired(s.obj)
	msg := fmt.Sprintf("repaired the DACL of %s: %s", s.obs.Container.DN, diff)
	markTrue(s.obj, cond, dkmv1.ReasonDriftRepaired, msg)
	r.warn(s.obj, dkmv1.ReasonDriftRepaired, "RepairDACL", msg)
	return nil
}

func driftStatus(diff secdesc.Diff, now time.Time) *dkmv1.DriftStatus {
	d := &dkmv1.DriftStatus{
		Time:              metav1.NewTime(now.UTC()),
		ProtectionChanged: diff.WantProtected != diff.GotProtected,
	}
	for _, e := range diff.Missing {
		d.Missing = append(d.Missing, e.SDDL)
	}
	for _, e := range diff.Unexpected {
		d.Unexpected = append(d.Unexpected, e.SDDL)
	}
	return d
}
