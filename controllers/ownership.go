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

// decideRole reads the container's record and sets s.role. A container without a record is
// claimed only when that is explicit (provisioning Adopt, or the claim annotation naming its
// objectGUID) and only when it is shaped like a DKM container: class container, holding nothing
// but DC Manager objects. That refuses a typo'd path such as CN=System before any write.
func (r *DKMContainerReconciler) decideRole(ctx context.Context, s *scope) error {
	const cond = dkmv1.ConditionContainerReady
	c := s.obs.Container
	me := r.owner(s.obj)
	switch {
	case c.OwnedBy(me):
		s.setRole(dkmv1.RoleWriter, me)
		return nil
	case c.Owner != nil && sameResource(*c.Owner, me):
		// This cluster, this namespace and name, another UID: the recorded resource was deleted
		// and re-applied (names are unique in a namespace, so the old one is gone). It keeps
		// ownership, moved by compare-and-swap.
		return r.moveOwnership(ctx, s, "OwnershipRenewed", "re-applied DKMContainer")
	case c.Owner != nil:
		if want := strings.TrimSpace(s.obj.Annotations[dkmv1.AnnotationTakeOwnership]); want != "" {
			return r.takeOwnership(ctx, s, want)
		}
		s.setRole(dkmv1.RoleReader, *c.Owner)
		return nil
	case c.OwnerRecord != "":
		// adminDescription holds something that is not our record: a person's note, or a
		// damaged record. Neither is ours to overwrite.
		return r.refuseContainer(s, dkmv1.ReasonContainerNotOwned, fmt.Sprintf(
			"container %s carries %s %q, which is not a dkm-operator ownership record: the operator will not change it",
			c.DN, directory.OwnerAttribute, c.OwnerRecord))
	}
	if class := c.Class(); !strings.EqualFold(class, "container") {
		return r.refuseContainer(s, dkmv1.ReasonNotDKMContainer, fmt.Sprintf(
			"%s is a %s, not a container: check spec.path", c.DN, class))
	}
	if n := len(s.obs.Foreign); n > 0 {
		return r.refuseContainer(s, dkmv1.ReasonNotDKMContainer, fmt.Sprintf(
			"%s holds %d object(s) that are not DKM objects (first: %s): a DKM container holds only DC Manager objects; "+
				"check spec.path", c.DN, n, s.obs.Foreign[0]))
	}
	if r.mayClaim(s) {
		return r.claim(ctx, s, me)
	}
	if len(s.obs.Managers) > 0 {
		// Made by VMM, AD FS or a person: read its key, change nothing.
		s.setRole(dkmv1.RoleReader, directory.Owner{})
		return nil
	}
	return r.refuseContainer(s, dkmv1.ReasonContainerNotOwned, fmt.Sprintf(
		"container %s already exists and was not created by dkm-operator (it has no ownership record): "+
			"to let this DKMContainer manage it, set spec.provisioning: Adopt, or annotate it %s=%s",
		c.DN, dkmv1.AnnotationClaim, c.GUID))
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

// claim writes this owner's record onto a container that has none (compare-and-swap: another
// writer's claim in between makes it fail, and the next reconcile reads who won).
func (r *DKMContainerReconciler) claim(ctx context.Context, s *scope, me directory.Owner) error {
	c := s.obs.Container
	record := me.AsClaim()
	if ref := s.original.Status.Container; ref != nil && ref.CreatedByOperator && strings.EqualFold(ref.GUID, c.GUID.String()) {
		record = me
	}
	if err := s.dir.SetOwner(ctx, c.DN, "", record); err != nil {
		if directory.KindOf(err) == directory.KindInsufficientAccess {
			return r.rightsFailure(ctx, s, dkmv1.ConditionContainerReady, c.DN, "record ownership of "+c.DN, false, err)
		}
		return r.failPhase(s, dkmv1.ConditionContainerReady, "ClaimContainer", err)
	}
	s.obs.Container.Owner, s.obs.Container.OwnerRecord = &record, record.String()
	s.setRole(dkmv1.RoleWriter, me)
	r.normal(s.obj, "ContainerClaimed", "ClaimContainer", fmt.Sprintf("recorded this DKMContainer as the owner of %s (%s)", c.DN, c.GUID))
	return nil
}

// takeOwnership moves the record from the current owner to this DKMContainer, when the
// annotation names the current owner's UID (for when that owner, or its cluster, is gone).
func (r *DKMContainerReconciler) takeOwnership(ctx context.Context, s *scope, want string) error {
	c := s.obs.Container
	current := *c.Owner
	if !strings.EqualFold(want, current.UID) {
		s.setRole(dkmv1.RoleReader, current)
		msg := fmt.Sprintf("%s=%s does not name the current owner of %s, which is %s: nothing was changed",
			dkmv1.AnnotationTakeOwnership, want, c.DN, current.Short())
		r.warn(s.obj, "OwnershipNotTaken", "TakeOwnership", msg)
		return nil
	}
	return r.moveOwnership(ctx, s, "OwnershipTaken", "annotation "+dkmv1.AnnotationTakeOwnership)
}

// moveOwnership replaces the container's record with this DKMContainer's (compare-and-swap on
// the record read). Only the container's record moves: the objects the previous owner created
// keep theirs, so Delete leaves them (they may hold keys the data still needs).
func (r *DKMContainerReconciler) moveOwnership(ctx context.Context, s *scope, reason, why string) error {
	c := s.obs.Container
	current := *c.Owner
	next := r.owner(s.obj)
	next.Claimed = current.Claimed // an adopted container stays adopted: Delete never removes it
	if err := s.dir.SetOwner(ctx, c.DN, c.OwnerRecord, next); err != nil {
		return r.failPhase(s, dkmv1.ConditionContainerReady, reason, err)
	}
	s.obs.Container.Owner, s.obs.Container.OwnerRecord = &next, next.String()
	s.setRole(dkmv1.RoleWriter, next)
	r.warn(s.obj, reason, "TakeOwnership", fmt.Sprintf("took ownership of %s from %s (%s)", c.DN, current.Short(), why))
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
	return s.writer() && s.obj.Spec.AccessPolicy != dkmv1.AccessAudit
}

// whyNoRepair names the reason a drift is reported but not repaired.
func (s *scope) whyNoRepair() string {
	if !s.writer() {
		return "reader"
	}
	return "Audit"
}
