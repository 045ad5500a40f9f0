package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/keys"
)

// reconcileKey makes sure the container holds exactly one `DC Manager` object with a readable
// key ring, following the rules of docs/design.md: adopt what exists, create only when nothing was ever
// recorded, report KeyLost (and do nothing destructive) when a recorded key vanished, rotate by
// adding versions. It owns KeyReady and publishes the ring for the projector. Replication
// conflict objects are reported on KeyReady and in an event, whatever else it finds.
func (r *DKMContainerReconciler) reconcileKey(ctx context.Context, s *scope) error {
	err := r.reconcileKeyRing(ctx, s)
	r.reportConflicts(s)
	return err
}

// reportConflicts appends the replication conflict objects to KeyReady's message and warns.
func (r *DKMContainerReconciler) reportConflicts(s *scope) {
	note := conflictNote(s, r.owner(s.obj))
	if note == "" {
		return
	}
	if c := meta.FindStatusCondition(s.obj.Status.Conditions, dkmv1.ConditionKeyReady); c != nil {
		setCondition(s.obj, c.Type, c.Status, c.Reason, c.Message+"; "+note)
	}
	r.warn(s.obj, dkmv1.ReasonReplicationConflict, "CheckReplicas", note)
}

func (r *DKMContainerReconciler) reconcileKeyRing(ctx context.Context, s *scope) error {
	const cond = dkmv1.ConditionKeyReady
	protector, err := r.protector(ctx, s.obj)
	if err != nil {
		return r.failPhase(s, cond, "LoadKEK", err)
	}
	container, err := keys.ObjectGUIDFromBytes(s.obs.Container.GUID.Bytes())
	if err != nil {
		return fmt.Errorf("container %s: %w", s.obs.Container.DN, err)
	}

	if len(s.obs.Managers) > 1 {
		var dns []string
		for _, m := range s.obs.Managers {
			dns = append(dns, m.DN)
		}
		msg := fmt.Sprintf("%s holds %d DC Manager objects (%s); the operator will not guess which key your data needs: "+
			"move all but one out of the container", s.obs.Container.DN, len(dns), strings.Join(dns, "; "))
		markFalse(s.obj, cond, dkmv1.ReasonMultipleKeyObjects, msg)
		r.warn(s.obj, dkmv1.ReasonMultipleKeyObjects, "LoadKey", msg)
		return stop(dkmv1.ReasonMultipleKeyObjects)
	}
	var manager *directory.Manager
	if len(s.obs.Managers) == 1 {
		manager = &s.obs.Managers[0]
	}

	if err := r.checkKeyLoss(ctx, s, cond, manager, s.obs.Container.DN); err != nil {
		return err
	}
	if err := r.checkPolicyTarget(ctx, s, manager); err != nil {
		return err
	}
	if err := r.checkPolicyBehind(ctx, s, manager); err != nil {
		return err
	}
	// Safe-DACL gate (docs/design.md rule 6, controllers/dacl_gate.go): no key write below under an unsafe DACL.
	if blocked, err := r.gateKeyWrites(ctx, s, protector); blocked {
		return err
	}

	var ring *keys.Ring
	switch {
	case !s.writer() && (manager == nil || len(manager.Keys) == 0 || manager.Policy == nil || manager.Policy.ActiveKeyID == ""):
		msg := fmt.Sprintf("%s holds no complete key yet; its owner (%s) creates it, this reader never writes AD",
			s.obs.Container.DN, s.obj.Status.Owner)
		markFalse(s.obj, cond, dkmv1.ReasonWaitingForOwner, msg)
		return stop(dkmv1.ReasonWaitingForOwner)
	case s.restore != nil && s.writer():
		if manager, err = r.restoreLostKeys(ctx, s, manager, container, protector); err == nil {
			ring, err = r.loadRing(ctx, s, manager, container, protector)
		}
	case manager == nil || len(manager.Keys) == 0:
		ring, manager, err = r.createFirstKey(ctx, s, manager, container, protector)
	default:
		ring, err = r.loadRing(ctx, s, manager, container, protector)
	}
	if err != nil {
		return err
	}
	if s.writer() {
		if ring, err = r.maintainRing(ctx, s, manager, ring, protector); err != nil {
			return err
		}
	}
	if s.writer() && wasCommitting(s) {
		// The last reconcile waited for replication (of a re-wrap, say, which leaves nothing
		// pending to see): every key must be on enough DCs before KeyReady says so.
		r.Keys.Set(s.obj, ring)
		if err := r.commitKeys(ctx, s, "keys of "+manager.DN, copiesOf(manager.Keys)); err != nil {
			return err
		}
	}

	r.Keys.Set(s.obj, ring)
	r.Metrics.KeyAge(s.obj, s.now.Sub(ring.Active().Created))
	recordKeys(s.obj, r.owner(s.obj), manager, ring)
	active := ring.Active()
	if period, ok := configuredRotation(s.obj); ok && period < dkmv1.MinRotationPeriod {
		// Stored before the API server checked it: every version is kept for good, so a period
		// of seconds would add one per reconcile, and zero or less would silently mean never.
		msg := fmt.Sprintf("spec.rotation.period %s is below the minimum %s: nothing is rotated until it is fixed "+
			"(active key %s (%s), %d version(s) in %s, is served)", period, dkmv1.MinRotationPeriod,
			active.ID, active.Fingerprint, ring.Len(), manager.DN)
		markFalse(s.obj, cond, dkmv1.ReasonInvalidRotationPeriod, msg)
		r.warn(s.obj, dkmv1.ReasonInvalidRotationPeriod, "RotateKey", msg)
		return stop(dkmv1.ReasonInvalidRotationPeriod)
	}
	markTrue(s.obj, cond, dkmv1.ReasonReady, fmt.Sprintf("active key %s (%s), %d version(s) in %s; %s",
		active.ID, active.Fingerprint, ring.Len(), manager.DN, durabilityNote(s.obj)))
	return nil
}

