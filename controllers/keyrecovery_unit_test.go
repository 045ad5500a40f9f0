package controllers

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
)

// managedFieldsEntry is one managedFields entry, as the API server records it.
func managedFieldsEntry(manager string, op metav1.ManagedFieldsOperationType, sub, fields string) metav1.ManagedFieldsEntry {
	return metav1.ManagedFieldsEntry{Manager: manager, Operation: op, Subresource: sub,
		FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(fields)}}
}

// allStatusKeyFields is a field set holding every key field of status.
const allStatusKeyFields = `{"f:status":{"f:activeKeyID":{},"f:activeKeyFingerprint":{},"f:keys":{},"f:conditions":{}}}`

// reconcilerStatusEntry is the entry the API server keeps when the reconciler applied status:
// the fake client records no subresource, so tests that need trusted status set it themselves.
func reconcilerStatusEntry() metav1.ManagedFieldsEntry {
	return managedFieldsEntry(ReconcilerFieldOwner, metav1.ManagedFieldsOperationApply, "status", allStatusKeyFields)
}

func TestUntrustedKeyFields(t *testing.T) {
	all := allStatusKeyFields
	reconciler := reconcilerStatusEntry()
	for _, tc := range []struct {
		name    string
		entries []metav1.ManagedFieldsEntry
		want    []string
	}{
		{"written by the reconciler alone", []metav1.ManagedFieldsEntry{
			reconciler,
			managedFieldsEntry(ProjectorFieldOwner, metav1.ManagedFieldsOperationApply, "status", `{"f:status":{"f:projectedReplicas":{}}}`),
			managedFieldsEntry("kubectl", metav1.ManagedFieldsOperationUpdate, "", `{"f:spec":{"f:path":{}}}`),
		}, nil},
		{"no managedFields (stripped by a cache transform)", nil, []string{"activeKeyID", "activeKeyFingerprint", "keys"}},
		{"fingerprints edited by a person", []metav1.ManagedFieldsEntry{
			reconciler,
			managedFieldsEntry("kubectl-edit", metav1.ManagedFieldsOperationUpdate, "status", `{"f:status":{"f:keys":{},"f:activeKeyFingerprint":{}}}`),
		}, []string{"activeKeyFingerprint", "keys"}},
		{"the reconciler's name on a plain update", []metav1.ManagedFieldsEntry{
			managedFieldsEntry(ReconcilerFieldOwner, metav1.ManagedFieldsOperationUpdate, "status", all),
		}, []string{"activeKeyID", "activeKeyFingerprint", "keys"}},
		{"the reconciler's apply on the main resource", []metav1.ManagedFieldsEntry{
			managedFieldsEntry(ReconcilerFieldOwner, metav1.ManagedFieldsOperationApply, "", all),
		}, []string{"activeKeyID", "activeKeyFingerprint", "keys"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := &dkmv1.DKMContainer{ObjectMeta: metav1.ObjectMeta{ManagedFields: tc.entries}}
			var got []string
			for _, f := range untrustedKeyFields(obj) {
				got = append(got, f.name)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("untrusted %v, want %v", got, tc.want)
			}
		})
	}
}
