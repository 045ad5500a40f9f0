package controllers

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
)

// Each controller owns its part of status and writes it with server-side apply under its own
// field manager, so neither can overwrite or drop the other's fields, and no write fails with a
// conflict because the other wrote in between (the merge patches with optimistic locking before
// this did, and a lost first patch could drop what a reconcile had learnt).
const (
	// ReconcilerFieldOwner owns everything in status but the projection: the phase conditions,
	// the AD references, the keys' fingerprints, drift, role and owner.
	ReconcilerFieldOwner = "dkm-operator-reconciler"
	// ProjectorFieldOwner owns ReplicasProjected and projectedReplicas.
	ProjectorFieldOwner = "dkm-operator-projector"
)

// Ready is the reconciler's alone: it summarises the phase conditions and the projector's
// ReplicasProjected, and a change of ReplicasProjected triggers a reconcile
// (replicasProjectedChanged). Two writers computing it from two caches left it stale.

// reconcilerStatus is the reconciler's part of status. ReplicasProjected is the projector's when
// spec.replicas is set; without replicas the reconciler says so itself.
func reconcilerStatus(obj *dkmv1.DKMContainer) (map[string]any, error) {
	part, err := statusFields(obj.Status)
	if err != nil {
		return nil, err
	}
	if obj.Spec.Replicas != nil {
		delete(part, "projectedReplicas")
		part["conditions"] = conditionsExcept(part["conditions"], dkmv1.ConditionReplicasProjected)
	}
	return part, nil
}

// projectorStatus is the projector's part of status.
func projectorStatus(obj *dkmv1.DKMContainer) (map[string]any, error) {
	all, err := statusFields(obj.Status)
	if err != nil {
		return nil, err
	}
	part := map[string]any{"projectedReplicas": int64(obj.Status.ProjectedReplicas)}
	part["conditions"] = conditionsOnly(all["conditions"], dkmv1.ConditionReplicasProjected)
	return part, nil
}

// applyStatus server-side applies part as obj's status under fieldOwner. The UID in the
// applied metadata makes a re-created object of the same name refuse a stale apply.
func applyStatus(ctx context.Context, c client.Client, obj *dkmv1.DKMContainer, fieldOwner string, part map[string]any) error {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": dkmv1.GroupVersion.String(),
		"kind":       "DKMContainer",
		"metadata":   map[string]any{"name": obj.Name, "namespace": obj.Namespace, "uid": string(obj.UID)},
		"status":     part,
	}}
	if err := c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying status as %s: %w", fieldOwner, err)
	}
	return nil
}

// statusFields is status as JSON fields (omitted when empty, so a cleared field is released).
func statusFields(st dkmv1.DKMContainerStatus) (map[string]any, error) {
	raw, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func conditionsExcept(v any, drop string) []any {
	return filterConditions(v, func(t string) bool { return t != drop })
}

func conditionsOnly(v any, keep ...string) []any {
	return filterConditions(v, func(t string) bool {
		for _, k := range keep {
			if t == k {
				return true
			}
		}
		return false
	})
}

func filterConditions(v any, keep func(string) bool) []any {
	list, _ := v.([]any)
	out := []any{}
	for _, c := range list {
		if m, ok := c.(map[string]any); ok {
			if t, _ := m["type"].(string); keep(t) {
				out = append(out, m)
			}
		}
	}
	return out
}
