package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/keys"
)

// Restore from the cluster (docs/design.md, "No regeneration without consent"): while a key is
// KeyLost, the copy the operator holds in memory or a replica's key Secret holds can be written
// back to AD (same ID, same bytes, sealed for the container as it now is) on the annotation
// dkmv1.AnnotationRestoreLostKey naming a lost key. A copy counts only when every lost key is in
// it and each matches the fingerprint status recorded: status never held key bytes, so the
// fingerprint is what proves the copy is the key the data needs. A replica Secret counts only
// while status's key fields were written by the reconciler alone (statusKeysTrusted).

// heldKeys is a verified copy of the lost keys.
type heldKeys struct {
	// source names where the copy was found, for messages (never the bytes).
	source string
	// lost are the versions AD no longer holds, each matching its recorded fingerprint.
	lost []keys.Version
}

// findHeldKeys looks for a verified copy of the lost keys: the ring in memory first, then the
// replica Secrets the projector made. why says, when none is found, what was looked at.
func (r *DKMContainerReconciler) findHeldKeys(ctx context.Context, obj *dkmv1.DKMContainer, lost []string) (held *heldKeys, why string) {
	want, err := recordedFingerprints(obj, lost)
	if err != nil {
		return nil, err.Error()
	}
	var misses []string
	if ring := r.Keys.Get(types.NamespacedName{Namespace: obj.Namespace, Name: obj.Name}); ring != nil {
		if held, miss := matchHeld("the operator's memory", ring.Versions(), want); held != nil {
			return held, ""
		} else {
			misses = append(misses, miss)
		}
	}
	// A replica Secret is anyone's to write, so its bytes count only against fingerprints the
	// reconciler wrote (statusKeysTrusted, as for recovery): else a writer of status and of a
	// Secret could have chosen bytes written to AD as the lost key. The memory copy above needs
	// no such check: it was read from AD, or recovered while status was trusted, so an edited
	// status can only make it fail to match.
	if err := statusKeysTrusted(obj); err != nil {
		return nil, strings.Join(append(misses, "the replica Secrets are not used: "+err.Error()), "; ")
	}
	secrets, err := r.projectedSecrets(ctx, obj)
	if err != nil {
		return nil, fmt.Sprintf("the replica Secrets could not be listed: %v", err)
	}
	for _, s := range secrets {
		source := fmt.Sprintf("replica Secret %s/%s", s.Namespace, s.Name)
		if held, miss := matchHeld(source, secretVersions(s), want); held != nil {
			return held, ""
		} else {
			misses = append(misses, miss)
		}
	}
	if len(misses) == 0 {
		return nil, "neither the operator's memory nor any replica Secret holds a copy"
	}
	return nil, strings.Join(misses, "; ")
}

// recordedFingerprints maps each lost key ID to the fingerprint status recorded for it.
func recordedFingerprints(obj *dkmv1.DKMContainer, lost []string) (map[keys.KeyID]string, error) {
	want := make(map[keys.KeyID]string, len(lost))
	for _, idText := range lost {
		id, err := keys.ParseKeyID(idText)
		if err != nil {
			return nil, fmt.Errorf("status records key %s, which is not a key ID: %v", idText, err)
		}
		fp := ""
		for _, k := range obj.Status.Keys {
			if strings.EqualFold(k.ID, idText) {
				fp = k.Fingerprint
			}
		}
		if fp == "" && strings.EqualFold(obj.Status.ActiveKeyID, idText) {
			fp = obj.Status.ActiveKeyFingerprint
		}
		if fp == "" {
			return nil, fmt.Errorf("status records no fingerprint for key %s, so no copy can be verified", idText)
		}
		want[id] = fp
	}
	return want, nil
}

// matchHeld returns the lost versions from versions when every one is there with the
// fingerprint status recorded; otherwise miss says what did not match.
func matchHeld(source string, versions []keys.Version, want map[keys.KeyID]string) (held *heldKeys, miss string) {
	out := &heldKeys{source: source}
	for id, fp := range want {
		i := slices.IndexFunc(versions, func(v keys.Version) bool { return v.ID == id })
		switch {
		case i < 0:
			return nil, fmt.Sprintf("%s lacks key %s", source, id)
		case versions[i].Fingerprint.String() != fp:
			return nil, fmt.Sprintf("%s holds key %s with fingerprint %s, status recorded %s",
				source, id, versions[i].Fingerprint, fp)
		}
		out.lost = append(out.lost, versions[i])
	}
	slices.SortFunc(out.lost, func(a, b keys.Version) int { return strings.Compare(a.ID.String(), b.ID.String()) })
	return out, ""
}

// secretVersions reads the versions a projected Secret holds (SecretKeyVersionPrefix entries);
// entries that are not a key ID with 32 bytes are skipped.
func secretVersions(s *corev1.Secret) []keys.Version {
	var out []keys.Version
	for name, value := range s.Data {
		idText, ok := strings.CutPrefix(name, SecretKeyVersionPrefix)
		if !ok {
			continue
		}
		id, err := keys.ParseKeyID(idText)
		if err != nil {
			continue
		}
		m, err := keys.NewMaterial(value)
		if err != nil {
			continue
		}
		out = append(out, keys.NewVersion(id, m, s.CreationTimestamp.Time))
	}
	return out
}

