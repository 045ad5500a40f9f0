package controllers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// Multi-DC durability (docs/design.md, "Several domain controllers"). AD is multi-master with
// replication lag, so:
//   - every writer uses one DC: the PDC emulator when it answers, else the first URL that does
//     (chooseWriteDC), discovered once and cached until a connection fails;
//   - a new key becomes active, is recorded and reaches replicas only once it is read back from
//     spec.directory.minKeyCopies DCs (commitKeys);
//   - a first key, a rotation or a new container is written only when every configured DC
//     answered and none holds what the DC in use lacks (guardWrite): it cannot collide with an
//     unreplicated write elsewhere;
//   - a key or container the DC in use lacks is looked for on the other DCs before anything is
//     concluded (lagSafeLoss): KeyLost only when every DC answered and none holds it;
//   - a CryptoPolicy behind the recorded active key is lag too (checkPolicyBehind): the active
//     key never goes back and no version a replica holds is dropped.
// The steady state is unchanged: one search on the DC in use. The other DCs are read only while
// a key is committed or when something is missing.

// DefaultCommitRetry is how soon a key commit waiting for replication (or for a DC to answer)
// is looked at again.
const DefaultCommitRetry = 5 * time.Second

// dcProbe is one configured DC's answer to ServerInfo.
type dcProbe struct {
	info directory.ServerInfo
	err  error
}

// chooseWriteDC picks the DC every write goes to: the one whose dsServiceName is the domain's
// PDC emulator (fSMORoleOwner, as any DC that answered reports it), else the first that answered.
// Comparing NTDS Settings DNs rather than host names works whatever the URLs say (IPs, aliases).
// ok is false when none answered.
func chooseWriteDC(probes []dcProbe) (index int, pdc bool, ok bool) {
	first, owner := -1, ""
	for i, p := range probes {
		if p.err != nil || p.info.ServiceName == "" {
			continue
		}
		if first < 0 {
			first = i
		}
		if owner == "" {
			owner = p.info.PDC
		}
	}
	if first < 0 {
		return -1, false, false
	}
	if owner != "" {
		for i, p := range probes {
			if p.err == nil && directory.SameDN(p.info.ServiceName, owner) {
				return i, true, true
			}
		}
	}
	return first, false, true
}

// dcChoice is the cached write DC of one list of URLs.
type dcChoice struct {
	index int
	name  string // the DC's server name
	pdc   bool
	at    time.Time
}

// dcChoices caches the write DC per list of URLs (a property of the domain, not of a
// DKMContainer). A choice that is not the PDC emulator is kept for Retry only, so writers come
// back to the PDC once it answers again.
type dcChoices struct {
	mu sync.Mutex
	m  map[string]dcChoice
}

func urlsKey(urls []string) string { return strings.Join(urls, " ") }

func (c *dcChoices) get(urls []string, now time.Time, fallbackTTL time.Duration) (dcChoice, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.m[urlsKey(urls)]
	if ok && !ch.pdc && now.Sub(ch.at) > fallbackTTL {
		return dcChoice{}, false
	}
	return ch, ok
}

func (c *dcChoices) set(urls []string, ch dcChoice) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]dcChoice{}
	}
	c.m[urlsKey(urls)] = ch
}

func (c *dcChoices) forget(urls []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, urlsKey(urls))
}

// openDCs returns one Directory per configured URL (cfg with that URL only), so each DC can be
// read on its own; with one URL it is cfg's Directory itself.
func (r *DKMContainerReconciler) openDCs(cfg directory.Config) ([]Directory, error) {
	if len(cfg.URLs) <= 1 {
		d, err := r.Directories(cfg)
		return []Directory{d}, err
	}
	dirs := make([]Directory, len(cfg.URLs))
	for i, u := range cfg.URLs {
		one := cfg
		one.URLs = []string{u}
		d, err := r.Directories(one)
		if err != nil {
			return nil, err
		}
		dirs[i] = d
	}
	return dirs, nil
}

