package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/keys"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// A plan lists the AD writes a reconcile would make now, from what it read, without making
// them: `dkmctl plan` prints it, and spec.changeApproval Manual waits for a person to approve
// it by its hash (approval.go). The phases still decide and write; the plan predicts them, and
// under Manual the approval gate refuses any write the approved plan does not list, so a
// prediction that misses a write stops that write instead of letting it through.

// Write operations, as the Directory interface names them.
const (
	OpCreateContainer = "CreateContainer"
	OpSetOwner        = "SetOwner"
	OpReplaceDACL     = "ReplaceDACL"
	OpCreateManager   = "CreateManager"
	OpAddKey          = "AddKey"
	OpSetActiveKey    = "SetActiveKey"
	OpReplaceKeyBlob  = "ReplaceKeyBlob"
)

// Change is one planned AD write. It never holds key bytes.
type Change struct {
	Op string
	// Class is the written object's structural class.
	Class string
	// DN is the object written. A name that only the write decides (the objectGUID-derived
	// name of a DC Manager in a container not yet made, a new key's ID) is <new ...>.
	DN string
	// Sets lists what the write sets, as attribute: value (DACLs in SDDL).
	Sets []string
	// Why says what the change is for.
	Why string
	// Found is what AD holds now that the change replaces (a DACL's drift), if anything.
	Found string
}

// String is "<op> <class> <DN>; <why>[: <sets>]". A DN holds no unescaped "; " (spec.path's
// schema refuses it, and the names the operator adds hold none), so the line parses back
// (parseChange).
func (c Change) String() string {
	s := fmt.Sprintf("%s %s %s; %s", c.Op, c.Class, c.DN, c.Why)
	if len(c.Sets) > 0 {
		s += ": " + strings.Join(c.Sets, "; ")
	}
	if c.Found != "" {
		s += " (found: " + c.Found + ")"
	}
	return s
}

// Plan is the changes of one reconcile, in the order they are made.
type Plan struct {
	Changes []Change
	// state names the AD state the plan was read from (uSNChanged of every object read), so an
	// approval never applies to a plan made from a later state, even one that looks the same.
	state string
	// accounts names the SIDs the plan's SDDL grants, for people.
	accounts []string
	// notes say why the operator would stop short of writing (a reader, a key loss).
	notes []string
}

// Empty: nothing to write.
func (p Plan) Empty() bool { return len(p.Changes) == 0 }

// Lines is one line per change.
func (p Plan) Lines() []string {
	out := make([]string, 0, len(p.Changes))
	for _, c := range p.Changes {
		out = append(out, c.String())
	}
	return out
}

