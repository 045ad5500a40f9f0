package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// Keys of the bind Secret.
const (
	BindUsernameKey = "username"
	BindPasswordKey = "password"
)

// connect reads the bind and CA Secrets, binds to AD, learns the domain and resolves the
// service accounts. It owns DirectoryReachable. After a terminal bind failure it does not bind
// again until the Secrets or spec.directory change (bindgate.go).
func (r *DKMContainerReconciler) connect(ctx context.Context, s *scope) error {
	const cond = dkmv1.ConditionDirectoryReachable
	cfg, inputs, err := r.directoryConfig(ctx, s.obj)
	if err != nil {
		return r.failPhase(s, cond, "Connect", err)
	}
	s.bindInputs = inputs
	retrySeen, err := r.gateBind(s)
	if err != nil {
		return err
	}
	s.urls = cfg.URLs
	if s.dirs, err = r.openDCs(cfg); err != nil {
		return r.failPhase(s, cond, "Connect", err)
	}
	for _, d := range s.dirs {
		if rb, ok := d.(bindRetrier); ok && !retrySeen.IsZero() {
			rb.RetryBind(retrySeen)
		}
	}
	if err := r.selectWriteDC(ctx, s); err != nil {
		return r.failPhase(s, cond, "Connect", err)
	}
	s.dir = s.dirs[s.inUse]
	if err := s.readDomain(ctx, cfg.Username); err != nil {
		return r.failPhase(s, cond, "Connect", err)
	}
	r.bindFailures.forget(namespacedName(s.obj))
	msg := fmt.Sprintf("bound to %s as %s", s.domain.DNSName, cfg.Username)
	watchCfg := cfg
	if dc := s.dcInUse(); dc != "" {
		msg += "; reads and writes go to " + dc
		watchCfg.URLs = []string{s.urls[s.inUse]} // changes are watched where they are read
	}
	markTrue(s.obj, cond, dkmv1.ReasonReady, msg+r.watch(ctx, s, watchCfg))
	return nil
}

// readDomain learns, through s.dir, the domain (its SIDs, for the template and SDDL aliases)
// and the SID of the bind identity, which the template grants full control.
func (s *scope) readDomain(ctx context.Context, bindUser string) error {
	var err error
	if s.domain, err = s.dir.Domain(ctx); err != nil {
		return err
	}
	s.aliases = secdesc.DomainAliases(s.domain.SID, s.domain.ForestRootSID)
	operator, err := s.dir.ResolvePrincipal(ctx, bindUser)
	if err != nil {
		return fmt.Errorf("resolving the bind identity %s: %w", directory.QuoteName(bindUser), err)
	}
	s.operatorSID = operator.SID
	return nil
}

// configError is a problem with the referenced Secrets; reason is the condition reason.
type configError struct {
	reason string
	msg    string
}

func (e *configError) Error() string { return e.msg }