// selectWriteDC sets s.inUse: the cached choice, or one discovered now by asking the DCs in
// order for their identity and the PDC emulator's, stopping at the PDC. A refused bind ends
// the discovery at once (every DC would refuse it, and each try counts towards a lockout).
func (r *DKMContainerReconciler) selectWriteDC(ctx context.Context, s *scope) error {
	if len(s.dirs) == 1 {
		s.inUse = 0
		return nil
	}
	if ch, ok := r.dcs.get(s.urls, s.now, r.retry()); ok {
		s.inUse, s.dcName, s.dcIsPDC = ch.index, ch.name, ch.pdc
		return nil
	}
	probes := make([]dcProbe, len(s.dirs))
	for i := range probes {
		probes[i].err = errNotAsked
	}
	for i, d := range s.dirs {
		info, err := d.ServerInfo(ctx)
		probes[i] = dcProbe{info: info, err: err}
		if directory.KindOf(err) != directory.KindTransient && opOf(err) == "bind" {
			return err
		}
		if err == nil && info.IsPDC() {
			break
		}
	}
	i, pdc, ok := chooseWriteDC(probes)
	if !ok {
		return firstDCError(probes)
	}
	ch := dcChoice{index: i, name: probes[i].info.Name(), pdc: pdc, at: s.now}
	r.dcs.set(s.urls, ch)
	s.inUse, s.dcName, s.dcIsPDC = ch.index, ch.name, ch.pdc
	return nil
}

func opOf(err error) string {
	var e *directory.Error
	if errors.As(err, &e) {
		return e.Op
	}
	return ""
}

var errNotAsked = &directory.Error{Op: "search", Kind: directory.KindTransient, Err: fmt.Errorf("not asked")}

// firstDCError is the error to report when no DC answered: the first that needs a person (a bad
// CA), else the first.
func firstDCError(probes []dcProbe) error {
	var first error
	for _, p := range probes {
		if p.err == nil || p.err == errNotAsked {
			continue
		}
		if !directory.IsTransient(p.err) {
			return p.err
		}
		if first == nil {
			first = p.err
		}
	}
	return first
}

// dcInUse describes the write DC for messages.
func (s *scope) dcInUse() string {
	if len(s.urls) <= 1 {
		return ""
	}
	what := "the first domain controller that answered; the PDC emulator is not among the URLs or does not answer"
	if s.dcIsPDC {
		what = "the PDC emulator"
	}
	return fmt.Sprintf("%s (%s, %s)", s.urls[s.inUse], s.dcName, what)
}

// dcView is one configured DC's view of spec.path.
type dcView struct {
	url string
	obs *directory.Observation
	err error
}

// survey observes spec.path on every configured DC. The DC in use contributes s.obs unless
// fresh asks for a new read (after this reconcile wrote).
func (r *DKMContainerReconciler) survey(ctx context.Context, s *scope, fresh bool) []dcView {
	views := make([]dcView, len(s.dirs))
	for i, d := range s.dirs {
		views[i].url = s.urls[i]
		if i == s.inUse && !fresh && s.obs != nil {
			views[i].obs = s.obs
			continue
		}
		views[i].obs, views[i].err = d.Observe(ctx, s.obj.Spec.Path)
	}
	return views
}

// unanswered lists the DCs whose view is missing.
func unanswered(views []dcView) []string {
	var out []string
	for _, v := range views {
		if v.err != nil {
			out = append(out, v.url)
		}
	}
	return out
}

// holding lists the DCs whose view has an object matching has.
func holding(views []dcView, has func(*directory.Observation) bool) []string {
	var out []string
	for _, v := range views {
		if v.err == nil && v.obs != nil && has(v.obs) {
			out = append(out, v.url)
		}
	}
	return out
}

// hasKeyID: a live DC Manager of obs holds a key with this ID.
func hasKeyID(id string) func(*directory.Observation) bool {
	return func(obs *directory.Observation) bool {
		for _, m := range obs.Managers {
			if slices.ContainsFunc(m.Keys, func(k directory.KeyObject) bool { return strings.EqualFold(k.ID, id) }) {
				return true
			}
		}
		return false
	}
}

// hasKeyCopy: obs holds the key object guid with exactly blob (a copy, not a namesake, and not
// an older blob of a re-wrapped key).
func hasKeyCopy(guid secdesc.GUID, blob []byte) func(*directory.Observation) bool {
	return func(obs *directory.Observation) bool {
		for _, m := range obs.Managers {
			for _, k := range m.Keys {
				if k.GUID == guid && bytes.Equal(k.Blob, blob) {
					return true
				}
			}
		}
		return false
	}
}

