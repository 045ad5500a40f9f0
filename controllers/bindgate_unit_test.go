package controllers

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
)

// bindingDirectory stands for a DC: every Domain call is a bind, answered with err.
type bindingDirectory struct {
	Directory
	binds *int
	err   func() error
}

func (d bindingDirectory) Domain(context.Context) (directory.Domain, error) {
	*d.binds++
	return directory.Domain{DNSName: "demo.local"}, d.err()
}

// ServerInfo is asked first when several URLs are configured: a refused bind happens there.
// ServerInfo and Domain share the DC's connection, so they make one bind between them: it is
// counted by Domain when ServerInfo succeeds. The DC says it is the PDC emulator, so no other
// DC is asked.
func (d bindingDirectory) ServerInfo(context.Context) (directory.ServerInfo, error) {
	const dc = "CN=NTDS Settings,CN=DC1,CN=Servers,DC=demo,DC=local"
	if err := d.err(); err != nil {
		*d.binds++
		return directory.ServerInfo{}, err
	}
	return directory.ServerInfo{ServiceName: dc, PDC: dc}, nil
}

func (d bindingDirectory) ResolvePrincipal(context.Context, string) (directory.Principal, error) {
	return directory.Principal{}, nil
}

type bindGateFixture struct {
	t     *testing.T
	c     client.Client
	r     *DKMContainerReconciler
	obj   *dkmv1.DKMContainer
	now   time.Time
	binds int
	err   error
}

const gatePassword = "Wr0ng-Passw0rd-Secret"

func newBindGateFixture(t *testing.T, err error) *bindGateFixture {
	t.Helper()
	s := unitScheme(t)
	f := &bindGateFixture{t: t, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), err: err}
	f.obj = &dkmv1.DKMContainer{
		ObjectMeta: metav1.ObjectMeta{Name: "vmm", Namespace: "vmm", Generation: 1},
		Spec: dkmv1.DKMContainerSpec{
			Directory: dkmv1.DirectorySpec{URLs: []string{"ldaps://dc1.demo.local"}, BindSecretRef: dkmv1.SecretReference{Name: "bind"}},
			Path:      "CN=VMMDKM,CN=System,DC=demo,DC=local", ServiceAccounts: []string{`DEMO\svc-vmm`},
		},
	}
	bind := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bind", Namespace: "vmm"},
		Data: map[string][]byte{BindUsernameKey: []byte("op@DEMO.LOCAL"), BindPasswordKey: []byte(gatePassword)}}
	f.c = fake.NewClientBuilder().WithScheme(s).WithObjects(f.obj, bind).Build()
	f.r = &DKMContainerReconciler{
		Client: f.c, APIReader: f.c, Retry: time.Minute, LockoutRetry: 30 * time.Minute,
		Now: func() time.Time { return f.now },
		Directories: func(directory.Config) (Directory, error) {
			return bindingDirectory{binds: &f.binds, err: func() error { return f.err }}, nil
		},
	}
	return f
}

// reconcile runs the phases once (the directory fails in connect) and returns the result.
func (f *bindGateFixture) reconcile() (time.Duration, bool) {
	f.t.Helper()
	s := newScope(f.obj.DeepCopy(), f.now)
	res, err := f.r.runPhases(context.Background(), s)
	f.obj.Status = s.obj.Status
	if err != nil {
		return 0, true // transient: backoff
	}
	return res.RequeueAfter, false
}

// connect runs only the connect phase, which must succeed.
func (f *bindGateFixture) connect() {
	f.t.Helper()
	s := newScope(f.obj.DeepCopy(), f.now)
	if err := f.r.connect(context.Background(), s); err != nil {
		f.t.Fatalf("connect: %v", err)
	}
	f.obj.Status = s.obj.Status
}

func (f *bindGateFixture) reason() string {
	if c := meta.FindStatusCondition(f.obj.Status.Conditions, dkmv1.ConditionDirectoryReachable); c != nil {
		return c.Reason
	}
	return ""
}

func (f *bindGateFixture) message() string {
	return meta.FindStatusCondition(f.obj.Status.Conditions, dkmv1.ConditionDirectoryReachable).Message
}

// touchSecret updates the bind Secret (a new resourceVersion) with the given password.
func (f *bindGateFixture) touchSecret(password string) {
	f.t.Helper()
	s := &corev1.Secret{}
	if err := f.c.Get(context.Background(), client.ObjectKey{Namespace: "vmm", Name: "bind"}, s); err != nil {
		f.t.Fatal(err)
	}
	s.Data[BindPasswordKey] = []byte(password)
	if err := f.c.Update(context.Background(), s); err != nil {
		f.t.Fatal(err)
	}
}

var (
	wrongPassword = &directory.Error{Op: "bind", DN: "op@DEMO.LOCAL", Kind: directory.KindInvalidCredentials, Code: 49,
		Err: errors.New("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 52e, v1db1")}
	lockedOut = &directory.Error{Op: "bind", DN: "op@DEMO.LOCAL", Kind: directory.KindAccountLocked, Code: 49,
		Err: errors.New("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 775, v1db1")}
)