// Hash identifies the plan and the state it was made from: what a person approves.
func (p Plan) Hash() string {
	h := sha256.New()
	fmt.Fprintf(h, "dkm plan v1\nstate %s\n", p.state)
	for _, l := range p.Lines() {
		fmt.Fprintf(h, "%s\n", l)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Summary says in one line what the plan does.
func (p Plan) Summary() string {
	if p.Empty() {
		return "no change"
	}
	var whys []string
	for _, c := range p.Changes {
		if !slices.Contains(whys, c.Why) {
			whys = append(whys, c.Why)
		}
	}
	return fmt.Sprintf("%d change(s): %s", len(p.Changes), strings.Join(whys, "; "))
}

// Notes say why the plan stops where it does, when it does not reach a steady state.
func (p Plan) Notes() []string { return p.notes }

func (p *Plan) note(format string, args ...any) {
	p.notes = append(p.notes, fmt.Sprintf(format, args...))
}

// Accounts names the SIDs the plan's DACLs grant ("S-1-5-21-...-1105 = DKM\svc-vmm").
func (p Plan) Accounts() []string { return p.accounts }

// Status is the plan as status.changes shows it.
func (p Plan) Status() *dkmv1.PlannedChanges {
	return &dkmv1.PlannedChanges{Hash: p.Hash(), Summary: p.Summary(), Changes: p.Lines()}
}

func (p *Plan) add(c Change) { p.Changes = append(p.Changes, c) }

// Placeholders for names only the write decides.
const (
	newManager = "<new DC Manager GUID>"
	newKeyID   = "<new key ID>"
)

// planChanges predicts the writes of this reconcile from what it read (s.obs after Observe, the
// resolved accounts, the KEK): the same decisions the phases make, in their order, stopping
// where a phase would stop without writing (a key loss, two DC Managers, a reader).
func (r *DKMContainerReconciler) planChanges(s *scope, p keys.Protector) (Plan, error) {
	desired, err := s.desiredDACL()
	if err != nil {
		return Plan{}, err
	}
	plan := Plan{state: observedState(s.obs), accounts: s.accountNames()}
	named := secdesc.FormatDACL(desired, s.aliases)
	path := s.obj.Spec.Path
	if !s.obs.Exists {
		if s.obj.Spec.Provisioning == dkmv1.ProvisioningAdopt {
			plan.note("%s does not exist and is not created: provisioning Adopt (a domain admin creates it)", path)
			return plan, nil
		}
		lost := knownKeyIDs(s.obj)
		if len(lost) > 0 && !slices.Contains(lost, restoreAck(s.obj)) {
			plan.note("%s held keys status recorded and is gone (KeyLost): nothing is created until they are restored", path)
			return plan, nil
		}
		plan.add(Change{Op: OpCreateContainer, Class: "container", DN: path, Why: "create the DKM container",
			Sets: []string{"nTSecurityDescriptor: " + named, directory.OwnerAttribute + ": " + r.owner(s.obj).String()}})
		managerDN := placeholderDN(path, directory.ManagerPrefix+newManager)
		if len(lost) > 0 {
			r.planRestore(&plan, s, managerDN, nil, lost)
		} else {
			r.planFirstKey(&plan, s, managerDN, nil)
		}
		return plan, nil
	}
	d := r.roleDecision(s)
	switch {
	case d.change != nil:
		plan.add(Change{Op: OpSetOwner, Class: s.obs.Container.Class(), DN: s.obs.Container.DN,
			Why: "record this DKMContainer as the container's owner", Sets: []string{directory.OwnerAttribute + ": " + d.change.to.String()}})
	case d.refuse != "":
		plan.note("nothing is written: %s", d.msg)
		return plan, nil
	case d.role != dkmv1.RoleWriter:
		plan.note("this DKMContainer is a reader of %s (owner: %s): it never writes AD", s.obs.Container.DN, ownerText(d.owner))
		return plan, nil
	}
	if s.obj.Spec.AccessPolicy != dkmv1.AccessAudit && s.obs.Container.SD != nil {
		if diff := secdesc.DiffDACL(s.obs.Container.SD, desired, s.aliases); !diff.Empty() {
			plan.add(Change{Op: OpReplaceDACL, Class: s.obs.Container.Class(), DN: s.obs.Container.DN,
				Why: "repair the DACL to the DKM template", Sets: []string{"nTSecurityDescriptor: " + named}, Found: diff.String()})
		}
	}
	r.planKeys(&plan, s, p)
	return plan, nil
}

// planKeys predicts reconcileKeyRing's writes.
func (r *DKMContainerReconciler) planKeys(plan *Plan, s *scope, p keys.Protector) {
	if len(s.obs.Managers) > 1 {
		plan.note("%s holds %d DC Manager objects: no key is written until all but one are moved out", s.obs.Container.DN, len(s.obs.Managers))
		return
	}
	var m *directory.Manager
	if len(s.obs.Managers) == 1 {
		m = &s.obs.Managers[0]
	}
	present := func(id string) bool {
		return m != nil && slices.ContainsFunc(m.Keys, func(k directory.KeyObject) bool { return strings.EqualFold(k.ID, id) })
	}
	var lost []string
	for _, id := range knownKeyIDs(s.obj) {
		if !present(id) {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		if !slices.Contains(lost, restoreAck(s.obj)) {
			plan.note("key(s) %s, which status recorded, are not in AD (KeyLost): nothing is written until they are "+
				"restored or their loss acknowledged", strings.Join(lost, ", "))
			return
		}
		managerDN := placeholderDN(s.obs.Container.DN, directory.ManagerPrefix+newManager)
		if m != nil {
			managerDN = m.DN
		}
		r.planRestore(plan, s, managerDN, m, lost)
		return
	}
	if m != nil && m.Policy != nil && m.Policy.ActiveKeyID != "" && !present(m.Policy.ActiveKeyID) {
		plan.note("CryptoPolicy names key %s, which is not readable (KeyLost): nothing is written", m.Policy.ActiveKeyID)
		return
	}
	if m == nil || len(m.Keys) == 0 {
		container, err := keys.ObjectGUIDFromBytes(s.obs.Container.GUID.Bytes())
		if err != nil {
			return
		}
		managerDN := directory.ChildDN(s.obs.Container.DN, directory.ManagerPrefix+keys.ManagerGUID(container).String())
		if m != nil {
			managerDN = m.DN
		}
		r.planFirstKey(plan, s, managerDN, m)
		return
	}
	policy := directory.ChildDN(m.DN, directory.PolicyName)
	committed, pending := splitPending(m, knownKeyIDs(s.obj))
	switch {
	case m.Policy == nil || m.Policy.ActiveKeyID == "":
		plan.add(activate(policy, keyToActivate(s.obj, m).ID, "make a key active (no CryptoPolicy)"))
		return
	case len(pending) > 0 && pending[len(pending)-1].OwnedBy(r.owner(s.obj)):
		plan.add(activate(policy, pending[len(pending)-1].ID, "activate the rotated key"))
		return
	}
	if w, ok := p.(*keys.Wrapped); ok {
		for _, k := range committed {
			if w.SealedUnderRetired(k.Blob) {
				plan.add(Change{Op: OpReplaceKeyBlob, Class: "contact", DN: k.DN, Why: "re-wrap a key under the active KEK",
					Sets: []string{"thumbnailPhoto: the same key, wrapped under " + w.KEKs().Active().String()}})
			}
		}
	}
	active := keyObject(m, m.Policy.ActiveKeyID)
	if keys.RotationDue(active.Created, rotationPeriod(s.obj), s.now) {
		plan.add(newKey(m.DN, newKeyID, "rotate the key", newKeyValue))
		plan.add(activate(policy, newKeyID, "rotate the key"))
	}
}

// planFirstKey predicts createFirstKey: the DC Manager (unless it exists), the first key and
// CryptoPolicy naming it.
func (r *DKMContainerReconciler) planFirstKey(plan *Plan, s *scope, managerDN string, m *directory.Manager) {
	const why = "create the first key"
	firstID := newKeyID
	if m == nil {
		plan.add(r.createManager(s, managerDN, why))
	} else if mgr, err := keys.ObjectGUIDFromBytes(m.GUID.Bytes()); err == nil && (m.Policy == nil || m.Policy.ActiveKeyID == "") {
		firstID = keys.FirstKeyID(mgr).String()
	}
	plan.add(newKey(managerDN, firstID, why, newKeyValue))
	plan.add(activate(directory.ChildDN(managerDN, directory.PolicyName), firstID, why))
}

// planRestore predicts restoreLostKeys (the restore annotation names a lost key): each lost
// version written back with its ID, and CryptoPolicy when there is none. Whether a verified
// copy exists is decided when the reconcile reads the replica Secrets; without one, nothing is
// written and KeyLost says so.
func (r *DKMContainerReconciler) planRestore(plan *Plan, s *scope, managerDN string, m *directory.Manager, lost []string) {
	const why = "write lost keys back from the copy a replica Secret or the operator holds"
	if m == nil {
		plan.add(r.createManager(s, managerDN, why))
	}
	for _, id := range lost {
		plan.add(newKey(managerDN, id, why, "the lost key, as status's fingerprint recorded it (sealed for this container)"))
	}
	if m == nil || m.Policy == nil || m.Policy.ActiveKeyID == "" {
		plan.add(activate(placeholderDN(managerDN, directory.PolicyName), strings.ToLower(s.obj.Status.ActiveKeyID), why))
	}
}

// createManager is the add of the DC Manager, with the ownership record in the add.
func (r *DKMContainerReconciler) createManager(s *scope, managerDN, why string) Change {
	return Change{Op: OpCreateManager, Class: "container", DN: managerDN, Why: why,
		Sets: []string{"nTSecurityDescriptor: inherited ACEs only", directory.OwnerAttribute + ": " + r.owner(s.obj).String()}}
}

// newKeyValue describes a freshly generated key in a plan (never its bytes).
const newKeyValue = "a new 256-bit key (as spec.keyProtection says)"

// newKey is the add of key contact id under managerDN; value says what thumbnailPhoto holds.
func newKey(managerDN, id, why, value string) Change {
	return Change{Op: OpAddKey, Class: "contact", DN: placeholderDN(managerDN, id), Why: why,
		Sets: []string{"l: " + id, "thumbnailPhoto: " + value, "nTSecurityDescriptor: inherited ACEs only"}}
}

// placeholderDN is CN=<cn>,<parent>; a cn holding a placeholder is written unescaped, so that
// people read it and the approval gate recognises it (dnMatches).
func placeholderDN(parent, cn string) string {
	if strings.Contains(cn, "<new ") {
		return "CN=" + cn + "," + parent
	}
	return directory.ChildDN(parent, cn)
}

func activate(policyDN, id, why string) Change {
	return Change{Op: OpSetActiveKey, Class: "contact", DN: policyDN, Why: why, Sets: []string{"displayName: " + id}}
}

func ownerText(o directory.Owner) string {
	if o.IsZero() {
		return "none: made outside dkm-operator"
	}
	return o.Short()
}

// observedState is every uSNChanged the observation read, in order.
func observedState(obs *directory.Observation) string {
	if obs == nil || !obs.Exists {
		return "absent"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s@%d", obs.Container.GUID, obs.Container.USNChanged)
	for _, m := range obs.Managers {
		fmt.Fprintf(&b, " %s@%d", m.GUID, m.USNChanged)
		if m.Policy != nil {
			fmt.Fprintf(&b, " %s@%d", m.Policy.GUID, m.Policy.USNChanged)
		}
		for _, k := range m.Keys {
			fmt.Fprintf(&b, " %s@%d", k.GUID, k.USNChanged)
		}
	}
	return b.String()
}

// accountNames names the accounts the template grants beyond the built-in ones: the service
// accounts (as spec.serviceAccounts names them) and the operator's bind identity.
func (s *scope) accountNames() []string {
	var out []string
	for i, sid := range s.accounts {
		if i < len(s.obj.Spec.ServiceAccounts) {
			out = append(out, fmt.Sprintf("%s = %s", sid, strings.TrimSpace(s.obj.Spec.ServiceAccounts[i])))
		}
	}
	if !s.operatorSID.IsZero() {
		out = append(out, fmt.Sprintf("%s = the operator's bind identity", s.operatorSID))
	}
	return out
}