// lacking describes what other holds of the DKM layout and base lacks (by objectGUID): a
// container of another GUID on the same path, DC Managers and keys. A write on base now could
// collide with those objects when they replicate.
func lacking(base, other *directory.Observation) []string {
	if other == nil || !other.Exists {
		return nil
	}
	if base == nil || !base.Exists {
		return []string{"container " + other.Container.DN}
	}
	var out []string
	if other.Container.GUID != base.Container.GUID {
		out = append(out, fmt.Sprintf("another container %s (objectGUID %s)", other.Container.DN, other.Container.GUID))
	}
	known := map[secdesc.GUID]bool{}
	for _, m := range base.Managers {
		known[m.GUID] = true
		for _, k := range m.Keys {
			known[k.GUID] = true
		}
	}
	for _, m := range other.Managers {
		if !known[m.GUID] {
			out = append(out, m.DN)
		}
		for _, k := range m.Keys {
			if !known[k.GUID] {
				out = append(out, "key "+k.ID)
			}
		}
	}
	return out
}

// guardWrite allows a write that creates something new (a container, a first key, a rotation)
// only when every configured DC answered and none holds what the DC in use lacks: otherwise
// the write could collide with one that has not replicated yet (a second key, or a conflict
// object). It returns nil to go ahead, or a stop after which nothing is written. One URL: no
// reads, nothing to collide with.
func (r *DKMContainerReconciler) guardWrite(ctx context.Context, s *scope, cond, action string) error {
	if len(s.dirs) <= 1 {
		return nil
	}
	views := r.survey(ctx, s, false)
	if down := unanswered(views); len(down) > 0 {
		return r.waitForDCs(s, cond, dkmv1.ReasonDCUnavailable, fmt.Sprintf(
			"not going to %s while %s does not answer: a write made elsewhere that has not replicated yet could "+
				"collide with it; nothing was written (%s)", action, strings.Join(down, ", "), firstViewError(views)))
	}
	for _, v := range views {
		if missing := lacking(s.obs, v.obs); len(missing) > 0 {
			return r.waitForDCs(s, cond, dkmv1.ReasonReplicationLag, fmt.Sprintf(
				"not going to %s: %s holds %s, which %s in use lacks; waiting for replication, nothing was written",
				action, v.url, strings.Join(missing, ", "), s.urls[s.inUse]))
		}
	}
	return nil
}

// lagSafeLoss is asked before concluding KeyLost for ids (absent on the DC in use): it returns
// nil when every configured DC answered and none holds any of them, and otherwise a stop with
// a transient reason (another DC holds one: replication lag; one did not answer: it might).
func (r *DKMContainerReconciler) lagSafeLoss(ctx context.Context, s *scope, cond string, ids []string) error {
	if len(s.dirs) <= 1 {
		return nil
	}
	views := r.survey(ctx, s, false)
	for _, id := range ids {
		if at := holding(views, hasKeyID(id)); len(at) > 0 {
			return r.waitForDCs(s, cond, dkmv1.ReasonReplicationLag, fmt.Sprintf(
				"key %s is not on %s in use but %s holds it: waiting for replication; nothing is concluded or written",
				id, s.urls[s.inUse], strings.Join(at, ", ")))
		}
	}
	if down := unanswered(views); len(down) > 0 {
		return r.waitForDCs(s, cond, dkmv1.ReasonDCUnavailable, fmt.Sprintf(
			"key %s is not on %s in use, and %s does not answer and may hold it: nothing is concluded or written (%s)",
			strings.Join(ids, ", "), s.urls[s.inUse], strings.Join(down, ", "), firstViewError(views)))
	}
	return nil
}

// recordedActiveKey is the active key this DKMContainer recorded: status, else the ring the
// KeyStore serves.
func (r *DKMContainerReconciler) recordedActiveKey(s *scope) string {
	if s.obj.Status.ActiveKeyID != "" {
		return s.obj.Status.ActiveKeyID
	}
	if r.Keys != nil {
		if ring := r.Keys.Get(namespacedName(s.obj)); ring != nil {
			return ring.ActiveID().String()
		}
	}
	return ""
}

