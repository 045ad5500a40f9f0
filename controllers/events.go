package controllers

import (
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
)

// MaxEventNoteBytes is the longest note the API server accepts in an events.k8s.io/v1 Event
// (NoteLengthLimit, counted in bytes); a longer event is rejected and lost.
const MaxEventNoteBytes = 1024

// truncatedNote ends a note cut to fit: the whole message stays in the status conditions.
const truncatedNote = "… (truncated; see status conditions)"

// normal and warn emit events with stable reasons. The note is passed as an argument, never as
// the format string, and never holds key material: callers build it from DNs, IDs and
// fingerprints only. A note over MaxEventNoteBytes is cut to fit (see eventNote).
func (r *DKMContainerReconciler) normal(obj *dkmv1.DKMContainer, reason, action, note string) {
	if r.Recorder != nil {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, reason, action, "%s", eventNote(note))
	}
}

func (r *DKMContainerReconciler) warn(obj *dkmv1.DKMContainer, reason, action, note string) {
	if r.Recorder != nil {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, reason, action, "%s", eventNote(note))
	}
}

// eventNote returns note unchanged if it fits in an event, and otherwise its longest prefix
// that, with the truncation marker, does: cut on a UTF-8 boundary, so the note stays valid.
func eventNote(note string) string {
	return truncate(note, MaxEventNoteBytes, truncatedNote)
}

// truncate cuts s to at most limit bytes, ending it with marker when it had to be cut. The
// cut never splits a UTF-8 sequence.
func truncate(s string, limit int, marker string) string {
	if len(s) <= limit {
		return s
	}
	cut := max(limit-len(marker), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + marker
}
