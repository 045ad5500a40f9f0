package controllers

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// reconcileContainer observes the container (the reconcile's one LDAP search) and creates it
// (Create) or verifies the operator's rights on it (Adopt). It owns ContainerReady.
func (r *DKMContainerReconciler) reconcileContainer(ctx context.Context, s *scope) error {
	const cond = dkmv1.ConditionContainerReady
	path := s.obj.Spec.Path
	if err := directory.ValidateDN(path); err != nil {
		msg := fmt.Sprintf("spec.path is not a valid DN: %v", err)
		markFalse(s.obj, cond, dkmv1.ReasonInvalidPath, msg)
		r.warn(s.obj, dkmv1.ReasonInvalidPath, "Observe", msg)
		return stop(dkmv1.ReasonInvalidPath)
	}
	obs, err := s.dir.Observe(ctx, path)
	if err != nil {
		return r.failPhase(s, cond, "Observe", err)
	}
	s.obs = obs
	if err := r.gateChanges(ctx, s); err != nil {
		return r.failPhase(s, cond, "PlanChanges", err)
	}

	switch {
	case !obs.Exists && s.obj.Spec.Provisioning == dkmv1.ProvisioningAdopt:
		msg := fmt.Sprintf("container %s does not exist: with provisioning Adopt a domain admin creates it "+
			"and delegates %s on it to the operator's bind identity", path, adoptRights(s.obj.Spec.AccessPolicy))
		markFalse(s.obj, cond, dkmv1.ReasonContainerMissing, msg)
		r.warn(s.obj, dkmv1.ReasonContainerMissing, "Adopt", msg)
		return stop(dkmv1.ReasonContainerMissing)
	case !obs.Exists:
		// A container that held keys and vanished (deleted, or not yet restored from the Recycle
		// Bin) is KeyLost: creating a new one would occupy the DN a restore needs.
		if err := r.checkKeyLoss(ctx, s, cond, nil, path); err != nil {
			return err
		}
		// Another DC may hold the container already (made elsewhere, not replicated yet): a
		// second add of the same name would become a replication conflict.
		if err := r.guardWrite(ctx, s, cond, "create the container"); err != nil {
			return err
		}
		if err := r.createContainer(ctx, s); err != nil {
			return err
		}
	default:
		if err := r.decideRole(ctx, s); err != nil {
			return err
		}
		if s.writer() && s.obj.Spec.Provisioning == dkmv1.ProvisioningAdopt && needsRightsCheck(s) {
			if err := r.checkAdoptRights(ctx, s); err != nil {
				return err
			}
		}
	}

	s.obj.Status.Container = objectRef(s.obs.Container, r.owner(s.obj))
	if !s.writer() {
		markTrue(s.obj, cond, dkmv1.ReasonReady, fmt.Sprintf("container %s exists; this DKMContainer is a reader "+
			"(owner: %s): it loads and projects the key and never writes AD", path, s.obj.Status.Owner))
		return nil
	}
	markTrue(s.obj, cond, dkmv1.ReasonReady, fmt.Sprintf("container %s exists (%s)", path, provisioned(s.obj.Spec.Provisioning)))
	return nil
}

// provisioned says in words how the container came to be, for ContainerReady.
func provisioned(mode dkmv1.ProvisioningMode) string {
	if mode == dkmv1.ProvisioningAdopt {
		return "adopted"
	}
	return "created"
}

// adoptRights lists, for people, the rights an adopted container needs: exactly what
// checkAdoptRights checks. Enforce writes the template DACL, which needs Modify permissions;
// Audit never writes it.
func adoptRights(policy dkmv1.AccessPolicy) string {
	rights := directory.Rights{}.Missing(policy != dkmv1.AccessAudit)
	if len(rights) < 2 {
		return strings.Join(rights, "")
	}
	return strings.Join(rights[:len(rights)-1], ", ") + " and " + rights[len(rights)-1]
}

