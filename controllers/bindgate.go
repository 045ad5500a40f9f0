package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
)

// Lockout-safe binding. Every bind AD refuses with a wrong password counts towards the bind
// account's lockout (often 5 within 30 minutes), and a locked-out account refuses even the
// right password. So a terminal connection failure (credentials refused, account locked out,
// TLS verification, an unusable directory configuration) is never retried on a timer: the
// reconciler remembers, per DKMContainer, what the refused attempt used (the bind and CA
// Secrets' resourceVersions and spec.directory) and does not bind again until one of them
// changes, the watch on the referenced Secrets bringing the change at once. The one exception
// is a locked-out account: it is tried once more, by itself, a lockout window after the refusal
// (an admin who unlocks it expects that), never more often. The directory client shares the
// memory across DKMContainers that bind with the same credentials (directory.Client.RetryBind).

// DefaultLockoutRetry is how long after AD reported the bind account locked out the operator
// tries once more by itself: AD's (and Samba's) default lockout duration and observation window
// are 30 minutes, after which AD has unlocked the account and forgotten the failed logons.
const DefaultLockoutRetry = 30 * time.Minute

// bindFailure is a terminal connection failure one DKMContainer saw.
type bindFailure struct {
	// inputs identifies what the refused attempt used (see bindInputs).
	inputs string
	// reason and message are DirectoryReachable's while the failure stands.
	reason, message string
	// at is when it was seen; a locked-out account is tried again lockoutRetry later.
	at time.Time
}

// bindFailures remembers the last terminal connection failure of each DKMContainer.
type bindFailures struct {
	mu sync.Mutex
	m  map[types.NamespacedName]bindFailure
}

func (b *bindFailures) get(key types.NamespacedName) (bindFailure, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f, ok := b.m[key]
	return f, ok
}

func (b *bindFailures) set(key types.NamespacedName, f bindFailure) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[types.NamespacedName]bindFailure{}
	}
	b.m[key] = f
}

func (b *bindFailures) forget(key types.NamespacedName) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, key)
}

// bindRetrier is implemented by *directory.Client: it lets the next operation bind again after
// a refusal remembered at or before seen.
type bindRetrier interface {
	RetryBind(seen time.Time)
}

// bindInputs identifies what a bind attempt uses: spec.directory and the versions of the bind
// and CA Secrets (a new resourceVersion, even with the same content, is a person's signal to
// try again). It holds no Secret data.
func bindInputs(obj *dkmv1.DKMContainer, bind, ca *corev1.Secret) string {
	spec, _ := json.Marshal(obj.Spec.Directory)
	sum := sha256.Sum256(spec)
	s := fmt.Sprintf("spec.directory %s; bind Secret %s@%s", hex.EncodeToString(sum[:8]), bind.Name, bind.ResourceVersion)
	if ca != nil {
		s += fmt.Sprintf("; CA Secret %s@%s", ca.Name, ca.ResourceVersion)
	}
	return s
}

// gateBind decides, before connecting, whether this reconcile may bind. It returns a non-nil
// error (a stop, with DirectoryReachable kept as the failure left it) while the inputs of the
// last terminal failure are unchanged; otherwise it returns the time of the failure to retry
// after (zero when there is none), for directory.Client.RetryBind.
func (r *DKMContainerReconciler) gateBind(s *scope) (retrySeen time.Time, err error) {
	f, ok := r.bindFailures.get(namespacedName(s.obj))
	if !ok {
		return time.Time{}, nil
	}
	if f.inputs == s.bindInputs {
		wait := r.untilLockoutRetry(f)
		if f.reason != dkmv1.ReasonAccountLockedOut || wait > 0 {
			markFalse(s.obj, dkmv1.ConditionDirectoryReachable, f.reason, f.message)
			return time.Time{}, &stopError{reason: f.reason, untilChange: true, after: wait}
		}
	}
	return f.at, nil
}

// untilLockoutRetry is how long until a locked-out account is tried again (0 when due, or for
// another reason).
func (r *DKMContainerReconciler) untilLockoutRetry(f bindFailure) time.Duration {
	if f.reason != dkmv1.ReasonAccountLockedOut {
		return 0
	}
	return max(f.at.Add(r.lockoutRetry()).Sub(r.now()), 0)
}

func (r *DKMContainerReconciler) lockoutRetry() time.Duration {
	if r.LockoutRetry > 0 {
		return r.LockoutRetry
	}
	return DefaultLockoutRetry
}

