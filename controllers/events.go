package controllers

import (
	corev1 "k8s.io/api/core/v1"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
)

// normal and warn emit events with stable reasons. The note is passed as an argument, never as
// the format string, and never holds key material: callers build it from DNs, IDs and
// fingerprints only.
func (r *DKMContainerReconciler) normal(obj *dkmv1.DKMContainer, reason, action, note string) {
	if r.Recorder != nil {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, reason, action, "%s", note)
	}
}

func (r *DKMContainerReconciler) warn(obj *dkmv1.DKMContainer, reason, action, note string) {
	if r.Recorder != nil {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, reason, action, "%s", note)
	}
}
