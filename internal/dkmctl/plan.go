package dkmctl

import (
	"context"
	"fmt"
	"strings"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/controllers"
)

// runPlan: dkmctl plan NAME | -f FILE. Prints the AD changes the operator would make now, from a
// live read, and writes nothing; the hash is what spec.changeApproval Manual asks a person to
// approve (dkm.io/approve-changes). Exit 0 whether or not there are changes.
func runPlan(ctx context.Context, args []string, env Env) error {
	fs, c := newCommand("plan", env)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	obj, err := c.dkmContainer(ctx, pos)
	if err != nil {
		return err
	}
	p, err := c.protector(ctx, obj)
	if err != nil {
		return err
	}
	clusterID, err := c.planClusterID(ctx)
	if err != nil {
		return err
	}
	dir, done, err := c.directory(ctx, obj)
	if err != nil {
		return err
	}
	defer done()
	plan, err := controllers.PlanFor(ctx, dir, c.boundAs, obj, p, clusterID, env.Now())
	if err != nil {
		return err
	}
	fmt.Fprint(env.Stdout, formatPlan(obj, plan))
	return nil
}

// planClusterID is --cluster-id, or the cluster's, as the operator records it as owner.
func (c *common) planClusterID(ctx context.Context) (string, error) {
	if c.clusterID != "" {
		return c.clusterID, nil
	}
	kube, err := c.client()
	if err != nil {
		return "", fmt.Errorf("the cluster ID is read from the cluster (or give --cluster-id): %w", err)
	}
	return controllers.ClusterID(ctx, kube)
}

// formatPlan is the plan for people: one block per change, then the accounts the SDDL names.
func formatPlan(obj *dkmv1.DKMContainer, plan controllers.Plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "DKMContainer %s/%s, %s\n", obj.Namespace, obj.Name, obj.Spec.Path)
	if plan.Empty() {
		b.WriteString("No changes: AD is as the operator wants it.\n")
	} else {
		fmt.Fprintf(&b, "Plan %s: %s\n", plan.Hash(), plan.Summary())
		for i, ch := range plan.Changes {
			fmt.Fprintf(&b, "%2d. %s %s %s\n    why: %s\n", i+1, ch.Op, ch.Class, ch.DN, ch.Why)
			for _, set := range ch.Sets {
				fmt.Fprintf(&b, "    sets %s\n", set)
			}
			if ch.Found != "" {
				fmt.Fprintf(&b, "    found: %s\n", ch.Found)
			}
		}
	}
	for _, n := range plan.Notes() {
		fmt.Fprintf(&b, "Note: %s\n", n)
	}
	if !plan.Empty() {
		if accounts := plan.Accounts(); len(accounts) > 0 {
			fmt.Fprintf(&b, "Accounts in the SDDL: %s\n", strings.Join(accounts, "; "))
		}
		if obj.Spec.ChangeApproval == dkmv1.ChangeApprovalManual {
			fmt.Fprintf(&b, "To approve: kubectl annotate -n %s dkmcontainer %s %s=%s --overwrite\n",
				obj.Namespace, obj.Name, dkmv1.AnnotationApproveChanges, plan.Hash())
		}
	}
	return b.String()
}