// resolveAccounts turns spec.serviceAccounts into SIDs and checks the template accepts them.
// Failures are AccessControlled's: the directory answered, but the accounts are wrong.
func (r *DKMContainerReconciler) resolveAccounts(ctx context.Context, s *scope) error {
	const cond = dkmv1.ConditionAccessControlled
	s.accounts = s.accounts[:0]
	for _, name := range s.obj.Spec.ServiceAccounts {
		// A well-known SID that stands for everybody is refused as such before any lookup:
		// most have no object in AD (Everyone, Anonymous Logon) and would otherwise read as
		// an account that does not exist.
		if sid, ok := sidText(name); ok {
			if why := secdesc.BroadPrincipal(sid); why != "" {
				return r.invalidAccount(s, name, sid, why)
			}
		}
		p, err := s.dir.ResolvePrincipal(ctx, name)
		if err != nil {
			if directory.KindOf(err) == directory.KindUnknownPrincipal {
				msg := fmt.Sprintf("service account %s does not exist in %s: check spec.serviceAccounts",
					directory.QuoteName(name), s.domain.DNSName)
				markFalse(s.obj, cond, dkmv1.ReasonUnknownAccount, msg)
				r.warn(s.obj, dkmv1.ReasonUnknownAccount, "ResolveServiceAccount", msg)
				return stop(dkmv1.ReasonUnknownAccount)
			}
			return r.failPhase(s, cond, "ResolveServiceAccount", fmt.Errorf("resolving service account %s: %w", directory.QuoteName(name), err))
		}
		if why := secdesc.BroadPrincipal(p.SID); why != "" {
			return r.invalidAccount(s, name, p.SID, why)
		}
		s.accounts = append(s.accounts, p.SID)
	}
	// The template refuses accounts that stand for everybody: say so before any write.
	if _, err := s.desiredDACL(); err != nil {
		msg := err.Error()
		markFalse(s.obj, cond, dkmv1.ReasonInvalidAccount, msg)
		r.warn(s.obj, dkmv1.ReasonInvalidAccount, "ResolveServiceAccount", msg)
		return stop(dkmv1.ReasonInvalidAccount)
	}
	return nil
}

// invalidAccount reports a service account that stands for everybody (InvalidServiceAccount).
func (r *DKMContainerReconciler) invalidAccount(s *scope, name string, sid secdesc.SID, why string) error {
	const cond = dkmv1.ConditionAccessControlled
	what := why
	if !strings.EqualFold(strings.TrimSpace(name), sid.String()) {
		what = fmt.Sprintf("%s (%s)", why, sid)
	}
	msg := fmt.Sprintf("service account %s is %s, which stands for everybody: granting it full control would "+
		"expose the keys; name the accounts the service runs as in spec.serviceAccounts", directory.QuoteName(name), what)
	markFalse(s.obj, cond, dkmv1.ReasonInvalidAccount, msg)
	r.warn(s.obj, dkmv1.ReasonInvalidAccount, "ResolveServiceAccount", msg)
	return stop(dkmv1.ReasonInvalidAccount)
}

// sidText parses a service account given as SID text (S-1-..., in any case).
func sidText(name string) (secdesc.SID, bool) {
	name = strings.TrimSpace(name)
	if len(name) <= 4 || !strings.EqualFold(name[:4], "S-1-") {
		return secdesc.SID{}, false
	}
	sid, err := secdesc.ParseSID("S-1-" + name[4:])
	return sid, err == nil
}

// directoryConfig builds the connection config from the spec and the referenced Secrets, and
// says what it was built from (bindInputs: no Secret data).
func (r *DKMContainerReconciler) directoryConfig(ctx context.Context, obj *dkmv1.DKMContainer) (directory.Config, string, error) {
	spec := obj.Spec.Directory
	cfg := directory.Config{
		URLs:           spec.URLs,
		AllowPlainLDAP: spec.InsecureAllowPlainLDAP,
	}
	if spec.DialTimeout != nil {
		cfg.DialTimeout = spec.DialTimeout.Duration
	}
	if spec.OperationTimeout != nil {
		cfg.OpTimeout = spec.OperationTimeout.Duration
	}

	bind, err := r.readSecret(ctx, obj.Namespace, spec.BindSecretRef.Name)
	if err != nil {
		return cfg, "", secretError(err, dkmv1.ReasonBindSecretMissing, "bind Secret", obj.Namespace, spec.BindSecretRef.Name)
	}
	cfg.Username = strings.TrimSpace(string(bind.Data[BindUsernameKey]))
	cfg.Password = string(bind.Data[BindPasswordKey])
	if cfg.Username == "" || cfg.Password == "" {
		return cfg, "", &configError{dkmv1.ReasonBindSecretInvalid, fmt.Sprintf(
			"bind Secret %s/%s needs non-empty %q and %q keys", obj.Namespace, spec.BindSecretRef.Name, BindUsernameKey, BindPasswordKey)}
	}

	var ca *corev1.Secret
	if ref := spec.CABundleSecretRef; ref != nil {
		if ca, err = r.readSecret(ctx, obj.Namespace, ref.Name); err != nil {
			return cfg, "", secretError(err, dkmv1.ReasonCABundleInvalid, "CA bundle Secret", obj.Namespace, ref.Name)
		}
		key := ref.Key
		if key == "" {
			key = "ca.crt"
		}
		cfg.CAPEM = ca.Data[key]
		if !strings.Contains(string(cfg.CAPEM), "-----BEGIN CERTIFICATE-----") {
			return cfg, "", &configError{dkmv1.ReasonCABundleInvalid, fmt.Sprintf(
				"CA bundle Secret %s/%s has no PEM certificate under key %q", obj.Namespace, ref.Name, key)}
		}
	}
	return cfg, bindInputs(obj, bind, ca), nil
}