// wasCommitting: the previous reconcile ended waiting for a key to replicate.
func wasCommitting(s *scope) bool {
	c := meta.FindStatusCondition(s.original.Status.Conditions, dkmv1.ConditionKeyReady)
	return c != nil && c.Reason == dkmv1.ReasonKeyNotReplicated
}

// copiesOf lists key objects as the copies a commit waits for.
func copiesOf(ks []directory.KeyObject) []pendingCopy {
	out := make([]pendingCopy, 0, len(ks))
	for _, k := range ks {
		out = append(out, pendingCopy{id: k.ID, guid: k.GUID, blob: k.Blob})
	}
	return out
}

// splitPending divides a DC Manager's keys (oldest first) at CryptoPolicy's active key:
// pending are the keys created after it (whenCreated, strictly), which a rotation added and
// has not activated yet (it waits for them to replicate), so no replica may receive them;
// committed are the others. Without a CryptoPolicy, or when it names no key here, every key is
// committed. (Keys created in the same second as the active one are committed: a race between
// writers, never a rotation, which comes a period later.) A key status records (recorded,
// lower-case IDs) was in use before, so it is committed whatever its whenCreated: a restore
// writes versions back in any order, and the older ones are not rotations waiting.
func splitPending(m *directory.Manager, recorded []string) (committed, pending []directory.KeyObject) {
	if m.Policy == nil || m.Policy.ActiveKeyID == "" {
		return m.Keys, nil
	}
	i := slices.IndexFunc(m.Keys, func(k directory.KeyObject) bool { return strings.EqualFold(k.ID, m.Policy.ActiveKeyID) })
	if i < 0 {
		return m.Keys, nil
	}
	active := m.Keys[i].Created
	for _, k := range m.Keys {
		if k.Created.After(active) && !slices.Contains(recorded, strings.ToLower(k.ID)) {
			pending = append(pending, k)
		} else {
			committed = append(committed, k)
		}
	}
	return committed, pending
}