func TestRefusedPasswordIsNotRetriedUntilTheSecretChanges(t *testing.T) {
	f := newBindGateFixture(t, wrongPassword)
	after, backoff := f.reconcile()
	if f.binds != 1 || f.reason() != dkmv1.ReasonInvalidCredentials || after != 0 || backoff {
		t.Fatalf("first reconcile: %d binds, reason %q, requeue after %s (backoff %v); want 1 bind, InvalidCredentials, no timer",
			f.binds, f.reason(), after, backoff)
	}
	msg := f.message()
	for _, want := range []string{"vmm/bind", "data 52e", "does not bind again", "kubectl annotate secret -n vmm bind"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, gatePassword) {
		t.Errorf("the password is in the message")
	}
	// A day of resyncs, retries and spec changes outside spec.directory: no bind.
	for i := range 100 {
		f.now = f.now.Add(15 * time.Minute)
		if i == 50 {
			f.obj.Spec.ServiceAccounts = append(f.obj.Spec.ServiceAccounts, `DEMO\svc-other`)
			f.obj.Generation++
		}
		if after, _ := f.reconcile(); after != 0 {
			t.Fatalf("reconcile %d asks for a timer (%s)", i, after)
		}
	}
	if f.binds != 1 || f.reason() != dkmv1.ReasonInvalidCredentials || f.message() != msg {
		t.Fatalf("after a day: %d binds, reason %q, message %q", f.binds, f.reason(), f.message())
	}
	// The Secret changes (even to the same wrong password: a person asked for a retry): one bind.
	f.touchSecret(gatePassword)
	f.reconcile()
	f.reconcile()
	if f.binds != 2 {
		t.Fatalf("after the Secret changed: %d binds, want 2", f.binds)
	}
	// spec.directory changes: one bind.
	f.obj.Spec.Directory.URLs = append(f.obj.Spec.Directory.URLs, "ldaps://dc2.demo.local")
	f.reconcile()
	f.reconcile()
	if f.binds != 3 {
		t.Fatalf("after spec.directory changed: %d binds, want 3", f.binds)
	}
	// Fixed: the bind succeeds, and the memory is gone.
	f.err = nil
	f.touchSecret("the-right-one")
	f.connect()
	if _, ok := f.r.bindFailures.get(namespacedName(f.obj)); ok || f.binds != 4 {
		t.Fatalf("after the fix: %d binds, failure still remembered: %v", f.binds, ok)
	}
}

func TestLockedOutAccountIsTriedOncePerLockoutWindow(t *testing.T) {
	f := newBindGateFixture(t, lockedOut)
	after, _ := f.reconcile()
	if f.binds != 1 || f.reason() != dkmv1.ReasonAccountLockedOut || after != 30*time.Minute {
		t.Fatalf("first: %d binds, reason %q, requeue after %s", f.binds, f.reason(), after)
	}
	for _, want := range []string{"locked out", "unlock", "2026-01-01T00:30:00Z"} {
		if !strings.Contains(f.message(), want) {
			t.Errorf("message %q lacks %q", f.message(), want)
		}
	}
	f.now = f.now.Add(29 * time.Minute)
	if after, _ := f.reconcile(); f.binds != 1 || after != time.Minute {
		t.Fatalf("29m later: %d binds, requeue after %s", f.binds, after)
	}
	f.now = f.now.Add(time.Minute)
	f.reconcile()
	f.reconcile()
	if f.binds != 2 || f.reason() != dkmv1.ReasonAccountLockedOut {
		t.Fatalf("after the window: %d binds (want 2), reason %q", f.binds, f.reason())
	}
	// Once per window, however often it is reconciled.
	for range 60 {
		f.now = f.now.Add(time.Minute)
		f.reconcile()
	}
	if f.binds != 4 {
		t.Fatalf("after two more windows: %d binds, want 4", f.binds)
	}
	// Unlocked by an admin, who touches the Secret: bound at once.
	f.err = nil
	f.touchSecret(gatePassword)
	f.connect()
	if f.binds != 5 || f.reason() == dkmv1.ReasonAccountLockedOut {
		t.Fatalf("after the touch: %d binds, reason %q", f.binds, f.reason())
	}
}

func TestUnavailableDirectoryIsRetriedWithBackoff(t *testing.T) {
	f := newBindGateFixture(t, &directory.Error{Op: "dial", Kind: directory.KindTransient, Err: errors.New("connection refused")})
	for range 3 {
		if _, backoff := f.reconcile(); !backoff {
			t.Fatalf("a transient failure is retried with backoff")
		}
	}
	if f.binds != 3 || f.reason() != dkmv1.ReasonDirectoryDown {
		t.Fatalf("%d attempts, reason %q", f.binds, f.reason())
	}
}

func TestReferencedSecrets(t *testing.T) {
	obj := &dkmv1.DKMContainer{Spec: dkmv1.DKMContainerSpec{
		Directory:     dkmv1.DirectorySpec{BindSecretRef: dkmv1.SecretReference{Name: "bind"}, CABundleSecretRef: &dkmv1.SecretKeyReference{Name: "ca"}},
		KeyProtection: dkmv1.KeyProtectionSpec{KEKSecretRef: &dkmv1.SecretReference{Name: "bind"}},
	}}
	if got := referencedSecrets(obj); strings.Join(got, ",") != "bind,ca" {
		t.Fatalf("referencedSecrets = %v", got)
	}
}
