package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/keys"
)

// After a restart the KeyStore is empty, and until a DC answers no new pod would get its key,
// although every replica Secret holds it. recoverKeys fills the store from those Secrets, once,
// before AD is tried. Nothing there is taken on trust: a key version is accepted only from a
// copy whose bytes have the fingerprint status records for it, and status only when its key
// fields were written by the reconciler (its server-side apply field manager on the status
// subresource), so neither an edited Secret nor an edited status can hand a pod another key.
// The recovered ring is bound to no container (keys.RecoverRing): it is served, never written
// to AD, and the first ring read from AD replaces it.

// ReplicaKeysProbe is how often AD is tried while keys are served from replica Secrets, instead
// of a backoff that grows to minutes: AD is the source of truth, re-read as soon as it answers.
const ReplicaKeysProbe = 5 * time.Second

// statusKeyFields are the status fields recovery trusts, as managedFields names them.
var statusKeyFields = []string{"f:activeKeyID", "f:activeKeyFingerprint", "f:keys"}

// recoverKeys puts the ring recorded in status into the KeyStore from the replica Secrets when
// the store holds none for s.obj. Why it did not is kept in s.recoveryRefused for KeyReady.
func (r *DKMContainerReconciler) recoverKeys(ctx context.Context, s *scope) {
	obj := s.obj
	if r.Keys == nil || obj.Spec.Replicas == nil || obj.Status.ActiveKeyID == "" || r.Keys.Get(namespacedName(obj)) != nil {
		return
	}
	ring, err := r.recoverRing(ctx, obj)
	if err != nil {
		s.recoveryRefused = err.Error()
		logf.FromContext(ctx).Info("keys not recovered from the replica Secrets; waiting for AD", "reason", s.recoveryRefused)
		return
	}
	if r.Keys.Recover(obj, ring) {
		r.normal(obj, dkmv1.ReasonKeysFromReplicaSecrets, "RecoverKeys", fmt.Sprintf(
			"serving %d key version(s), active %s (%s), from the replica Secrets until AD is read",
			ring.Len(), ring.ActiveID(), ring.Active().Fingerprint))
	}
}

// recoverRing rebuilds the ring status records from the projected Secrets of obj.
func (r *DKMContainerReconciler) recoverRing(ctx context.Context, obj *dkmv1.DKMContainer) (*keys.Ring, error) {
	if err := statusKeysTrusted(obj); err != nil {
		return nil, err
	}
	secrets, err := r.projectedSecrets(ctx, obj)
	if err != nil {
		return nil, err
	}
	recorded := make([]keys.Recorded, 0, len(obj.Status.Keys))
	for _, k := range obj.Status.Keys {
		rec := keys.Recorded{ID: k.ID, Fingerprint: k.Fingerprint}
		if k.Created != nil {
			rec.Created = k.Created.Time
		}
		recorded = append(recorded, rec)
	}
	var copies []keys.Version
	for _, s := range secrets {
		copies = append(copies, secretVersions(s)...)
	}
	ring, err := keys.RecoverRing(obj.Status.ActiveKeyID, recorded, copies)
	if err != nil {
		return nil, fmt.Errorf("the replica Secrets do not hold the keys status records: %w", err)
	}
	if ring.Active().Fingerprint.String() != obj.Status.ActiveKeyFingerprint {
		return nil, fmt.Errorf("status.activeKeyFingerprint %s is not the fingerprint status.keys records for %s",
			obj.Status.ActiveKeyFingerprint, ring.ActiveID())
	}
	return ring, nil
}

// statusKeysTrusted says why the key fingerprints in status cannot vouch for key bytes from
// outside AD (replica Secrets), or nil when they can: recovery after a restart and a restore
// from the cluster (restore.go) both apply it.
func statusKeysTrusted(obj *dkmv1.DKMContainer) error {
	if untrusted := untrustedKeyFields(obj); len(untrusted) > 0 {
		return fmt.Errorf("status.%s was not written by the operator (field manager %s), so it is not trusted",
			untrusted[0], ReconcilerFieldOwner)
	}
	return nil
}

// untrustedKeyFields lists the key fields of status that were not written by the reconciler alone, by server-side apply on the status
// subresource. managedFields is kept by the API server, so only a client that may write
// dkmcontainers/status and uses the reconciler's field manager name could forge it.
func untrustedKeyFields(obj *dkmv1.DKMContainer) []untrustedField {
	owned := map[string]bool{}
	others := map[string][]string{}
	for _, mf := range obj.ManagedFields {
		status := statusFieldSet(mf)
		for _, f := range statusKeyFields {
			if _, ok := status[f]; !ok {
				continue
			}
			if mf.Manager == ReconcilerFieldOwner && mf.Operation == metav1.ManagedFieldsOperationApply && mf.Subresource == "status" {
				owned[f] = true
			} else {
				others[f] = append(others[f], mf.Manager)
			}
		}
	}
	var out []untrustedField
	for _, f := range statusKeyFields {
		if len(others[f]) > 0 || !owned[f] {
			out = append(out, untrustedField{name: strings.TrimPrefix(f, "f:"), writers: others[f]})
		}
	}
	return out
}

// untrustedField is a key field of status and the field managers other than the reconciler
// that wrote it.
type untrustedField struct {
	name    string
	writers []string
}

func (f untrustedField) String() string {
	if len(f.writers) == 0 {
		return f.name
	}
	return f.name + " (also written by " + strings.Join(f.writers, ", ") + ")"
}

// statusFieldSet is the f:status part of one managedFields entry (nil when it has none).
func statusFieldSet(mf metav1.ManagedFieldsEntry) map[string]json.RawMessage {
	if mf.FieldsV1 == nil {
		return nil
	}
	var set struct {
		Status map[string]json.RawMessage `json:"f:status"`
	}
	if err := json.Unmarshal(mf.FieldsV1.Raw, &set); err != nil {
		return nil
	}
	return set.Status
}

// markKeysNotRead explains KeyReady when the key phase did not run (an earlier phase, usually
// DirectoryReachable, failed): keys recovered from replica Secrets are being served, or, when
// recovery was refused, why not.
func (r *DKMContainerReconciler) markKeysNotRead(s *scope, failed string) {
	c := meta.FindStatusCondition(s.obj.Status.Conditions, dkmv1.ConditionKeyReady)
	if c == nil || c.Reason != dkmv1.ReasonBlocked {
		return
	}
	if ring := r.recoveredRing(s.obj); ring != nil {
		setCondition(s.obj, dkmv1.ConditionKeyReady, metav1.ConditionUnknown, dkmv1.ReasonKeysFromReplicaSecrets, fmt.Sprintf(
			"AD has not been read since the operator started (%s is not True): the %d key version(s) recorded in status, "+
				"active %s (%s), are served to replicas from their existing Secrets, each checked against its fingerprint; "+
				"AD stays the source of truth and is tried again every %s", failed, ring.Len(), ring.ActiveID(), ring.Active().Fingerprint, ReplicaKeysProbe))
		return
	}
	if s.recoveryRefused != "" {
		setCondition(s.obj, dkmv1.ConditionKeyReady, metav1.ConditionUnknown, dkmv1.ReasonBlocked,
			"waiting for "+failed+"; no key is served to new replicas until then: "+s.recoveryRefused)
	}
}

// recoveredRing is the ring held for obj when it came from replica Secrets, else nil.
func (r *DKMContainerReconciler) recoveredRing(obj *dkmv1.DKMContainer) *keys.Ring {
	if !r.Keys.Recovered(namespacedName(obj)) {
		return nil
	}
	return r.Keys.Get(namespacedName(obj))
}
