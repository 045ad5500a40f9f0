package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// spec.changeApproval Manual: the operator plans (plan.go), shows the plan and its hash in
// status.changes.pending, and writes only once the DKMContainer is annotated with that hash.
// Enforcement is at the write boundary: every write of the reconcile goes through an
// approvalGate that lets through only what the approved plan lists, so nothing reaches AD
// without approval even where the plan and the phases disagree.

// manual: this DKMContainer's AD changes wait for approval.
func manual(obj *dkmv1.DKMContainer) bool {
	return obj.Spec.ChangeApproval == dkmv1.ChangeApprovalManual
}

// gateChanges runs after the container was read and before anything is written. Under Manual it
// plans, decides whether the plan is approved (the annotation names its hash, or every change
// continues the approved plan status records), records pending or approved plans in status, and
// puts the approval gate in front of the DC writes go to. Unapproved, s.changesHeld makes the
// phases report and serve what exists instead of writing.
func (r *DKMContainerReconciler) gateChanges(ctx context.Context, s *scope) error {
	if !manual(s.obj) {
		s.obj.Status.Changes = nil
		return nil
	}
	protector, err := r.protector(ctx, s.obj)
	if err != nil {
		protector = nil // the key phase reports the KEK; a re-wrap is then not planned
	}
	plan, err := r.planChanges(s, protector)
	if err != nil {
		return err
	}
	gate := &approvalGate{Directory: s.dir}
	s.dir = gate
	var approved *dkmv1.PlannedChanges
	if c := s.original.Status.Changes; c != nil {
		approved = c.Approved
	}
	switch {
	case plan.Empty():
		s.obj.Status.Changes = nil
		return nil
	case strings.EqualFold(strings.TrimSpace(s.obj.Annotations[dkmv1.AnnotationApproveChanges]), plan.Hash()):
		approved = plan.Status()
	case !continues(plan, approved):
		s.changesHeld = true
		s.obj.Status.Changes = &dkmv1.ChangesStatus{Pending: plan.Status(), Approved: approved}
		if c := s.original.Status.Changes; c == nil || c.Pending == nil || c.Pending.Hash != plan.Hash() {
			r.normal(s.obj, dkmv1.ReasonChangesPendingApproval, "PlanChanges", fmt.Sprintf(
				"%s; approve by annotating %s=%s", plan.Summary(), dkmv1.AnnotationApproveChanges, plan.Hash()))
		}
		return nil
	}
	gate.allowed = plan.Changes
	s.obj.Status.Changes = &dkmv1.ChangesStatus{Approved: approved}
	return nil
}

// changesCarriedOut forgets the approved plan once a reconcile made every change of it (every
// phase finished): a later plan needs its own approval.
func (s *scope) changesCarriedOut() {
	if c := s.obj.Status.Changes; c != nil && c.Pending == nil {
		s.obj.Status.Changes = nil
	}
}

// continues: every change of plan is an operation the approved plan listed on the same object
// (what is left of it after a reconcile that waited, for replication say, before its last
// writes: the DC Manager then has its name, where the approved plan had a placeholder).
func continues(plan Plan, approved *dkmv1.PlannedChanges) bool {
	if approved == nil {
		return false
	}
	for _, c := range plan.Changes {
		if !slices.ContainsFunc(approved.Changes, func(line string) bool {
			op, dn, ok := parseChange(line)
			return ok && op == c.Op && dnMatches(dn, c.DN)
		}) {
			return false
		}
	}
	return true
}

// parseChange reads the operation and DN back from a Change's line.
func parseChange(line string) (op, dn string, ok bool) {
	f := strings.SplitN(line, " ", 3)
	if len(f) < 3 {
		return "", "", false
	}
	dn, _, ok = strings.Cut(f[2], "; ")
	return f[0], dn, ok
}

// heldMessage tells a person what waits and how to approve it.
func heldMessage(s *scope, what string) string {
	msg := fmt.Sprintf("spec.changeApproval is Manual: %s waits for approval", what)
	if c := s.obj.Status.Changes; c != nil && c.Pending != nil {
		msg += fmt.Sprintf(" (%s); review status.changes.pending (or dkmctl plan) and annotate %s=%s",
			c.Pending.Summary, dkmv1.AnnotationApproveChanges, c.Pending.Hash)
	}
	return msg
}