// checkKeyLoss compares the key IDs status remembers with those in AD (manager nil: the
// container where, or its DC Manager, is gone). A vanished key is KeyLost: nothing is created
// until a person restores it (from an AD backup, or from the copy the operator or a replica
// still holds, by the restore annotation: s.restore is set) or acknowledges the loss by naming
// the lost key's ID in the regenerate annotation. cond is the condition of the phase that found
// the loss (KeyReady, or ContainerReady when the whole container is gone); Ready carries KeyLost
// either way.
func (r *DKMContainerReconciler) checkKeyLoss(ctx context.Context, s *scope, cond string, manager *directory.Manager, where string) error {
	present := map[string]bool{}
	if manager != nil {
		for _, k := range manager.Keys {
			present[strings.ToLower(k.ID)] = true
		}
	}
	var lost []string
	for _, id := range knownKeyIDs(s.obj) {
		if !present[id] {
			lost = append(lost, id)
		}
	}
	if len(lost) == 0 {
		return nil
	}
	// The DC in use may only lag: a key another DC holds, or one that does not answer may
	// hold, is not lost.
	if err := r.lagSafeLoss(ctx, s, cond, lost); err != nil {
		return err
	}
	held, why := r.findHeldKeys(ctx, s.obj, lost)
	if held != nil && slices.Contains(lost, restoreAck(s.obj)) {
		s.restore = held
		return nil
	}
	ack := regenerateAck(s.obj)
	if !slices.Contains(lost, ack) {
		msg := keyLostMessage(s.obj, lost, where, held, why)
		if ack != "" {
			msg += fmt.Sprintf(" (the annotation names %s, which is not a lost key)", ack)
		}
		markFalse(s.obj, cond, dkmv1.ReasonKeyLost, msg)
		r.warn(s.obj, dkmv1.ReasonKeyLost, "LoadKey", msg)
		return stop(dkmv1.ReasonKeyLost)
	}
	// The person named a lost key: forget every lost ID, so the ring is rebuilt from what AD holds
	// (and a new key is created if AD holds none).
	s.obj.Status.Keys = slices.DeleteFunc(s.obj.Status.Keys, func(k dkmv1.KeyVersion) bool {
		return slices.Contains(lost, strings.ToLower(k.ID))
	})
	if slices.Contains(lost, strings.ToLower(s.obj.Status.ActiveKeyID)) {
		s.obj.Status.ActiveKeyID, s.obj.Status.ActiveKeyFingerprint = "", ""
	}
	r.warn(s.obj, "KeyLossAcknowledged", "RegenerateKey", fmt.Sprintf(
		"the loss of key %s was acknowledged by annotation %s; continuing with what AD holds", strings.Join(lost, ", "), dkmv1.AnnotationRegenerateLostKey))
	return nil
}

// checkPolicyTarget: a CryptoPolicy that names a key this identity cannot see (deleted, or
// hidden by an ACE) is KeyLost too, even when status recorded nothing (a new DKMContainer on an
// existing path): creating a key and moving CryptoPolicy would regenerate without consent.
func (r *DKMContainerReconciler) checkPolicyTarget(ctx context.Context, s *scope, manager *directory.Manager) error {
	if manager == nil || manager.Policy == nil || manager.Policy.ActiveKeyID == "" {
		return nil
	}
	active := manager.Policy.ActiveKeyID
	if slices.ContainsFunc(manager.Keys, func(k directory.KeyObject) bool { return strings.EqualFold(k.ID, active) }) {
		return nil
	}
	if err := r.lagSafeLoss(ctx, s, dkmv1.ConditionKeyReady, []string{active}); err != nil {
		return err
	}
	if s.restore != nil && slices.ContainsFunc(s.restore.lost, func(v keys.Version) bool { return strings.EqualFold(v.ID.String(), active) }) {
		return nil // restoreLostKeys writes it back
	}
	if regenerateAck(s.obj) == strings.ToLower(active) && s.writer() {
		r.warn(s.obj, "KeyLossAcknowledged", "RegenerateKey", fmt.Sprintf(
			"the loss of key %s was acknowledged by annotation %s; a new key replaces it in %s", active, dkmv1.AnnotationRegenerateLostKey, manager.DN))
		manager.Keys = nil // createFirstKey moves CryptoPolicy from the lost ID to a new key
		return nil
	}
	msg := fmt.Sprintf("CryptoPolicy in %s names key %s, which the bind identity cannot see (deleted, or not readable); "+
		"data encrypted with it needs it back: restore the key object, or fix its ACEs, or accept the loss by annotating "+
		"this DKMContainer %s=%s", manager.DN, active, dkmv1.AnnotationRegenerateLostKey, strings.ToLower(active))
	markFalse(s.obj, dkmv1.ConditionKeyReady, dkmv1.ReasonKeyLost, msg)
	r.warn(s.obj, dkmv1.ReasonKeyLost, "LoadKey", msg)
	return stop(dkmv1.ReasonKeyLost)
}

