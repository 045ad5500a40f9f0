package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"sigs.k8s.io/controller-runtime/pkg/client"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/keys"
)

// DirectoryConfig is the connection a DKMContainer's spec and referenced Secrets describe, read
// exactly as the operator reads them (for dkmctl, which talks to the same AD as the operator).
func DirectoryConfig(ctx context.Context, secrets client.Reader, obj *dkmv1.DKMContainer) (directory.Config, error) {
	cfg, _, err := (&DKMContainerReconciler{APIReader: secrets}).directoryConfig(ctx, obj)
	return cfg, err
}

// Protector is the key protection of a DKMContainer (its KEK Secret when Wrapped), as the
// operator builds it.
func Protector(ctx context.Context, secrets client.Reader, obj *dkmv1.DKMContainer) (keys.Protector, error) {
	return (&DKMContainerReconciler{APIReader: secrets}).protector(ctx, obj)
}

// PlanFor is the plan the operator would carry out now for obj (dkmctl plan): it reads AD as a
// reconcile does (the domain, the bind identity, the service accounts, the container subtree)
// and writes nothing. bindUser is the identity dir is bound as.
func PlanFor(ctx context.Context, dir Directory, bindUser string, obj *dkmv1.DKMContainer, p keys.Protector, clusterID string, now time.Time) (Plan, error) {
	r := &DKMContainerReconciler{ClusterID: clusterID}
	s := newScope(obj.DeepCopy(), now)
	s.dir = dir
	if err := s.readDomain(ctx, bindUser); err != nil {
		return Plan{}, err
	}
	if err := r.resolveAccounts(ctx, s); err != nil {
		return Plan{}, conditionError(s, dkmv1.ConditionAccessControlled, err)
	}
	if err := directory.ValidateDN(obj.Spec.Path); err != nil {
		return Plan{}, fmt.Errorf("spec.path is not a valid DN: %w", err)
	}
	var err error
	if s.obs, err = dir.Observe(ctx, obj.Spec.Path); err != nil {
		return Plan{}, err
	}
	return r.planChanges(s, p)
}

// conditionError turns a phase's stop into the message its condition got.
func conditionError(s *scope, cond string, err error) error {
	var stop *stopError
	if errors.As(err, &stop) {
		if c := meta.FindStatusCondition(s.obj.Status.Conditions, cond); c != nil {
			return fmt.Errorf("%s: %s", c.Reason, c.Message)
		}
	}
	return err
}
