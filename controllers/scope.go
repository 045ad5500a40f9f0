package controllers

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// scope carries what one reconcile learns from phase to phase.
type scope struct {
	obj      *dkmv1.DKMContainer
	original *dkmv1.DKMContainer
	now      time.Time

	// connect
	// dir is the DC every read and write of this reconcile goes to: dirs[inUse] (multidc.go).
	dir     Directory
	urls    []string
	dirs    []Directory // one per URL
	inUse   int
	dcName  string
	dcIsPDC bool
	domain  directory.Domain
	// operatorSID is the bind identity's SID: it is granted full control with the service
	// accounts so that Enforce never locks the operator out of the keys it manages.
	operatorSID secdesc.SID
	accounts    []secdesc.SID
	aliases     secdesc.Aliases
	// bindInputs identifies what this reconcile binds with (bindgate.go).
	bindInputs string

	// container
	obs *directory.Observation
	// role is read from the container's ownership record: only a writer changes AD.
	role dkmv1.Role
	// rightsChecked records that effective rights were read in this reconcile (Adopt).
	rightsChecked bool
	rights        directory.Rights
	// changesHeld: spec.changeApproval is Manual and the plan is not approved (approval.go):
	// writes are refused, and the phases report and serve what exists instead.
	changesHeld bool

	// key
	// restore is the verified copy of lost keys to write back (restore.go), set when the
	// restore annotation names a lost key.
	restore *heldKeys

	// recoveryRefused says why the keys were not recovered from replica Secrets (keyrecovery.go).
	recoveryRefused string
}

func newScope(obj *dkmv1.DKMContainer, now time.Time) *scope {
	return &scope{obj: obj, original: obj.DeepCopy(), now: now}
}

// finish stamps observedGeneration and the Ready summary.
func (s *scope) finish() {
	s.obj.Status.ObservedGeneration = s.obj.Generation
	summariseReady(s.obj)
}

// failureReason is Ready's reason, for metrics.
func (s *scope) failureReason() string {
	if c := meta.FindStatusCondition(s.obj.Status.Conditions, dkmv1.ConditionReady); c != nil && c.Status != metav1.ConditionTrue {
		return c.Reason
	}
	return "Unknown"
}

// desiredDACL is the DKM template for this domain, its service accounts and the operator.
func (s *scope) desiredDACL() (*secdesc.SecurityDescriptor, error) {
	accounts := append([]secdesc.SID{}, s.accounts...)
	if !s.operatorSID.IsZero() {
		accounts = append(accounts, s.operatorSID)
	}
	return secdesc.DKMTemplate(s.domain.SID, s.domain.ForestRootSID, accounts)
}
