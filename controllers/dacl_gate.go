package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/keys"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// The safe-DACL gate (docs/design.md, rule 6): a key is created, rotated or re-wrapped only while the
// container's DACL is safe (secdesc.CheckDACLSafety: protected, and no one outside the template
// principals, the service accounts and the bind identity can read a key), whatever
// spec.accessPolicy says. Under Enforce the access phase writes the template first, so the gate
// only ever closes under Audit or when that repair failed. A closed gate blocks writes, not
// reads: an existing key is still opened, recorded and served to replicas.

// keyReaders are the principals allowed to read this container's keys.
func (s *scope) keyReaders() secdesc.KeyReaders {
	accounts := append([]secdesc.SID{}, s.accounts...)
	if !s.operatorSID.IsZero() {
		accounts = append(accounts, s.operatorSID)
	}
	return secdesc.KeyReaders{Domain: s.domain.SID, ForestRoot: s.domain.ForestRootSID, Accounts: accounts}
}

// daclSafety judges the container's DACL as this reconcile last saw it: as observed, or as the
// access phase repaired it.
func (s *scope) daclSafety() secdesc.Safety {
	return secdesc.CheckDACLSafety(s.obs.Container.SD, s.keyReaders(), s.aliases)
}

// unsafeDACL explains an unsafe verdict, offending ACEs first (event notes are cut at 1 KiB).
func unsafeDACL(s *scope, safety secdesc.Safety) string {
	if s.obs.Container.SD == nil {
		return fmt.Sprintf("the operator's bind identity cannot read the DACL of %s (it needs Read permissions there), "+
			"so it cannot tell who else can read the keys", s.obs.Container.DN)
	}
	return fmt.Sprintf("the DACL of %s is unsafe: %s", s.obs.Container.DN, safety)
}

// reportDrift records a DACL drift that is not repaired (why: "Audit"). The template diff is
// information (status.lastDrift, the message, a DriftDetected event); what decides the condition
// is safety: AccessControlled is True (SafeDACL) when no one but the allowed readers can read a
// key, and False (UnsafeDACL), naming the offending ACEs, when someone else can or the DACL is not
// protected.
func (r *DKMContainerReconciler) reportDrift(s *scope, diff secdesc.Diff, why string) error {
	const cond = dkmv1.ConditionAccessControlled
	safety := s.daclSafety()
	if safety.Safe() {
		msg := fmt.Sprintf("the DACL of %s is safe: only the template principals, the service accounts and the operator "+
			"can read a key; it differs from the DKM template (%s: not changed): %s", s.obs.Container.DN, why, diff)
		markTrue(s.obj, cond, dkmv1.ReasonSafeDACL, msg)
		r.normal(s.obj, dkmv1.ReasonDriftDetected, "AuditDACL", msg)
		return nil
	}
	msg := fmt.Sprintf("%s; no key is created, rotated or re-wrapped until it is safe (%s: not repaired); "+
		"drift from the DKM template: %s", unsafeDACL(s, safety), why, diff)
	markFalse(s.obj, cond, dkmv1.ReasonUnsafeDACL, msg)
	r.warn(s.obj, dkmv1.ReasonDriftDetected, "AuditDACL", msg)
	return nil
}

// repairFailed reports a DACL repair AD refused (err). A transient failure is retried with
// backoff, as is a terminal one (rights, constraints) on a DACL that is safe anyway: Enforce
// promised the template. A terminal failure on an unsafe DACL leaves AccessControlled False and
// lets the key phase run, so that the gate says on KeyReady why keys are not written (UnsafeDACL)
// while the existing key is still served.
func (r *DKMContainerReconciler) repairFailed(ctx context.Context, s *scope, err error) error {
	const cond = dkmv1.ConditionAccessControlled
	dn := s.obs.Container.DN
	var failed error
	if directory.KindOf(err) == directory.KindInsufficientAccess {
		failed = r.rightsFailure(ctx, s, cond, dn, "repair the DACL of "+dn, true, err)
	} else {
		failed = r.failPhase(s, cond, "RepairDACL", err)
	}
	var terminal *stopError
	if errors.As(failed, &terminal) && !s.daclSafety().Safe() {
		return nil
	}
	return failed
}

// gateKeyWrites is the gate itself; reconcileKey calls it before anything that writes a key
// (first key, CryptoPolicy, rotation, re-wrap). Under a safe DACL it returns false and the key
// phase goes on. Under an unsafe one it returns true with the phase's result: nothing is written;
// without a key KeyReady is False (UnsafeDACL) and nothing is created; with one, the ring is
// opened (a read), published to the projector and recorded in status, and KeyReady is False
// (UnsafeDACL) naming what waits. The gate reopens by itself once the DACL is safe.
func (r *DKMContainerReconciler) gateKeyWrites(ctx context.Context, s *scope, p keys.Protector) (bool, error) {
	if !s.writer() {
		// A reader writes no key, so there is nothing to hold back; and it cannot tell the
		// owner's bind identity, which the owner's template grants, from an intruder.
		return false, nil
	}
	safety := s.daclSafety()
	if safety.Safe() {
		return false, nil
	}
	const cond = dkmv1.ConditionKeyReady
	why := unsafeDACL(s, safety)
	var manager *directory.Manager
	if len(s.obs.Managers) == 1 {
		manager = &s.obs.Managers[0]
	}
	if manager == nil || len(manager.Keys) == 0 || manager.Policy == nil || manager.Policy.ActiveKeyID == "" {
		// Nothing a replica was ever handed: a first key, or keys no CryptoPolicy points at yet
		// (pointing it is a write).
		msg := fmt.Sprintf("%s; no key is created in %s until it is safe: remove the offending ACEs (or set "+
			"accessPolicy Enforce to write the template) and the operator continues by itself", why, s.obs.Container.DN)
		markFalse(s.obj, cond, dkmv1.ReasonUnsafeDACL, msg)
		r.warn(s.obj, dkmv1.ReasonUnsafeDACL, "CreateKey", msg)
		return true, stop(dkmv1.ReasonUnsafeDACL)
	}
	container, err := keys.ObjectGUIDFromBytes(s.obs.Container.GUID.Bytes())
	if err != nil {
		return true, fmt.Errorf("container %s: %w", s.obs.Container.DN, err)
	}
	// With a CryptoPolicy in place loadRing only reads.
	ring, err := r.loadRing(ctx, s, manager, container, p)
	if err != nil {
		return true, err
	}
	r.Keys.Set(s.obj, ring)
	r.Metrics.KeyAge(s.obj, s.now.Sub(ring.Active().Created))
	recordKeys(s.obj, r.owner(s.obj), manager, ring)

	var waiting []string
	if keys.RotationDue(ring.Active().Created, rotationPeriod(s.obj), s.now) {
		waiting = append(waiting, "a rotation that is due")
	}
	if ring.NeedsRewrap() {
		waiting = append(waiting, "re-wrapping under the active KEK")
	}
	blocked := "key creation, rotation and re-wrap wait"
	if len(waiting) > 0 {
		blocked = strings.Join(waiting, " and ") + " wait"
	}
	active := ring.Active()
	msg := fmt.Sprintf("%s; %s until it is safe. The existing key %s (%s, %d version(s) in %s) is still read and "+
		"served to replicas: reading is not writing", why, blocked, active.ID, active.Fingerprint, ring.Len(), manager.DN)
	markFalse(s.obj, cond, dkmv1.ReasonUnsafeDACL, msg)
	r.warn(s.obj, dkmv1.ReasonUnsafeDACL, "WriteKey", msg)
	return true, stop(dkmv1.ReasonUnsafeDACL)
}
