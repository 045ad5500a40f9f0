package controllers

import (
	"context"
	"fmt"
	"strings"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
)

// One writer per container. The ownership record in AD (directory.OwnerAttribute on every
// object the operator makes) names the DKMContainer that may change the container; any other
// DKMContainer on the same path, in this cluster or another, is a reader: it loads the key and
// projects it to its replicas, and never writes AD. The decision is made from AD on every
// reconcile, never from status, so it survives restarts, lost status and second clusters.

// owner is this DKMContainer's ownership record.
func (r *DKMContainerReconciler) owner(obj *dkmv1.DKMContainer) directory.Owner {
	return directory.Owner{Cluster: r.ClusterID, Namespace: obj.Namespace, Name: obj.Name, UID: string(obj.UID)}
}

// decideRole reads the container's record and sets s.role, writing the record first when
// roleDecision says so (a claim, or a move to this DKMContainer).
func (r *DKMContainerReconciler) decideRole(ctx context.Context, s *scope) error {
	d := r.roleDecision(s)
	switch {
	case d.refuse != "":
		return r.refuseContainer(s, d.refuse, d.msg)
	case d.change != nil:
		return r.writeOwner(ctx, s, *d.change)
	case d.msg != "":
		r.warn(s.obj, "OwnershipNotTaken", "TakeOwnership", d.msg)
	}
	s.setRole(d.role, d.owner)
	return nil
}

// roleDecision is what the container's ownership record makes of this DKMContainer, before any
// write. A container without a record is claimed only when that is explicit (provisioning
// Adopt, or the claim annotation naming its objectGUID) and only when it is shaped like a DKM
// container: class container, holding nothing but DC Manager objects. That refuses a typo'd
// path such as CN=System before any write.
type roleDecision struct {
	role  dkmv1.Role
	owner directory.Owner
	// change is the record to write first; the role is then Writer.
	change *ownerChange
	// refuse is the ContainerReady reason when nothing may be done, msg says why (or, with a
	// role, why a take-ownership annotation was ignored).
	refuse, msg string
}

// ownerChange writes the container's ownership record: a claim (from "") or a move from the
// recorded owner (compare-and-swap on the record read).
type ownerChange struct {
	from string
	to   directory.Owner
	// reason is the event reason of a move and why its explanation; empty for a claim.
	reason, why string
}

func (r *DKMContainerReconciler) roleDecision(s *scope) roleDecision {
	c := s.obs.Container
	me := r.owner(s.obj)
	switch {
	case c.OwnedBy(me):
		return roleDecision{role: dkmv1.RoleWriter, owner: me}
	case c.Owner != nil && sameResource(*c.Owner, me):
		// This cluster, this namespace and name, another UID: the recorded resource was deleted
		// and re-applied (names are unique in a namespace, so the old one is gone). It keeps
		// ownership, moved by compare-and-swap.
		return roleDecision{change: r.moveTo(s, "OwnershipRenewed", "re-applied DKMContainer")}
	case c.Owner != nil:
		want := strings.TrimSpace(s.obj.Annotations[dkmv1.AnnotationTakeOwnership])
		switch {
		case want == "":
			return roleDecision{role: dkmv1.RoleReader, owner: *c.Owner}
		case strings.EqualFold(want, c.Owner.UID):
			// The annotation names the current owner: for when that owner, or its cluster, is gone.
			return roleDecision{change: r.moveTo(s, "OwnershipTaken", "annotation "+dkmv1.AnnotationTakeOwnership)}
		}
		return roleDecision{role: dkmv1.RoleReader, owner: *c.Owner, msg: fmt.Sprintf(
			"%s=%s does not name the current owner of %s, which is %s: nothing was changed",
			dkmv1.AnnotationTakeOwnership, want, c.DN, c.Owner.Short())}
	case c.OwnerRecord != "":
		// adminDescription holds something that is not our record: a person's note, or a
		// damaged record. Neither is ours to overwrite.
		return roleDecision{refuse: dkmv1.ReasonContainerNotOwned, msg: fmt.Sprintf(
			"container %s carries %s %q, which is not a dkm-operator ownership record: the operator will not change it",
			c.DN, directory.OwnerAttribute, c.OwnerRecord)}
	}
	if class := c.Class(); !strings.EqualFold(class, "container") {
		return roleDecision{refuse: dkmv1.ReasonNotDKMContainer, msg: fmt.Sprintf("%s is a %s, not a container: check spec.path", c.DN, class)}
	}
	if n := len(s.obs.Foreign); n > 0 {
		return roleDecision{refuse: dkmv1.ReasonNotDKMContainer, msg: fmt.Sprintf(
			"%s holds %d object(s) that are not DKM objects (first: %s): a DKM container holds only DC Manager objects; "+
				"check spec.path", c.DN, n, s.obs.Foreign[0])}
	}
	if r.mayClaim(s) {
		return roleDecision{change: &ownerChange{to: r.claimRecord(s)}}
	}
	if len(s.obs.Managers) > 0 {
		// Made by VMM, AD FS or a person: read its key, change nothing.
		return roleDecision{role: dkmv1.RoleReader}
	}
	return roleDecision{refuse: dkmv1.ReasonContainerNotOwned, msg: fmt.Sprintf(
		"container %s already exists and was not created by dkm-operator (it has no ownership record): "+
			"to let this DKMContainer manage it, set spec.provisioning: Adopt, or annotate it %s=%s",
		c.DN, dkmv1.AnnotationClaim, c.GUID)}
}