// restoreAck is the key ID the restore annotation names, lowercased.
func restoreAck(obj *dkmv1.DKMContainer) string {
	return strings.ToLower(strings.TrimSpace(obj.Annotations[dkmv1.AnnotationRestoreLostKey]))
}

// keyLostMessage explains a loss and the ways out, starting with the one that loses nothing.
func keyLostMessage(obj *dkmv1.DKMContainer, lost []string, where string, held *heldKeys, why string) string {
	ids := strings.Join(lost, ", ")
	if held != nil {
		return fmt.Sprintf("key %s recorded in status is gone from %s; %s still holds it (fingerprints match status): "+
			"write the same key back by annotating this DKMContainer %s=%s, or restore the container or DC Manager "+
			"object from an AD backup (or the Recycle Bin, or dkmctl restore) to the same DN (%s=%s would instead "+
			"create a new key, and data encrypted with this one could no longer be read)",
			ids, where, held.source, dkmv1.AnnotationRestoreLostKey, lost[0], dkmv1.AnnotationRegenerateLostKey, lost[0])
	}
	msg := fmt.Sprintf("key %s recorded in status is gone from %s; data encrypted with it needs it back: restore "+
		"the container or DC Manager object from an AD backup (or the Recycle Bin, or dkmctl restore) to the same DN, or "+
		"accept the loss and create a new key by annotating this DKMContainer %s=%s",
		ids, where, dkmv1.AnnotationRegenerateLostKey, lost[0])
	if restoreAck(obj) != "" {
		msg += fmt.Sprintf(" (%s=%s cannot be honoured: %s)", dkmv1.AnnotationRestoreLostKey, restoreAck(obj), why)
	}
	return msg
}

// restoreLostKeys writes the held copy of the lost keys into the container as AD now holds it:
// the DC Manager (derived name, when it is gone too), each lost version sealed for the
// container's objectGUID with its ownership record, and CryptoPolicy when it is missing. The
// keys are then loaded from AD like any other, so Ready proves they open.
func (r *DKMContainerReconciler) restoreLostKeys(ctx context.Context, s *scope, manager *directory.Manager,
	container keys.ObjectGUID, p keys.Protector) (*directory.Manager, error) {
	const cond = dkmv1.ConditionKeyReady
	// As for a first key: nothing is written while another DC might still hold what was lost.
	if err := r.guardWrite(ctx, s, cond, "write the lost key back"); err != nil {
		return nil, err
	}
	owner := r.owner(s.obj)
	if manager == nil {
		obj, err := s.dir.CreateManager(ctx, s.obs.Container.DN, keys.ManagerGUID(container).String(), owner)
		if err != nil {
			return nil, r.keyWriteFailure(ctx, s, "create the DC Manager object", err)
		}
		manager = &directory.Manager{Object: obj}
	}
	active := strings.ToLower(s.obj.Status.ActiveKeyID)
	activeID, err := keys.ParseKeyID(active)
	if err != nil || !slices.ContainsFunc(s.restore.lost, func(v keys.Version) bool { return v.ID == activeID }) {
		// The active key is still in AD: only older versions are written back.
		activeID = s.restore.lost[0].ID
	}
	_, stored, err := keys.Reseal(container, activeID, s.restore.lost, p)
	if err != nil {
		return nil, r.failPhase(s, cond, "RestoreKey", err)
	}
	var ids []string
	var copies []pendingCopy
	for _, sk := range stored {
		k, err := s.dir.AddKey(ctx, manager.DN, sk.ID, sk.Blob, owner)
		if err != nil {
			return nil, r.keyWriteFailure(ctx, s, "write back key "+sk.ID, err)
		}
		manager.Keys = append(manager.Keys, k)
		ids = append(ids, sk.ID)
		copies = append(copies, pendingCopy{id: sk.ID, guid: k.GUID, blob: sk.Blob})
	}
	// Durable commit, as for a new key: CryptoPolicy names it only once enough DCs hold it.
	if err := r.commitKeys(ctx, s, "restored key "+strings.Join(ids, ", "), copies); err != nil {
		return nil, err
	}
	if manager.Policy == nil || manager.Policy.ActiveKeyID == "" {
		if err := s.dir.SetActiveKey(ctx, manager.DN, "", activeID.String(), owner); err != nil {
			return nil, r.keyWriteFailure(ctx, s, "set the active key", err)
		}
		manager.Policy = &directory.PolicyObject{ActiveKeyID: activeID.String()}
	}
	r.normal(s.obj, dkmv1.ReasonKeyRestored, "RestoreKey", fmt.Sprintf(
		"wrote key %s back to %s from %s: same ID and bytes, sealed for container %s", strings.Join(ids, ", "),
		manager.DN, s.restore.source, container))
	return manager, nil
}