// createContainer adds the container with the template DACL in the add request itself.
func (r *DKMContainerReconciler) createContainer(ctx context.Context, s *scope) error {
	const cond = dkmv1.ConditionContainerReady
	desired, err := s.desiredDACL()
	if err != nil {
		return err
	}
	path := s.obj.Spec.Path
	created, err := s.dir.CreateContainer(ctx, path, desired, r.owner(s.obj))
	switch {
	case err == nil:
	case directory.KindOf(err) == directory.KindAlreadyExists:
		// Another writer (another cluster, or a person) created it since we looked: read who.
		if s.obs, err = s.dir.Observe(ctx, path); err != nil {
			return r.failPhase(s, cond, "Observe", err)
		}
		if !s.obs.Exists {
			return r.failPhase(s, cond, "CreateContainer", fmt.Errorf("%s exists but cannot be read", path))
		}
		return r.decideRole(ctx, s)
	case directory.KindOf(err) == directory.KindParentMissing:
		msg := fmt.Sprintf("the parent of %s does not exist: create it, or fix spec.path", path)
		markFalse(s.obj, cond, dkmv1.ReasonParentMissing, msg)
		r.warn(s.obj, dkmv1.ReasonParentMissing, "CreateContainer", msg)
		return stop(dkmv1.ReasonParentMissing)
	case directory.KindOf(err) == directory.KindInsufficientAccess:
		return r.rightsFailure(ctx, s, cond, parentDN(path), "create the container "+path, false, err)
	default:
		return r.failPhase(s, cond, "CreateContainer", err)
	}
	s.obs = &directory.Observation{Exists: true, Container: created}
	s.obj.Status.Container = objectRef(created, r.owner(s.obj))
	s.setRole(dkmv1.RoleWriter, r.owner(s.obj))
	r.normal(s.obj, "ContainerCreated", "CreateContainer", fmt.Sprintf("created %s with the DKM template DACL", path))
	return nil
}

// needsRightsCheck: an adopted container's rights are read when a write may follow — before the
// first key exists, or while ContainerReady is not yet True for this generation. In the steady
// state the check is skipped, keeping a reconcile to one LDAP search.
func needsRightsCheck(s *scope) bool {
	if len(s.obs.Managers) == 0 {
		return true
	}
	c := meta.FindStatusCondition(s.original.Status.Conditions, dkmv1.ConditionContainerReady)
	return c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != s.obj.Generation
}

// checkAdoptRights reads the bind identity's effective rights on an adopted container and names
// exactly what is missing: the classic case of a key never created because the rights were wrong.
func (r *DKMContainerReconciler) checkAdoptRights(ctx context.Context, s *scope) error {
	const cond = dkmv1.ConditionContainerReady
	rights, err := s.dir.EffectiveRights(ctx, s.obj.Spec.Path)
	if err != nil {
		return r.failPhase(s, cond, "CheckRights", err)
	}
	s.rights, s.rightsChecked = rights, true
	if missing := rights.Missing(s.needsDACLWrite()); len(missing) > 0 {
		return r.reportMissingRights(s, cond, s.obj.Spec.Path, "adopt the container", missing)
	}
	return nil
}

// rightsFailure explains an insufficient-access error by reading the effective rights on dn.
func (r *DKMContainerReconciler) rightsFailure(ctx context.Context, s *scope, cond, dn, action string, needDACL bool, cause error) error {
	rights, err := s.dir.EffectiveRights(ctx, dn)
	if err != nil {
		return r.failPhase(s, cond, "CheckRights", cause)
	}
	missing := rights.Missing(needDACL)
	if len(missing) == 0 {
		// The rights look complete yet AD refused: say what AD said.
		missing = []string{cause.Error()}
	}
	return r.reportMissingRights(s, cond, dn, action, missing)
}

func (r *DKMContainerReconciler) reportMissingRights(s *scope, cond, dn, action string, missing []string) error {
	msg := fmt.Sprintf("the operator's bind identity cannot %s: on %s it lacks %s; grant them and the operator "+
		"continues by itself", action, dn, strings.Join(missing, ", "))
	markFalse(s.obj, cond, dkmv1.ReasonInsufficientRight, msg)
	r.warn(s.obj, dkmv1.ReasonInsufficientRight, "CheckRights", msg)
	return stop(dkmv1.ReasonInsufficientRight)
}

// needsDACLWrite says whether this reconcile will write the container's DACL (Enforce with drift).
func (s *scope) needsDACLWrite() bool {
	if !s.repairsDACL() || s.obs == nil || !s.obs.Exists {
		return false
	}
	desired, err := s.desiredDACL()
	if err != nil {
		return false
	}
	return !secdesc.DiffDACL(s.obs.Container.SD, desired, s.aliases).Empty()
}

// objectRef builds a status reference. createdByOperator is read from the object's ownership
// record in AD (this DKMContainer, origin created), never carried over from an earlier status,
// so a stale or lost status cannot change it.
func objectRef(o directory.Object, me directory.Owner) *dkmv1.ObjectReference {
	return &dkmv1.ObjectReference{DN: o.DN, GUID: o.GUID.String(), CreatedByOperator: o.OwnedBy(me) && !o.Owner.Claimed}
}

// parentDN is the DN without its first RDN (escaped commas kept). ValidateDN already passed.
func parentDN(dn string) string {
	for i := 0; i < len(dn); i++ {
		switch dn[i] {
		case '\\':
			i++
		case ',':
			return strings.TrimSpace(dn[i+1:])
		}
	}
	return ""
}