// connectionRefused reports whether err is a terminal failure to connect as the bind identity:
// a refused bind, a DC certificate that does not verify, an unusable configuration. Binding
// again without a change can only fail the same way, and a refused password counts towards the
// account's lockout.
func connectionRefused(err error) bool {
	var e *directory.Error
	if !errors.As(err, &e) || e.Kind == directory.KindTransient {
		return false
	}
	switch e.Op {
	case "bind", "dial", "starttls", "config":
	default:
		return false
	}
	// Several DCs, one refusing and another merely unreachable: the latter may answer later
	// (joined dial errors unwrap to each DC's), so that is left to the retry period.
	if j, ok := e.Err.(interface{ Unwrap() []error }); ok {
		for _, each := range j.Unwrap() {
			if directory.IsTransient(each) {
				return false
			}
		}
	}
	return true
}

// refuseBind records a terminal connection failure: DirectoryReachable says what happened and
// what to do, and the DKMContainer does not bind again until its inputs change (a locked-out
// account: or until lockoutRetry has passed).
func (r *DKMContainerReconciler) refuseBind(s *scope, cond, action, reason string, err error) error {
	msg := r.bindFailureMessage(s, reason, err)
	markFalse(s.obj, dkmv1.ConditionDirectoryReachable, reason, msg)
	if cond != dkmv1.ConditionDirectoryReachable {
		markFalse(s.obj, cond, reason, msg)
	}
	r.warn(s.obj, reason, action, msg)
	f := bindFailure{inputs: s.bindInputs, reason: reason, message: msg, at: r.now()}
	if f.inputs == "" {
		// Not reached through connect (which always sets the inputs): nothing to compare a
		// later attempt with, so fall back to the retry period.
		return stop(reason)
	}
	r.bindFailures.set(namespacedName(s.obj), f)
	return &stopError{reason: reason, untilChange: true, after: r.untilLockoutRetry(f)}
}

// bindFailureMessage says what AD refused and what a person must do; it names Secrets, never
// their data (directory errors carry no password).
func (r *DKMContainerReconciler) bindFailureMessage(s *scope, reason string, err error) string {
	spec := s.obj.Spec.Directory
	bind := fmt.Sprintf("Secret %s/%s", s.obj.Namespace, spec.BindSecretRef.Name)
	inputs := bind
	if spec.CABundleSecretRef != nil {
		inputs += fmt.Sprintf(", CA Secret %s/%s", s.obj.Namespace, spec.CABundleSecretRef.Name)
	}
	touch := fmt.Sprintf("kubectl annotate secret -n %s %s dkm.io/retry=\"$(date +%%s)\" --overwrite", s.obj.Namespace, spec.BindSecretRef.Name)
	switch reason {
	case dkmv1.ReasonInvalidCredentials:
		return fmt.Sprintf("AD refused the bind identity from %s: %v. Check its username and password (AD's data code "+
			"says why: 52e wrong password, 533 account disabled, 532 or 773 password expired or to be changed, 701 "+
			"account expired). So that a wrong password cannot lock the account out, the operator does not bind again "+
			"until %s or spec.directory changes; if you fixed the account in AD instead, touch the Secret: %s",
			bind, err, inputs, touch)
	case dkmv1.ReasonAccountLockedOut:
		return fmt.Sprintf("the bind account from %s is locked out in AD (too many failed logons): %v. A domain admin "+
			"must unlock it (Active Directory Users and Computers: Account, Unlock account; or Unlock-ADAccount) and "+
			"should find what sent wrong passwords. The operator binds again as soon as %s or spec.directory changes "+
			"(after unlocking, touch the Secret: %s), and otherwise once by itself at %s, after the lockout window "+
			"(%s), never more often",
			bind, err, inputs, touch, r.now().Add(r.lockoutRetry()).UTC().Format(time.RFC3339), r.lockoutRetry())
	case dkmv1.ReasonTLSError:
		return fmt.Sprintf("%v. Fix the CA bundle (spec.directory.caBundleSecretRef) or the DC's certificate; the "+
			"operator connects again when %s or spec.directory changes (after fixing the DC, touch the CA Secret)",
			err, inputs)
	default:
		return fmt.Sprintf("%v. Fix spec.directory or %s; the operator connects again when one of them changes", err, inputs)
	}
}