func regenerateAck(obj *dkmv1.DKMContainer) string {
	return strings.ToLower(strings.TrimSpace(obj.Annotations[dkmv1.AnnotationRegenerateLostKey]))
}

func knownKeyIDs(obj *dkmv1.DKMContainer) []string {
	var ids []string
	if obj.Status.ActiveKeyID != "" {
		ids = append(ids, strings.ToLower(obj.Status.ActiveKeyID))
	}
	for _, k := range obj.Status.Keys {
		if id := strings.ToLower(k.ID); !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids
}

// createFirstKey creates the DC Manager object (if missing) and the first key version, each
// with its security descriptor and ownership record in the add request. Both names are derived
// (the DC Manager's from the container's objectGUID, the first key's from the DC Manager's), so
// writers racing on one DC collide on the same DNs and only one key results.
func (r *DKMContainerReconciler) createFirstKey(ctx context.Context, s *scope, manager *directory.Manager,
	container keys.ObjectGUID, p keys.Protector) (*keys.Ring, *directory.Manager, error) {
	const cond = dkmv1.ConditionKeyReady
	// Never a second key: nothing is created while another DC might hold a DC Manager or key
	// this one has not received yet.
	if err := r.guardWrite(ctx, s, cond, "create the first key"); err != nil {
		return nil, nil, err
	}
	owner := r.owner(s.obj)
	if manager == nil {
		obj, err := s.dir.CreateManager(ctx, s.obs.Container.DN, keys.ManagerGUID(container).String(), owner)
		if err != nil {
			return nil, nil, r.keyWriteFailure(ctx, s, "create the DC Manager object", err)
		}
		manager = &directory.Manager{Object: obj}
		s.obj.Status.KeyObject = objectRef(obj, owner)
	}
	fromID := ""
	var ring *keys.Ring
	var stored keys.StoredKey
	var err error
	if manager.Policy != nil && manager.Policy.ActiveKeyID != "" {
		// A lost key's replacement (acknowledged by annotation): a fresh ID, never the lost one.
		fromID = manager.Policy.ActiveKeyID
		ring, stored, err = keys.NewRing(container, p, s.now)
	} else {
		mgr, gerr := keys.ObjectGUIDFromBytes(manager.GUID.Bytes())
		if gerr != nil {
			return nil, nil, fmt.Errorf("DC Manager %s: %w", manager.DN, gerr)
		}
		ring, stored, err = keys.NewRingWithID(container, keys.FirstKeyID(mgr), p, s.now)
	}
	if err != nil {
		return nil, nil, r.failPhase(s, cond, "CreateKey", err)
	}
	added, err := s.dir.AddKey(ctx, manager.DN, stored.ID, stored.Blob, owner)
	if err != nil {
		return nil, nil, r.keyWriteFailure(ctx, s, "add the key", err)
	}
	// Durable commit: CryptoPolicy names the key (and status and replicas get it) only once
	// enough DCs hold it; until then the key contact is all there is, and loadRing resumes.
	if err := r.commitKeys(ctx, s, "new key "+stored.ID, []pendingCopy{{id: stored.ID, guid: added.GUID, blob: stored.Blob}}); err != nil {
		return nil, nil, err
	}
	if err := s.dir.SetActiveKey(ctx, manager.DN, fromID, stored.ID, owner); err != nil {
		return nil, nil, r.keyWriteFailure(ctx, s, "set the active key", err)
	}
	r.normal(s.obj, dkmv1.ReasonKeyCreated, "CreateKey", fmt.Sprintf("created key %s (%s) in %s",
		ring.ActiveID(), ring.Active().Fingerprint, manager.DN))
	return ring, manager, nil
}

// loadRing opens the key versions AD holds. A ring that does not open (wrong KEK, altered blob)
// is reported, never replaced.
func (r *DKMContainerReconciler) loadRing(ctx context.Context, s *scope, manager *directory.Manager,
	container keys.ObjectGUID, p keys.Protector) (*keys.Ring, error) {
	activeID := ""
	if manager.Policy != nil {
		activeID = manager.Policy.ActiveKeyID
	}
	if activeID == "" {
		// Keys without a CryptoPolicy (a first key or a restore waiting for replication, or an
		// interrupted first run): keyToActivate is made active, once enough DCs hold it.
		// Nothing is deleted.
		next := keyToActivate(s.obj, manager)
		if err := r.commitKeys(ctx, s, "new key "+next.ID, copiesOf([]directory.KeyObject{next})); err != nil {
			return nil, err
		}
		activeID = next.ID
		if err := s.dir.SetActiveKey(ctx, manager.DN, "", activeID, r.owner(s.obj)); err != nil {
			return nil, r.keyWriteFailure(ctx, s, "set the active key", err)
		}
		manager.Policy = &directory.PolicyObject{ActiveKeyID: activeID}
		r.normal(s.obj, "ActiveKeyAdopted", "LoadKey", fmt.Sprintf("%s had no CryptoPolicy; made key %s active", manager.DN, activeID))
	}
	committed, pending := splitPending(manager, knownKeyIDs(s.obj))
	ring, err := r.openRing(s, manager, container, activeID, committed, p)
	if err != nil {
		return nil, err
	}
	// A rotation this DKMContainer added and has not activated (it waited for replication):
	// resume it rather than rotate again. Pending keys of anyone else stay out of the ring.
	if len(pending) == 0 || !s.writer() || !pending[len(pending)-1].OwnedBy(r.owner(s.obj)) {
		return ring, nil
	}
	next := pending[len(pending)-1]
	if err := r.commitKeys(ctx, s, "rotated key "+next.ID, copiesOf([]directory.KeyObject{next})); err != nil {
		r.Keys.Set(s.obj, ring) // replicas keep the committed keys meanwhile
		return nil, err
	}
	if err := s.dir.SetActiveKey(ctx, manager.DN, activeID, next.ID, r.owner(s.obj)); err != nil {
		r.Keys.Set(s.obj, ring)
		return nil, r.keyWriteFailure(ctx, s, "activate the rotated key", err)
	}
	manager.Policy.ActiveKeyID = next.ID
	if ring, err = r.openRing(s, manager, container, next.ID, manager.Keys, p); err != nil {
		return nil, err
	}
	r.normal(s.obj, dkmv1.ReasonKeyRotated, "RotateKey", fmt.Sprintf("rotated to key %s (%s); %d version(s) retained",
		ring.ActiveID(), ring.Active().Fingerprint, ring.Len()))
	return ring, nil
}

// keyToActivate is the key a DC Manager without CryptoPolicy gets as active: the one status
// recorded as active when AD holds it (replicas already use it), else the newest. Restored
// versions all carry the restore's whenCreated, in the order they were written, so the newest
// alone could move every replica to an older key (and make a rotation due at once).
func keyToActivate(obj *dkmv1.DKMContainer, m *directory.Manager) directory.KeyObject {
	if id := obj.Status.ActiveKeyID; id != "" {
		if k := keyObject(m, id); k.ID != "" {
			return k
		}
	}
	return m.Keys[len(m.Keys)-1]
}

// openRing opens the given key versions with activeID active. A ring that does not open (wrong
// KEK, altered blob) is reported, never replaced.
func (r *DKMContainerReconciler) openRing(s *scope, manager *directory.Manager, container keys.ObjectGUID,
	activeID string, ks []directory.KeyObject, p keys.Protector) (*keys.Ring, error) {
	stored := make([]keys.StoredKey, 0, len(ks))
	for _, k := range ks {
		stored = append(stored, keys.StoredKey{ID: k.ID, Blob: k.Blob, Created: k.Created})
	}
	ring, err := keys.LoadRing(container, activeID, stored, p)
	if err != nil {
		msg := fmt.Sprintf("the keys in %s do not open (%v); nothing was changed: check the KEK Secret "+
			"(a retired KEK must stay under a kek.<suffix> entry until re-wrapped) and spec.keyProtection.mode", manager.DN, err)
		markFalse(s.obj, dkmv1.ConditionKeyReady, dkmv1.ReasonKeyUnreadable, msg)
		r.warn(s.obj, dkmv1.ReasonKeyUnreadable, "LoadKey", msg)
		return nil, stop(dkmv1.ReasonKeyUnreadable)
	}
	return ring, nil
}

// maintainRing re-wraps versions still under a retired KEK and rotates when the period elapsed.
// Old versions are never deleted.
func (r *DKMContainerReconciler) maintainRing(ctx context.Context, s *scope, manager *directory.Manager,
	ring *keys.Ring, p keys.Protector) (*keys.Ring, error) {
	const cond = dkmv1.ConditionKeyReady
	if s.changesHeld {
		// A re-wrap or rotation waits for approval (status.changes.pending); the ring in use
		// is served meanwhile.
		return ring, nil
	}
	if ring.NeedsRewrap() {
		rewrapped, blobs, err := ring.Rewrap(p)
		if err != nil {
			return nil, r.failPhase(s, cond, "RewrapKeys", err)
		}
		var copies []pendingCopy
		for _, b := range blobs {
			k := keyObject(manager, b.ID)
			if err := s.dir.ReplaceKeyBlob(ctx, k.DN, b.Blob); err != nil {
				return nil, r.keyWriteFailure(ctx, s, "re-wrap key "+b.ID, err)
			}
			copies = append(copies, pendingCopy{id: b.ID, guid: k.GUID, blob: b.Blob})
		}
		ring = rewrapped
		r.normal(s.obj, "KeysRewrapped", "RewrapKeys", fmt.Sprintf("re-wrapped %d key version(s) under the active KEK", len(blobs)))
		// The same keys: replicas keep them. Until the new blobs replicate, a DC may still hold
		// blobs only the retired KEK opens.
		if err := r.commitKeys(ctx, s, "keys re-wrapped under the active KEK (keep the retired KEK in the Secret until then)", copies); err != nil {
			r.Keys.Set(s.obj, ring)
			return nil, err
		}
	}
	if period := rotationPeriod(s.obj); keys.RotationDue(ring.Active().Created, period, s.now) {
		if err := r.guardWrite(ctx, s, cond, "rotate the key"); err != nil {
			r.Keys.Set(s.obj, ring)
			return nil, err
		}
		rotated, stored, err := ring.Rotate(p, s.now)
		if err != nil {
			return nil, r.failPhase(s, cond, "RotateKey", err)
		}
		// Key contact first, then CryptoPolicy: an interruption leaves an extra inactive
		// version, never a policy pointing at nothing.
		added, err := s.dir.AddKey(ctx, manager.DN, stored.ID, stored.Blob, r.owner(s.obj))
		if err != nil {
			return nil, r.keyWriteFailure(ctx, s, "add the rotated key", err)
		}
		// Activated only once enough DCs hold it; meanwhile replicas keep the current ring and
		// loadRing resumes the activation.
		if err := r.commitKeys(ctx, s, "rotated key "+stored.ID, []pendingCopy{{id: stored.ID, guid: added.GUID, blob: stored.Blob}}); err != nil {
			r.Keys.Set(s.obj, ring)
			return nil, err
		}
		if err := s.dir.SetActiveKey(ctx, manager.DN, activePolicyValue(manager, ring), stored.ID, r.owner(s.obj)); err != nil {
			return nil, r.keyWriteFailure(ctx, s, "activate the rotated key", err)
		}
		ring = rotated
		r.normal(s.obj, dkmv1.ReasonKeyRotated, "RotateKey", fmt.Sprintf("rotated to key %s (%s); %d version(s) retained",
			ring.ActiveID(), ring.Active().Fingerprint, ring.Len()))
	}
	return ring, nil
}

// activePolicyValue is CryptoPolicy's displayName as AD holds it (the compare part of the
// compare-and-swap), or the ring's active ID when it was not read.
func activePolicyValue(m *directory.Manager, ring *keys.Ring) string {
	if m.Policy != nil && m.Policy.ActiveKeyID != "" {
		return m.Policy.ActiveKeyID
	}
	return ring.ActiveID().String()
}

// keyWriteFailure explains a failed key write; insufficient access names the missing rights,
// and a write another writer beat (the derived DN exists, CryptoPolicy moved) is retried soon,
// when the next reconcile reads what that writer made.
func (r *DKMContainerReconciler) keyWriteFailure(ctx context.Context, s *scope, action string, err error) error {
	switch directory.KindOf(err) {
	case directory.KindInsufficientAccess:
		return r.rightsFailure(ctx, s, dkmv1.ConditionKeyReady, s.obs.Container.DN, action, false, err)
	case directory.KindAlreadyExists, directory.KindConflict:
		msg := fmt.Sprintf("another writer changed %s first (%s: %v); reading what it wrote", s.obs.Container.DN, action, err)
		markFalse(s.obj, dkmv1.ConditionKeyReady, dkmv1.ReasonKeyWriteRaced, msg)
		return fmt.Errorf("%s", msg)
	}
	return r.failPhase(s, dkmv1.ConditionKeyReady, "WriteKey", err)
}

func keyObject(m *directory.Manager, id string) directory.KeyObject {
	for _, k := range m.Keys {
		if strings.EqualFold(k.ID, id) {
			return k
		}
	}
	return directory.KeyObject{}
}

// rotationPeriod is the period rotation runs on; 0 (never) when none is set or the one set is
// below dkmv1.MinRotationPeriod (reconcileKey reports that).
func rotationPeriod(obj *dkmv1.DKMContainer) time.Duration {
	if period, ok := configuredRotation(obj); ok && period >= dkmv1.MinRotationPeriod {
		return period
	}
	return 0
}

// configuredRotation is spec.rotation.period as set, and whether it is.
func configuredRotation(obj *dkmv1.DKMContainer) (time.Duration, bool) {
	if obj.Spec.Rotation != nil && obj.Spec.Rotation.Period != nil {
		return obj.Spec.Rotation.Period.Duration, true
	}
	return 0, false
}

// recordKeys writes the key object and the fingerprints (never key bytes) into status.
func recordKeys(obj *dkmv1.DKMContainer, owner directory.Owner, manager *directory.Manager, ring *keys.Ring) {
	obj.Status.KeyObject = objectRef(manager.Object, owner)
	active := ring.Active()
	obj.Status.ActiveKeyID = active.ID.String()
	obj.Status.ActiveKeyFingerprint = active.Fingerprint.String()
	obj.Status.Keys = obj.Status.Keys[:0]
	for _, v := range ring.Versions() {
		kv := dkmv1.KeyVersion{ID: v.ID.String(), Fingerprint: v.Fingerprint.String()}
		if !v.Created.IsZero() {
			t := metav1.NewTime(v.Created.UTC().Truncate(time.Second))
			kv.Created = &t
		}
		obj.Status.Keys = append(obj.Status.Keys, kv)
	}
}

// protector returns the key protection for the spec: Plain, or Wrapped under the KEK Secret.
func (r *DKMContainerReconciler) protector(ctx context.Context, obj *dkmv1.DKMContainer) (keys.Protector, error) {
	kp := obj.Spec.KeyProtection
	if kp.Mode == dkmv1.KeyPlain {
		return keys.NewProtector(keys.ModePlain, nil)
	}
	if kp.KEKSecretRef == nil {
		return nil, &configError{dkmv1.ReasonKEKSecretMissing, "keyProtection.mode Wrapped needs keyProtection.kekSecretRef"}
	}
	secret, err := r.readSecret(ctx, obj.Namespace, kp.KEKSecretRef.Name)
	if err != nil {
		return nil, secretError(err, dkmv1.ReasonKEKSecretMissing, "KEK Secret", obj.Namespace, kp.KEKSecretRef.Name)
	}
	ring, err := keys.ParseKEKSecret(secret.Data)
	if err != nil {
		return nil, &configError{dkmv1.ReasonKEKInvalid, fmt.Sprintf("KEK Secret %s/%s: %v", obj.Namespace, kp.KEKSecretRef.Name, err)}
	}
	return keys.NewProtector(keys.ModeWrapped, ring)
}
