package dkmctl

import (
	"context"
	"fmt"
	"strings"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/audit"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// runVerify: dkmctl verify NAME [--allow PRINCIPAL]... Exit 3 when anyone outside the allowed
// key readers can read a key (or rewrite a key object's DACL), so it can run from cron or CI.
func runVerify(ctx context.Context, args []string, env Env) error {
	fs, c := newCommand("verify", env)
	var allow stringList
	fs.Var(&allow, "allow", "another principal allowed to read the keys (repeatable; DOMAIN\\name, UPN, SID)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	obj, err := c.dkmContainer(ctx, pos)
	if err != nil {
		return err
	}
	dir, done, err := c.directory(ctx, obj)
	if err != nil {
		return err
	}
	defer done()
	allowed, names, err := allowedReaders(ctx, dir, obj, append(allow, c.bindIdentity()...))
	if err != nil {
		return err
	}
	rep, err := audit.Readers(ctx, dir, obj.Spec.Path, allowed)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d key object(s); allowed key readers: the template principals (SYSTEM, BUILTIN\\Administrators, "+
		"Domain Admins, Administrator, Enterprise Admins) and %s\n", rep.Path, rep.KeyObjects, strings.Join(names, ", "))
	for _, r := range rep.Readers {
		fmt.Fprintf(&b, "  %s\n", r)
	}
	fmt.Fprint(env.Stdout, b.String())
	if denied := rep.Denied(); len(denied) > 0 {
		var who []string
		for _, r := range denied {
			who = append(who, r.Name)
		}
		return findingsError{fmt.Errorf("%d principal(s) outside the allowed key readers can read a key of %s: %s",
			len(denied), rep.Path, strings.Join(who, ", "))}
	}
	return nil
}

// bindIdentity is the operator's bind identity when the flags name it (else the bind Secret's
// username, read with the directory config).
func (c *common) bindIdentity() []string {
	if c.boundAs == "" {
		return nil
	}
	return []string{c.boundAs}
}

// allowedReaders resolves spec.serviceAccounts and the extra names into the key readers the
// operator allows.
func allowedReaders(ctx context.Context, dir *directory.Client, obj *dkmv1.DKMContainer, extra []string) (secdesc.KeyReaders, []string, error) {
	d, err := dir.Domain(ctx)
	if err != nil {
		return secdesc.KeyReaders{}, nil, err
	}
	k := secdesc.KeyReaders{Domain: d.SID, ForestRoot: d.ForestRootSID}
	var names []string
	for _, name := range append(append([]string(nil), obj.Spec.ServiceAccounts...), extra...) {
		p, err := dir.ResolvePrincipal(ctx, name)
		if err != nil {
			return k, nil, fmt.Errorf("allowed reader %s: %w", name, err)
		}
		k.Accounts = append(k.Accounts, p.SID)
		names = append(names, fmt.Sprintf("%s (%s)", name, p.SID))
	}
	return k, names, nil
}