// policyBehind: manager's CryptoPolicy names another key than the recorded active one, and the
// recorded key is present and was created after it. Replicas hold the recorded key as active;
// following the policy would move them back and drop the newer version.
func policyBehind(manager *directory.Manager, recorded string) bool {
	if manager == nil || manager.Policy == nil || manager.Policy.ActiveKeyID == "" || recorded == "" ||
		strings.EqualFold(manager.Policy.ActiveKeyID, recorded) {
		return false
	}
	rec, pol := keyObject(manager, recorded), keyObject(manager, manager.Policy.ActiveKeyID)
	return rec.ID != "" && pol.ID != "" && rec.Created.After(pol.Created)
}

// policyNames: obs's DC Manager has a CryptoPolicy naming id.
func policyNames(id string) func(*directory.Observation) bool {
	return func(obs *directory.Observation) bool {
		return slices.ContainsFunc(obs.Managers, func(m directory.Manager) bool {
			return m.Policy != nil && strings.EqualFold(m.Policy.ActiveKeyID, id)
		})
	}
}

// checkPolicyBehind is the lag-safe read of a CryptoPolicy behind the recorded active key (a
// DC that moved it stopped, or has not replicated yet): the ring held is served, nothing is
// written, and the other DCs are asked. Another DC names the recorded key: ReplicationLag; one
// does not answer: DCUnavailable. Only when every DC answered and none names it (the DC that
// moved it was lost or restored) does the writer move CryptoPolicy forward again, once enough
// DCs hold the key; a reader waits for it. One URL: nothing to lag behind, AD is followed.
func (r *DKMContainerReconciler) checkPolicyBehind(ctx context.Context, s *scope, manager *directory.Manager) error {
	const cond = dkmv1.ConditionKeyReady
	recorded := r.recordedActiveKey(s)
	if len(s.dirs) <= 1 || !policyBehind(manager, recorded) {
		return nil
	}
	older := manager.Policy.ActiveKeyID
	what := fmt.Sprintf("CryptoPolicy on %s in use names key %s, older than the active key %s recorded here, which "+
		"replicas hold", s.urls[s.inUse], older, recorded)
	views := r.survey(ctx, s, false)
	if at := holding(views, policyNames(recorded)); len(at) > 0 {
		return r.waitForDCs(s, cond, dkmv1.ReasonReplicationLag, fmt.Sprintf(
			"%s; %s names %s: waiting for replication; the keys held are served, nothing is written",
			what, strings.Join(at, ", "), recorded))
	}
	if down := unanswered(views); len(down) > 0 {
		return r.waitForDCs(s, cond, dkmv1.ReasonDCUnavailable, fmt.Sprintf(
			"%s; %s does not answer and may hold the newer CryptoPolicy: the keys held are served, nothing is written (%s)",
			what, strings.Join(down, ", "), firstViewError(views)))
	}
	if !s.writer() {
		return r.waitForDCs(s, cond, dkmv1.ReasonReplicationLag, fmt.Sprintf(
			"%s; no DC names %s: waiting for the owner (%s) to activate it again; the keys held are served, nothing is written",
			what, recorded, s.obj.Status.Owner))
	}
	k := keyObject(manager, recorded)
	if err := r.commitKeys(ctx, s, "recorded active key "+recorded, copiesOf([]directory.KeyObject{k})); err != nil {
		return err
	}
	if err := s.dir.SetActiveKey(ctx, manager.DN, older, recorded, r.owner(s.obj)); err != nil {
		return r.keyWriteFailure(ctx, s, "activate the recorded key again", err)
	}
	manager.Policy.ActiveKeyID = recorded
	r.warn(s.obj, dkmv1.ReasonReplicationLag, "RotateKey", fmt.Sprintf(
		"%s; no DC named %s any more (the DC that activated it was lost): activated it again", what, recorded))
	return nil
}

func firstViewError(views []dcView) error {
	for _, v := range views {
		if v.err != nil {
			return v.err
		}
	}
	return nil
}

// waitForDCs reports a transient multi-DC wait on cond and looks again after CommitRetry.
func (r *DKMContainerReconciler) waitForDCs(s *scope, cond, reason, msg string) error {
	markFalse(s.obj, cond, reason, msg)
	r.warn(s.obj, reason, "CheckReplicas", msg)
	return &stopError{reason: reason, after: jitter(r.commitRetry())}
}