// heldError is a write the approval gate refused: not approved yet, or not in the approved plan.
type heldError struct {
	op, dn string
}

func (e *heldError) Error() string {
	return fmt.Sprintf("%s on %s is not in an approved plan (spec.changeApproval Manual): nothing was written", e.op, e.dn)
}

// approvalGate passes reads through and lets a write reach AD only when an approved change
// names the same operation on the same object.
type approvalGate struct {
	Directory
	allowed []Change
}

func (g *approvalGate) permit(op, dn string) error {
	for _, c := range g.allowed {
		if c.Op == op && dnMatches(c.DN, dn) {
			return nil
		}
	}
	return &heldError{op: op, dn: dn}
}

func (g *approvalGate) CreateContainer(ctx context.Context, dn string, sd *secdesc.SecurityDescriptor, owner directory.Owner) (directory.Object, error) {
	if err := g.permit(OpCreateContainer, dn); err != nil {
		return directory.Object{}, err
	}
	return g.Directory.CreateContainer(ctx, dn, sd, owner)
}

func (g *approvalGate) SetOwner(ctx context.Context, dn, from string, to directory.Owner) error {
	if err := g.permit(OpSetOwner, dn); err != nil {
		return err
	}
	return g.Directory.SetOwner(ctx, dn, from, to)
}

func (g *approvalGate) ReplaceDACL(ctx context.Context, dn string, sd *secdesc.SecurityDescriptor) error {
	if err := g.permit(OpReplaceDACL, dn); err != nil {
		return err
	}
	return g.Directory.ReplaceDACL(ctx, dn, sd)
}

func (g *approvalGate) CreateManager(ctx context.Context, containerDN, managerGUID string, owner directory.Owner) (directory.Object, error) {
	if err := g.permit(OpCreateManager, directory.ChildDN(containerDN, directory.ManagerPrefix+managerGUID)); err != nil {
		return directory.Object{}, err
	}
	return g.Directory.CreateManager(ctx, containerDN, managerGUID, owner)
}

func (g *approvalGate) AddKey(ctx context.Context, managerDN, keyID string, blob []byte, owner directory.Owner) (directory.KeyObject, error) {
	if err := g.permit(OpAddKey, directory.ChildDN(managerDN, keyID)); err != nil {
		return directory.KeyObject{}, err
	}
	return g.Directory.AddKey(ctx, managerDN, keyID, blob, owner)
}

func (g *approvalGate) SetActiveKey(ctx context.Context, managerDN, fromID, toID string, owner directory.Owner) error {
	if err := g.permit(OpSetActiveKey, directory.ChildDN(managerDN, directory.PolicyName)); err != nil {
		return err
	}
	return g.Directory.SetActiveKey(ctx, managerDN, fromID, toID, owner)
}

func (g *approvalGate) ReplaceKeyBlob(ctx context.Context, keyDN string, blob []byte) error {
	if err := g.permit(OpReplaceKeyBlob, keyDN); err != nil {
		return err
	}
	return g.Directory.ReplaceKeyBlob(ctx, keyDN, blob)
}

// DeleteOwned is never planned: deleting the DKMContainer with deletionPolicy Delete is the
// person's decision, and the deletion path does not go through the gate.
func (g *approvalGate) DeleteOwned(_ context.Context, root secdesc.GUID, _ directory.Owner) ([]string, error) {
	return nil, &heldError{op: "DeleteOwned", dn: root.String()}
}

// dnMatches compares DNs RDN by RDN, case-insensitively; a planned RDN holding a placeholder
// ("CN=DC Manager <new DC Manager GUID>", "CN=<new key ID>") matches any RDN that starts the same.
func dnMatches(planned, dn string) bool {
	a, b := splitDN(planned), splitDN(dn)
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if j := strings.Index(a[i], "<new "); j >= 0 {
			if !strings.HasPrefix(b[i], a[i][:j]) {
				return false
			}
			continue
		}
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// splitDN splits at unescaped commas, each RDN trimmed and lower-cased.
func splitDN(dn string) []string {
	var out []string
	start := 0
	for i := 0; i < len(dn); i++ {
		switch dn[i] {
		case '\\':
			i++
		case ',':
			out = append(out, strings.ToLower(strings.TrimSpace(dn[start:i])))
			start = i + 1
		}
	}
	return append(out, strings.ToLower(strings.TrimSpace(dn[start:])))
}