func (r *DKMContainerReconciler) readSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	secret := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, secret)
	return secret, err
}

// secretError turns a failed Secret read into a configError (not found) or passes a transient
// API error through.
func secretError(err error, reason, what, namespace, name string) error {
	if apierrors.IsNotFound(err) {
		return &configError{reason, fmt.Sprintf("%s %s/%s not found", what, namespace, name)}
	}
	return fmt.Errorf("reading %s %s/%s: %w", what, namespace, name, err)
}

// failPhase records a phase's failure on its condition and decides between retrying with
// backoff (transient: the directory or API server is unavailable) and waiting for a person
// (terminal: credentials, rights, configuration). A transient directory error in any phase also
// marks DirectoryReachable False, since that is what it means.
func (r *DKMContainerReconciler) failPhase(s *scope, cond, action string, err error) error {
	var held *heldError
	if errors.As(err, &held) {
		// Under changeApproval Manual: reported on the phase's condition, announced once as an
		// event by gateChanges, looked at again after Retry or when the annotation changes.
		markFalse(s.obj, cond, dkmv1.ReasonChangesPendingApproval, heldMessage(s, held.op+" on "+held.dn))
		return stop(dkmv1.ReasonChangesPendingApproval)
	}
	var ce *configError
	if errors.As(err, &ce) {
		markFalse(s.obj, cond, ce.reason, ce.msg)
		r.warn(s.obj, ce.reason, action, ce.msg)
		return stop(ce.reason)
	}
	reason, transient := directoryReason(err)
	if !transient && connectionRefused(err) {
		return r.refuseBind(s, cond, action, reason, err)
	}
	if transient {
		// The DC in use may be the one that failed: choose again on the next reconcile.
		r.dcs.forget(s.urls)
	}
	markFalse(s.obj, cond, reason, err.Error())
	if transient && cond != dkmv1.ConditionDirectoryReachable {
		markFalse(s.obj, dkmv1.ConditionDirectoryReachable, reason, err.Error())
	}
	r.warn(s.obj, reason, action, err.Error())
	if transient {
		return err
	}
	return stop(reason)
}

// directoryReason maps a directory error to a DirectoryReachable reason and says whether it is
// transient.
func directoryReason(err error) (string, bool) {
	switch directory.KindOf(err) {
	case directory.KindInvalidCredentials:
		return dkmv1.ReasonInvalidCredentials, false
	case directory.KindAccountLocked:
		return dkmv1.ReasonAccountLockedOut, false
	case directory.KindTLS:
		return dkmv1.ReasonTLSError, false
	case directory.KindConfig:
		return dkmv1.ReasonInvalidConfig, false
	case directory.KindUnknownPrincipal:
		return dkmv1.ReasonUnknownAccount, false
	case directory.KindInsufficientAccess:
		return dkmv1.ReasonInsufficientRight, false
	case directory.KindTransient:
		return dkmv1.ReasonDirectoryDown, true
	default:
		if directory.IsTransient(err) {
			return dkmv1.ReasonDirectoryDown, true
		}
		return dkmv1.ReasonDirectoryError, false
	}
}