// pendingCopy is a key object whose new content must be on KeyCopies DCs.
type pendingCopy struct {
	id   string
	guid secdesc.GUID
	blob []byte
}

// commitKeys reads every configured DC and reports whether each key in want is held (same
// objectGUID, same blob) by at least spec.directory.minKeyCopies of them. When not, KeyReady
// says KeyNotReplicated naming the DCs that hold each, and the stop returned looks again
// after CommitRetry; nothing more is written until then. what says what is committed.
func (r *DKMContainerReconciler) commitKeys(ctx context.Context, s *scope, what string, want []pendingCopy) error {
	need := s.obj.Spec.Directory.KeyCopies()
	if need <= 1 || len(want) == 0 {
		return nil
	}
	views := r.survey(ctx, s, true)
	var short []string
	for _, k := range want {
		at := holding(views, hasKeyCopy(k.guid, k.blob))
		if len(at) < need {
			where := "no DC"
			if len(at) > 0 {
				where = strings.Join(at, ", ")
			}
			short = append(short, fmt.Sprintf("key %s is on %s", k.id, where))
		}
	}
	if len(short) == 0 {
		return nil
	}
	msg := fmt.Sprintf("%s: %s; it is not active, recorded or projected until %d of the %d configured DCs hold it "+
		"(spec.directory.minKeyCopies); waiting for replication", what, strings.Join(short, "; "), need, len(s.urls))
	if down := unanswered(views); len(down) > 0 {
		msg += fmt.Sprintf(" (%s does not answer)", strings.Join(down, ", "))
	}
	markFalse(s.obj, dkmv1.ConditionKeyReady, dkmv1.ReasonKeyNotReplicated, msg)
	return &stopError{reason: dkmv1.ReasonKeyNotReplicated, after: jitter(r.commitRetry())}
}

func (r *DKMContainerReconciler) commitRetry() time.Duration {
	if r.CommitRetry > 0 {
		return r.CommitRetry
	}
	return DefaultCommitRetry
}

// durabilityNote says in KeyReady's message how many DCs a new key needs.
func durabilityNote(obj *dkmv1.DKMContainer) string {
	need, urls := obj.Spec.Directory.KeyCopies(), len(obj.Spec.Directory.URLs)
	switch {
	case need > 1:
		return fmt.Sprintf("new keys are used only once %d of %d DCs hold them", need, urls)
	case urls == 1:
		return "new keys are held by 1 DC only until AD replicates them: list two or more DCs in spec.directory.urls for durable keys"
	default:
		return "new keys are used once 1 DC holds them (spec.directory.minKeyCopies: 1)"
	}
}

// conflictNote describes replication conflict objects for KeyReady and the event: what each is,
// what its ownership record says, and whether a replica may have held its key (status records
// it). They are never used and never deleted by the operator.
func conflictNote(s *scope, me directory.Owner) string {
	if s.obs == nil || len(s.obs.Conflicts) == 0 {
		return ""
	}
	recorded := map[string]bool{}
	for _, id := range knownKeyIDs(s.obj) {
		recorded[id] = true
	}
	var parts []string
	for _, c := range s.obs.Conflicts {
		owner := "no ownership record (not made by dkm-operator)"
		switch {
		case c.OwnedBy(me):
			owner = "made by this DKMContainer"
		case c.Owner != nil:
			owner = "made by " + c.Owner.Short()
		}
		part := fmt.Sprintf("%s (objectGUID %s, %s", c.DN, c.GUID, owner)
		if c.KeyID != "" {
			held := "never recorded as in use, so no replica held it through this DKMContainer"
			if recorded[strings.ToLower(c.KeyID)] {
				held = "recorded in status: replicas held it, data may need it"
			}
			part += fmt.Sprintf("; key %s, %s", c.KeyID, held)
		}
		parts = append(parts, part+")")
	}
	return fmt.Sprintf("%d replication conflict object(s) in %s, renamed by AD when two DCs accepted the same name "+
		"before replicating; never used as a key source and never deleted by the operator: %s",
		len(s.obs.Conflicts), s.obs.Container.DN, strings.Join(parts, "; "))
}
