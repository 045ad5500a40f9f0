package controllers

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
)

// phaseConditions are the conditions the phases own, in phase order; Ready summarises them.
var phaseConditions = []string{
	dkmv1.ConditionDirectoryReachable,
	dkmv1.ConditionContainerReady,
	dkmv1.ConditionAccessControlled,
	dkmv1.ConditionKeyReady,
	dkmv1.ConditionReplicasProjected,
}

// MaxConditionMessageBytes is the schema's limit on a condition message (metav1.Condition's
// maxLength, 32768 characters; counting bytes stays within it). Messages carry the full detail,
// unlike event notes (MaxEventNoteBytes), and only one over this limit, which the API server
// would refuse together with the whole status update, is cut.
const MaxConditionMessageBytes = 32768

// setCondition records a condition for the object's current generation. LastTransitionTime moves
// only when the status flips, so an unchanged reconcile writes nothing.
func setCondition(obj *dkmv1.DKMContainer, condType string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&obj.Status.Conditions, metav1.Condition{
		Type:               condType,
		Status:             status,
		Reason:             reason,
		Message:            truncate(message, MaxConditionMessageBytes, "… (truncated)"),
		ObservedGeneration: obj.Generation,
	})
}

func markTrue(obj *dkmv1.DKMContainer, condType, reason, message string) {
	setCondition(obj, condType, metav1.ConditionTrue, reason, message)
}

func markFalse(obj *dkmv1.DKMContainer, condType, reason, message string) {
	setCondition(obj, condType, metav1.ConditionFalse, reason, message)
}

// markBlocked marks a condition whose phase did not run because an earlier one failed as
// Unknown: keeping an older True would claim more than we know.
func markBlocked(obj *dkmv1.DKMContainer, condType, failed string) {
	setCondition(obj, condType, metav1.ConditionUnknown, dkmv1.ReasonBlocked, "waiting for "+failed)
}

// summariseReady sets Ready from the phase conditions: True when all are True, otherwise False
// with the reason and message of the condition that failed (a False one before the Unknown ones
// it blocked), so `kubectl get dkm` says what to fix.
func summariseReady(obj *dkmv1.DKMContainer) {
	var first *metav1.Condition
	for _, t := range phaseConditions {
		c := meta.FindStatusCondition(obj.Status.Conditions, t)
		if c == nil {
			c = &metav1.Condition{Type: t, Status: metav1.ConditionUnknown, Reason: dkmv1.ReasonReconciling, Message: "not yet evaluated"}
		}
		if c.Status == metav1.ConditionFalse {
			first = c
			break
		}
		if c.Status != metav1.ConditionTrue && first == nil {
			first = c
		}
	}
	if first == nil {
		setCondition(obj, dkmv1.ConditionReady, metav1.ConditionTrue, dkmv1.ReasonReady, "the DKM container, its access control and key are in place")
		return
	}
	setCondition(obj, dkmv1.ConditionReady, metav1.ConditionFalse, first.Reason, first.Type+": "+first.Message)
}