// mayClaim: Adopt is the administrator's statement that the container at spec.path is for this
// DKMContainer; with Create, the claim annotation must name the container's objectGUID. A
// container this resource's status records as created by the operator (before ownership
// records existed) is claimed back as created.
func (r *DKMContainerReconciler) mayClaim(s *scope) bool {
	guid := s.obs.Container.GUID.String()
	if s.obj.Spec.Provisioning == dkmv1.ProvisioningAdopt || strings.EqualFold(strings.TrimSpace(s.obj.Annotations[dkmv1.AnnotationClaim]), guid) {
		return true
	}
	ref := s.original.Status.Container
	return ref != nil && ref.CreatedByOperator && strings.EqualFold(ref.GUID, guid)
}

// claimRecord is the record a claim writes: a claim, or this owner's own record for a container
// status records as created by the operator.
func (r *DKMContainerReconciler) claimRecord(s *scope) directory.Owner {
	me := r.owner(s.obj)
	if ref := s.original.Status.Container; ref != nil && ref.CreatedByOperator && strings.EqualFold(ref.GUID, s.obs.Container.GUID.String()) {
		return me
	}
	return me.AsClaim()
}

// moveTo moves the record from the current owner to this DKMContainer. Only the container's
// record moves: the objects the previous owner created keep theirs, so Delete leaves them (they
// may hold keys the data still needs).
func (r *DKMContainerReconciler) moveTo(s *scope, reason, why string) *ownerChange {
	c := s.obs.Container
	next := r.owner(s.obj)
	next.Claimed = c.Owner.Claimed // an adopted container stays adopted: Delete never removes it
	return &ownerChange{from: c.OwnerRecord, to: next, reason: reason, why: why}
}

// writeOwner writes the record (compare-and-swap: another writer's claim in between makes it
// fail, and the next reconcile reads who won) and makes this DKMContainer the writer.
func (r *DKMContainerReconciler) writeOwner(ctx context.Context, s *scope, ch ownerChange) error {
	c := s.obs.Container
	if err := s.dir.SetOwner(ctx, c.DN, ch.from, ch.to); err != nil {
		if ch.reason != "" {
			return r.failPhase(s, dkmv1.ConditionContainerReady, ch.reason, err)
		}
		if directory.KindOf(err) == directory.KindInsufficientAccess {
			return r.rightsFailure(ctx, s, dkmv1.ConditionContainerReady, c.DN, "record ownership of "+c.DN, false, err)
		}
		return r.failPhase(s, dkmv1.ConditionContainerReady, "ClaimContainer", err)
	}
	previous := c.Owner
	s.obs.Container.Owner, s.obs.Container.OwnerRecord = &ch.to, ch.to.String()
	s.setRole(dkmv1.RoleWriter, ch.to)
	if ch.reason == "" {
		r.normal(s.obj, "ContainerClaimed", "ClaimContainer", fmt.Sprintf("recorded this DKMContainer as the owner of %s (%s)", c.DN, c.GUID))
		return nil
	}
	r.warn(s.obj, ch.reason, "TakeOwnership", fmt.Sprintf("took ownership of %s from %s (%s)", c.DN, previous.Short(), ch.why))
	return nil
}

// sameResource: the same cluster, namespace and name (the UID may differ).
func sameResource(a, b directory.Owner) bool {
	return a.Cluster == b.Cluster && a.Namespace == b.Namespace && a.Name == b.Name
}

func (r *DKMContainerReconciler) refuseContainer(s *scope, reason, msg string) error {
	s.setRole("", directory.Owner{})
	markFalse(s.obj, dkmv1.ConditionContainerReady, reason, msg)
	r.warn(s.obj, reason, "CheckOwnership", msg)
	return stop(reason)
}

// setRole records the role in the scope and in status.
func (s *scope) setRole(role dkmv1.Role, owner directory.Owner) {
	s.role = role
	s.obj.Status.Role = role
	switch {
	case role == "":
		s.obj.Status.Owner = ""
	case owner.IsZero():
		s.obj.Status.Owner = "none (no ownership record: made outside dkm-operator)"
	default:
		s.obj.Status.Owner = owner.Short()
	}
}

// writer reports whether this reconcile may write AD.
func (s *scope) writer() bool { return s.role == dkmv1.RoleWriter }

// repairsDACL: only the writer, and only under Enforce, writes the container's DACL.
func (s *scope) repairsDACL() bool {
	return s.writer() && s.obj.Spec.AccessPolicy != dkmv1.AccessAudit && !s.changesHeld
}

// whyNoRepair names the reason a drift is reported but not repaired.
func (s *scope) whyNoRepair() string {
	switch {
	case !s.writer():
		return "reader"
	case s.obj.Spec.AccessPolicy == dkmv1.AccessAudit:
		return "Audit"
	}
	return heldMessage(s, "the repair")
}
