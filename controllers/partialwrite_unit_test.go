package controllers

import (
	"context"
	"crypto/rand"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/keys"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// Issue 12: the reconciler's partial-write paths, driven through Reconcile with a fake
// Kubernetes client and the in-memory directory of fakedirectory_test.go. Every case asserts
// exact write-call counts and the objects left in AD, so a regression in either fails it.

const pwPath = "CN=VMMDKM,CN=System,DC=demo,DC=local"

var pwT0 = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

// pwClock is the reconcilers' and the directory's clock (whenCreated).
type pwClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *pwClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *pwClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newPWClock() *pwClock { return &pwClock{t: pwT0} }

func newKEK(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, keys.KEKSize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// pwCluster is one cluster: its API server (a fake client), one DKMContainer vmm/vmm and the
// reconciler, talking to AD through dir.
type pwCluster struct {
	t   *testing.T
	dir *fakeAD
	r   *DKMContainerReconciler
	rec *events.FakeRecorder
	key types.NamespacedName
	kek map[string][]byte
}

type pwOptions struct {
	cluster string            // ClusterID; "test" when empty
	uid     string            // the DKMContainer's UID; "uid-<cluster>" when empty
	kek     map[string][]byte // the KEK Secret's data; a fresh KEK when nil
	mutate  func(*dkmv1.DKMContainer)
	// managedFields are returned on the DKMContainer, as the API server would keep them: the
	// fake client records none for a status apply (status trust, keyrecovery.go, reads them).
	managedFields []metav1.ManagedFieldsEntry
}

func newPWCluster(t *testing.T, dir *fakeAD, clock *pwClock, opt pwOptions) *pwCluster {
	t.Helper()
	if opt.cluster == "" {
		opt.cluster = "test"
	}
	if opt.uid == "" {
		opt.uid = "uid-" + opt.cluster
	}
	if opt.kek == nil {
		opt.kek = map[string][]byte{"kek": newKEK(t)}
	}
	s := unitScheme(t)
	obj := &dkmv1.DKMContainer{
		ObjectMeta: metav1.ObjectMeta{Name: "vmm", Namespace: "vmm", UID: types.UID(opt.uid), Generation: 1},
		Spec: dkmv1.DKMContainerSpec{
			Directory:       dkmv1.DirectorySpec{URLs: []string{"ldaps://dc1.demo.local"}, BindSecretRef: dkmv1.SecretReference{Name: "bind"}},
			Path:            pwPath,
			Provisioning:    dkmv1.ProvisioningCreate,
			ServiceAccounts: []string{`DEMO\svc-vmm`},
			AccessPolicy:    dkmv1.AccessEnforce,
			KeyProtection:   dkmv1.KeyProtectionSpec{Mode: dkmv1.KeyWrapped, KEKSecretRef: &dkmv1.SecretReference{Name: "kek"}},
			DeletionPolicy:  dkmv1.DeletionRetain,
		},
	}
	if opt.mutate != nil {
		opt.mutate(obj)
	}
	bind := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bind", Namespace: "vmm"},
		Data: map[string][]byte{BindUsernameKey: []byte(`DEMO\op`), BindPasswordKey: []byte("Passw0rd!")}}
	kek := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kek", Namespace: "vmm"}, Data: opt.kek}
	builder := fake.NewClientBuilder().WithScheme(s).
		WithStatusSubresource(&dkmv1.DKMContainer{}).
		WithObjects(obj, bind, kek)
	if opt.managedFields != nil {
		builder = builder.WithInterceptorFuncs(interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, o client.Object, opts ...client.GetOption) error {
				if err := c.Get(ctx, key, o, opts...); err != nil {
					return err
				}
				if dc, ok := o.(*dkmv1.DKMContainer); ok {
					dc.ManagedFields = slices.Clone(opt.managedFields)
				}
				return nil
			},
		})
	}
	kube := builder.Build()
	rec := events.NewFakeRecorder(1000)
	r := &DKMContainerReconciler{
		Client:    kube,
		APIReader: kube,
		Recorder:  rec,
		Directories: func(cfg directory.Config) (Directory, error) {
			if cfg.Username != `DEMO\op` || cfg.Password != "Passw0rd!" {
				t.Errorf("directory config from the bind Secret: username %q", cfg.Username)
			}
			return dir, nil
		},
		Keys:      NewKeyStore(),
		Metrics:   NewMetrics(nil),
		ClusterID: opt.cluster,
		Now:       clock.now,
	}
	return &pwCluster{t: t, dir: dir, r: r, rec: rec, key: types.NamespacedName{Namespace: "vmm", Name: "vmm"}, kek: opt.kek}
}

func (c *pwCluster) reconcile() (ctrl.Result, error) {
	c.t.Helper()
	res, err := c.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: c.key})
	return res, err
}

// mustReconcile expects a reconcile that ends well (nil error, a resync).
func (c *pwCluster) mustReconcile() {
	c.t.Helper()
	res, err := c.reconcile()
	if err != nil {
		c.t.Fatalf("reconcile: %v; status: %s", err, c.conditions())
	}
	if res.RequeueAfter <= 0 {
		c.t.Fatalf("reconcile: no resync requeued: %+v", res)
	}
}

func (c *pwCluster) get() *dkmv1.DKMContainer {
	c.t.Helper()
	obj := &dkmv1.DKMContainer{}
	if err := c.r.Get(context.Background(), c.key, obj); err != nil {
		c.t.Fatal(err)
	}
	return obj
}

func (c *pwCluster) cond(condType string) metav1.Condition {
	c.t.Helper()
	if got := meta.FindStatusCondition(c.get().Status.Conditions, condType); got != nil {
		return *got
	}
	return metav1.Condition{}
}

func (c *pwCluster) conditions() string {
	var b strings.Builder
	for _, cd := range c.get().Status.Conditions {
		b.WriteString(cd.Type + "=" + string(cd.Status) + "/" + cd.Reason + " ")
		if cd.Type == dkmv1.ConditionReady {
			b.WriteString("(" + cd.Message + ") ")
		}
	}
	return b.String()
}

// expectCond checks a condition's status and reason.
func (c *pwCluster) expectCond(condType string, status metav1.ConditionStatus, reason string) metav1.Condition {
	c.t.Helper()
	got := c.cond(condType)
	if got.Status != status || got.Reason != reason {
		c.t.Fatalf("%s = %s/%s (%q), want %s/%s; all: %s", condType, got.Status, got.Reason, got.Message, status, reason, c.conditions())
	}
	return got
}

// eventReasons drains the recorder: the reasons of the events emitted since the last call.
func (c *pwCluster) eventReasons() []string {
	var out []string
	for {
		select {
		case e := <-c.rec.Events:
			if parts := strings.SplitN(e, " ", 3); len(parts) >= 2 {
				out = append(out, parts[1])
			}
		default:
			return out
		}
	}
}

// owner is this cluster's ownership record.
func (c *pwCluster) owner() directory.Owner { return c.r.owner(c.get()) }

// protector is this cluster's key protection (for seeding keys another writer adds).
func (c *pwCluster) protector() keys.Protector {
	c.t.Helper()
	ring, err := keys.ParseKEKSecret(c.kek)
	if err != nil {
		c.t.Fatal(err)
	}
	p, err := keys.NewProtector(keys.ModeWrapped, ring)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// expectWriteCalls compares the calls of every write method (failed ones included) with want,
// exactly: a write method missing from want must not have been called.
func expectWriteCalls(t *testing.T, what string, dir *fakeAD, want map[string]int) {
	t.Helper()
	if want == nil {
		want = map[string]int{}
	}
	if got := dir.writeCalls(); !maps.Equal(got, want) {
		t.Fatalf("%s: write calls %v, want %v", what, got, want)
	}
}

// expectLayout checks the DKM objects in pwPath: managers DC Managers, and in the only one
// (when managers is 1) nKeys keys and CryptoPolicy present or not. It returns the layout.
func expectLayout(t *testing.T, what string, dir *fakeAD, managers, nKeys int, policy bool) adLayout {
	t.Helper()
	l := dir.layout(pwPath)
	if len(l.Managers) != managers {
		t.Fatalf("%s: %d DC Managers %v, want %d", what, len(l.Managers), l.Managers, managers)
	}
	if len(l.Foreign) != 0 {
		t.Fatalf("%s: foreign objects %v", what, l.Foreign)
	}
	if managers != 1 {
		return l
	}
	m := l.Managers[0]
	if len(l.Keys[m]) != nKeys {
		t.Fatalf("%s: keys %v, want %d", what, l.Keys[m], nKeys)
	}
	if _, ok := l.Policy[m]; ok != policy {
		t.Fatalf("%s: CryptoPolicy present = %v (%q), want %v", what, ok, l.Policy[m], policy)
	}
	return l
}

// firstKeyID is the derived ID of the first key under the one DC Manager in pwPath.
func firstKeyID(t *testing.T, dir *fakeAD) string {
	t.Helper()
	obs := dir.tree.observe(pwPath)
	if len(obs.Managers) != 1 {
		t.Fatalf("%d DC Managers", len(obs.Managers))
	}
	mgr, err := keys.ObjectGUIDFromBytes(obs.Managers[0].GUID.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return keys.FirstKeyID(mgr).String()
}

// expectOneKey checks the end state of a first key: one DC Manager named after the container,
// one key with the derived first ID, CryptoPolicy naming it, status and KeyStore agreeing.
func expectOneKey(t *testing.T, c *pwCluster) string {
	t.Helper()
	l := expectLayout(t, "end state", c.dir, 1, 1, true)
	m := l.Managers[0]
	id := firstKeyID(t, c.dir)
	if got := l.Keys[m]; !slices.Equal(got, []string{id}) {
		t.Fatalf("keys %v, want the derived first key %s", got, id)
	}
	if l.Policy[m] != id {
		t.Fatalf("CryptoPolicy names %q, want %s", l.Policy[m], id)
	}
	container, _ := c.dir.lookup(pwPath)
	cg, err := keys.ObjectGUIDFromBytes(container.GUID.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if want := directory.ChildDN(pwPath, directory.ManagerPrefix+keys.ManagerGUID(cg).String()); !strings.EqualFold(m, want) {
		t.Fatalf("DC Manager %s, want the derived %s", m, want)
	}
	c.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionTrue, dkmv1.ReasonReady)
	st := c.get().Status
	if st.ActiveKeyID != id || len(st.Keys) != 1 {
		t.Fatalf("status: active %q, %d versions; want %s, 1", st.ActiveKeyID, len(st.Keys), id)
	}
	if ring := c.r.Keys.Get(c.key); ring == nil || ring.ActiveID().String() != id {
		t.Fatalf("KeyStore holds %v, want key %s", ring, id)
	}
	return id
}

// The first key is three adds (DC Manager, key, CryptoPolicy). Whichever fails, or succeeds
// with its answer lost, the next reconcile finishes from what AD holds: one DC Manager, one
// key with the derived ID, CryptoPolicy naming it, and nothing added twice.
func TestPartialWriteFirstKey(t *testing.T) {
	cases := []struct {
		name   string
		inject func(*fakeAD)
		// after the failed reconcile
		wantCalls1         map[string]int
		managers, nKeys    int
		policy             bool
		wantReason         string // KeyReady's (False)
		wantContainerReady metav1.ConditionStatus
		// after the next reconcile
		wantCalls2 map[string]int
	}{
		{
			name:       "DC Manager added, key add fails",
			inject:     func(d *fakeAD) { d.failOn("AddKey", 1, transientErr("add", "key")) },
			wantCalls1: map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1},
			managers:   1, nKeys: 0, policy: false,
			wantReason: dkmv1.ReasonDirectoryDown,
			wantCalls2: map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 2, "SetActiveKey": 1},
		},
		{
			name:       "key added, CryptoPolicy add fails",
			inject:     func(d *fakeAD) { d.failOn("SetActiveKey", 1, transientErr("add", "CryptoPolicy")) },
			wantCalls1: map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1, "SetActiveKey": 1},
			managers:   1, nKeys: 1, policy: false,
			wantReason: dkmv1.ReasonDirectoryDown,
			// The key is adopted (CryptoPolicy pointed at it), never a second one added.
			wantCalls2: map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1, "SetActiveKey": 2},
		},
		{
			name:       "container added, DC Manager add fails",
			inject:     func(d *fakeAD) { d.failOn("CreateManager", 1, transientErr("add", "manager")) },
			wantCalls1: map[string]int{"CreateContainer": 1, "CreateManager": 1},
			managers:   0,
			wantReason: dkmv1.ReasonDirectoryDown,
			wantCalls2: map[string]int{"CreateContainer": 1, "CreateManager": 2, "AddKey": 1, "SetActiveKey": 1},
		},
		{
			name:       "container add applied, answer lost",
			inject:     func(d *fakeAD) { d.loseAnswer("CreateContainer", 1, transientErr("add", pwPath)) },
			wantCalls1: map[string]int{"CreateContainer": 1},
			managers:   0,
			wantReason: dkmv1.ReasonBlocked, wantContainerReady: metav1.ConditionFalse,
			// The container carries this owner's record: it is this writer's, not created again.
			wantCalls2: map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1, "SetActiveKey": 1},
		},
		{
			name:       "DC Manager add applied, answer lost",
			inject:     func(d *fakeAD) { d.loseAnswer("CreateManager", 1, transientErr("add", "manager")) },
			wantCalls1: map[string]int{"CreateContainer": 1, "CreateManager": 1},
			managers:   1, nKeys: 0, policy: false,
			wantReason: dkmv1.ReasonDirectoryDown,
			wantCalls2: map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1, "SetActiveKey": 1},
		},
		{
			name:       "key add applied, answer lost",
			inject:     func(d *fakeAD) { d.loseAnswer("AddKey", 1, transientErr("add", "key")) },
			wantCalls1: map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1},
			managers:   1, nKeys: 1, policy: false,
			wantReason: dkmv1.ReasonDirectoryDown,
			wantCalls2: map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1, "SetActiveKey": 1},
		},
		{
			name:       "CryptoPolicy add applied, answer lost",
			inject:     func(d *fakeAD) { d.loseAnswer("SetActiveKey", 1, transientErr("add", "CryptoPolicy")) },
			wantCalls1: map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1, "SetActiveKey": 1},
			managers:   1, nKeys: 1, policy: true,
			wantReason: dkmv1.ReasonDirectoryDown,
			wantCalls2: map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1, "SetActiveKey": 1},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newPWClock()
			dir := newFakeAD(clock.now)
			c := newPWCluster(t, dir, clock, pwOptions{})
			tc.inject(dir)

			res, err := c.reconcile()
			if err == nil {
				t.Fatalf("the failed write was not reported for a retry: %+v; %s", res, c.conditions())
			}
			expectWriteCalls(t, "after the failure", dir, tc.wantCalls1)
			expectLayout(t, "after the failure", dir, tc.managers, tc.nKeys, tc.policy)
			status := metav1.ConditionFalse
			if tc.wantReason == dkmv1.ReasonBlocked {
				status = metav1.ConditionUnknown
			}
			c.expectCond(dkmv1.ConditionKeyReady, status, tc.wantReason)
			if tc.wantContainerReady != "" {
				c.expectCond(dkmv1.ConditionContainerReady, tc.wantContainerReady, dkmv1.ReasonDirectoryDown)
			}
			if st := c.get().Status; st.ActiveKeyID != "" || len(st.Keys) != 0 {
				t.Fatalf("status records a key after the failure: %q %v", st.ActiveKeyID, st.Keys)
			}
			if ring := c.r.Keys.Get(c.key); ring != nil {
				t.Fatalf("KeyStore holds %v after the failure", ring)
			}
			if slices.Contains(c.eventReasons(), dkmv1.ReasonKeyCreated) {
				t.Fatal("KeyCreated announced for a key without CryptoPolicy")
			}

			c.mustReconcile()
			expectWriteCalls(t, "after the retry", dir, tc.wantCalls2)
			expectOneKey(t, c)

			// And a third reconcile changes nothing.
			c.mustReconcile()
			expectWriteCalls(t, "steady state", dir, tc.wantCalls2)
		})
	}
}

// Rotation adds the key contact, then swaps CryptoPolicy by compare-and-swap. When the swap
// loses (another writer moved CryptoPolicy, or AD refused it as changed), KeyReady says
// KeyWriteRaced, status keeps the old active key, the next reconcile reads what AD holds, and
// no version is ever deleted.
func TestPartialWriteRotationRaced(t *testing.T) {
	const period = 24 * time.Hour
	conflict := adErr("modify", "CN=CryptoPolicy", directory.KindConflict, 20, "attribute or value exists")
	cases := []struct {
		name string
		// race arranges for the rotation's CryptoPolicy swap (the second SetActiveKey) to lose;
		// the key ID another writer made active meanwhile, if any, is stored in *moved.
		race func(t *testing.T, c *pwCluster, managerDN, oldID string, moved *string)
		// after the next reconcile
		wantCalls   map[string]int
		wantVersion int
	}{
		{
			name: "another writer moved CryptoPolicy first",
			race: func(t *testing.T, c *pwCluster, managerDN, oldID string, moved *string) {
				c.dir.before("SetActiveKey", 2, func() {
					*moved = anotherWritersKey(t, c, managerDN, oldID)
					c.dir.setAttr(t, directory.ChildDN(managerDN, directory.PolicyName), func(n *adNode) { n.displayName = *moved })
				})
			},
			// What the other writer activated is fresh: nothing to rotate.
			wantCalls:   map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 2, "SetActiveKey": 2},
			wantVersion: 3,
		},
		{
			name: "AD refused the swap as a conflict",
			race: func(t *testing.T, c *pwCluster, _, _ string, _ *string) {
				c.dir.failOn("SetActiveKey", 2, conflict)
			},
			// The rotated version this writer added is pending (newer than the active one, its
			// own record): the next reconcile activates it instead of rotating again, so no
			// never-active version is left behind.
			wantCalls:   map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 2, "SetActiveKey": 3},
			wantVersion: 2,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newPWClock()
			dir := newFakeAD(clock.now)
			c := newPWCluster(t, dir, clock, pwOptions{mutate: func(o *dkmv1.DKMContainer) {
				o.Spec.Rotation = &dkmv1.RotationSpec{Period: &metav1.Duration{Duration: period}}
			}})
			c.mustReconcile()
			oldID := expectOneKey(t, c)
			managerDN := dir.layout(pwPath).Managers[0]
			policyDN := directory.ChildDN(managerDN, directory.PolicyName)

			clock.advance(period + time.Hour)
			var moved string
			tc.race(t, c, managerDN, oldID, &moved)
			res, err := c.reconcile()
			if err == nil {
				t.Fatalf("a lost swap was not retried: %+v", res)
			}
			c.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionFalse, dkmv1.ReasonKeyWriteRaced)
			st := c.get().Status
			if st.ActiveKeyID != oldID || len(st.Keys) != 1 {
				t.Fatalf("status after the lost swap: active %q, %d versions; want the old %s, 1", st.ActiveKeyID, len(st.Keys), oldID)
			}
			if ring := c.r.Keys.Get(c.key); ring == nil || ring.ActiveID().String() != oldID {
				t.Fatalf("KeyStore after the lost swap holds %v, want the old key %s", ring, oldID)
			}
			wantPolicy := oldID
			if moved != "" {
				wantPolicy = moved
			}
			if p, _ := dir.lookup(policyDN); p.DisplayName != wantPolicy {
				t.Fatalf("CryptoPolicy names %q, want %q", p.DisplayName, wantPolicy)
			}
			expectLayout(t, "after the lost swap", dir, 1, 2+btoi(moved != ""), true)
			rotatedID := ""
			for _, id := range dir.layout(pwPath).Keys[managerDN] {
				if id != oldID && id != moved {
					rotatedID = id
				}
			}

			c.mustReconcile()
			expectWriteCalls(t, "after the next reconcile", dir, tc.wantCalls)
			l := expectLayout(t, "after the next reconcile", dir, 1, tc.wantVersion, true)
			ids := l.Keys[managerDN]
			for _, id := range []string{oldID, rotatedID} {
				if !slices.Contains(ids, id) {
					t.Fatalf("version %s was deleted: keys %v", id, ids)
				}
			}
			st = c.get().Status
			active := l.Policy[managerDN]
			if moved != "" && active != moved {
				t.Fatalf("CryptoPolicy %s, want the other writer's %s kept", active, moved)
			}
			if st.ActiveKeyID != active || len(st.Keys) != tc.wantVersion {
				t.Fatalf("status: active %q with %d versions, want %s with %d", st.ActiveKeyID, len(st.Keys), active, tc.wantVersion)
			}
			c.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionTrue, dkmv1.ReasonReady)
			if dir.callCount("DeleteOwned") != 0 || dir.callCount("ReplaceKeyBlob") != 0 {
				t.Fatal("a version was deleted or rewritten")
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// anotherWritersKey adds, as another instance of the same writer would, a new key version
// (sealed under the same KEK) next to oldID, and returns its ID.
func anotherWritersKey(t *testing.T, c *pwCluster, managerDN, oldID string) string {
	t.Helper()
	obs := c.dir.tree.observe(pwPath)
	container, err := keys.ObjectGUIDFromBytes(obs.Container.GUID.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var stored []keys.StoredKey
	for _, k := range obs.Managers[0].Keys {
		stored = append(stored, keys.StoredKey{ID: k.ID, Blob: k.Blob, Created: k.Created})
	}
	p := c.protector()
	ring, err := keys.LoadRing(container, oldID, stored, p)
	if err != nil {
		t.Fatal(err)
	}
	_, next, err := ring.Rotate(p, c.r.now())
	if err != nil {
		t.Fatal(err)
	}
	c.dir.seed(t, directory.ChildDN(managerDN, next.ID), "contact", c.owner().String(), nil, func(n *adNode) {
		n.l, n.photo = next.ID, next.Blob
	})
	return next.ID
}

// Two clusters create the same path at once: the second's CreateContainer finds the first's
// container (KindAlreadyExists), reads its record and becomes a reader; it never writes.
func TestPartialWriteTwoClustersRace(t *testing.T) {
	clock := newPWClock()
	dirA := newFakeAD(clock.now)
	dirB := dirA.peer()
	kek := map[string][]byte{"kek": newKEK(t)}
	a := newPWCluster(t, dirA, clock, pwOptions{cluster: "test", kek: kek})
	b := newPWCluster(t, dirB, clock, pwOptions{cluster: "test-b", kek: kek})

	// B observed no container; before its add reaches AD, A creates everything.
	dirB.before("CreateContainer", 1, func() { a.mustReconcile() })
	b.mustReconcile()

	expectWriteCalls(t, "A", dirA, map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1, "SetActiveKey": 1})
	id := expectOneKey(t, a)
	if got := b.get().Status; got.Role != dkmv1.RoleReader || got.Owner != a.owner().Short() {
		t.Fatalf("B: role %q, owner %q; want Reader of %s", got.Role, got.Owner, a.owner().Short())
	}
	for i := 0; i < 3; i++ {
		if i > 0 {
			clock.advance(time.Hour)
			b.mustReconcile()
		}
		if n := dirB.totalWrites(); n != 0 {
			t.Fatalf("B made %d successful writes", n)
		}
		expectWriteCalls(t, "B", dirB, map[string]int{"CreateContainer": 1})
		b.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionTrue, dkmv1.ReasonReady)
		if st := b.get().Status; st.ActiveKeyID != id || st.ActiveKeyFingerprint != a.get().Status.ActiveKeyFingerprint {
			t.Fatalf("B serves %s (%s), want A's %s (%s)", st.ActiveKeyID, st.ActiveKeyFingerprint, id, a.get().Status.ActiveKeyFingerprint)
		}
	}
	expectLayout(t, "end", dirA, 1, 1, true)
	if c, _ := dirA.lookup(pwPath); c.Owner != a.owner().String() {
		t.Fatalf("container record %q, want A's", c.Owner)
	}
}

// Two instances of one writer (the same DKMContainer: a leader hand-over) create the first key
// at once. The DC Manager's name and the first key's ID are derived, so the second's add
// collides (KindAlreadyExists) instead of making a second DC Manager or key; it reports
// KeyWriteRaced and its next reconcile adopts what the first made, writing nothing more.
func TestPartialWriteOneOwnerTwoInstancesCollide(t *testing.T) {
	cases := []struct {
		method string
		// B's write calls after the collision
		wantB map[string]int
	}{
		{"CreateManager", map[string]int{"CreateManager": 1}},
		{"AddKey", map[string]int{"CreateManager": 1, "AddKey": 1}},
	}
	for _, tc := range cases {
		t.Run(tc.method, func(t *testing.T) {
			clock := newPWClock()
			dirA := newFakeAD(clock.now)
			dirB := dirA.peer()
			kek := map[string][]byte{"kek": newKEK(t)}
			a := newPWCluster(t, dirA, clock, pwOptions{kek: kek})
			b := newPWCluster(t, dirB, clock, pwOptions{kek: kek})

			// A creates the container only; then B reads it, and A finishes before B's write.
			dirA.failOn("CreateManager", 1, transientErr("add", "manager"))
			if _, err := a.reconcile(); err == nil {
				t.Fatal("A: injected failure not reported")
			}
			dirB.before(tc.method, 1, func() { a.mustReconcile() })
			if _, err := b.reconcile(); err == nil {
				t.Fatal("B: the collision was not retried")
			}
			b.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionFalse, dkmv1.ReasonKeyWriteRaced)
			expectWriteCalls(t, "B", dirB, tc.wantB)
			expectLayout(t, "after the collision", dirA, 1, 1, true)

			b.mustReconcile()
			expectWriteCalls(t, "B after the next reconcile", dirB, tc.wantB)
			id := expectOneKey(t, b)
			if a.get().Status.ActiveKeyFingerprint != b.get().Status.ActiveKeyFingerprint || a.get().Status.ActiveKeyID != id {
				t.Fatal("A and B serve different keys")
			}
			if b.r.Keys.Get(b.key).Active().Fingerprint.String() != a.get().Status.ActiveKeyFingerprint {
				t.Fatal("B's KeyStore holds the key it generated, not the one in AD")
			}
		})
	}
}

// pwTemplate is the DACL the reconciler writes for pwCluster's spec.
func pwTemplate(t *testing.T, accounts ...secdesc.SID) *secdesc.SecurityDescriptor {
	t.Helper()
	if accounts == nil {
		accounts = []secdesc.SID{adServiceSID, adOperatorSID}
	}
	sd, err := secdesc.DKMTemplate(adDomainSID, adDomainSID, accounts)
	if err != nil {
		t.Fatal(err)
	}
	return sd
}

// A CryptoPolicy naming a key the directory does not hold is KeyLost: no key is added and
// CryptoPolicy is not moved, unless the loss is acknowledged by naming that key.
func TestPartialWritePolicyNamesMissingKey(t *testing.T) {
	const lost = "3c1e5a7b-0000-4000-8000-00000000aaaa"
	cases := []struct {
		name      string
		otherKey  bool // another version is present
		ack       bool
		wantCalls map[string]int
	}{
		{name: "no key at all", wantCalls: nil},
		{name: "another version present", otherKey: true, wantCalls: nil},
		{name: "loss acknowledged", ack: true, wantCalls: map[string]int{"AddKey": 1, "SetActiveKey": 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newPWClock()
			dir := newFakeAD(clock.now)
			c := newPWCluster(t, dir, clock, pwOptions{mutate: func(o *dkmv1.DKMContainer) {
				if tc.ack {
					o.Annotations = map[string]string{dkmv1.AnnotationRegenerateLostKey: lost}
				}
			}})
			me := c.owner().String()
			container := dir.seed(t, pwPath, "container", me, pwTemplate(t), nil)
			cg, _ := keys.ObjectGUIDFromBytes(container.GUID.Bytes())
			managerDN := directory.ChildDN(pwPath, directory.ManagerPrefix+keys.ManagerGUID(cg).String())
			dir.seed(t, managerDN, "container", me, nil, nil)
			if tc.otherKey {
				_, stored, err := keys.NewRing(cg, c.protector(), clock.now())
				if err != nil {
					t.Fatal(err)
				}
				dir.seed(t, directory.ChildDN(managerDN, stored.ID), "contact", me, nil, func(n *adNode) { n.l, n.photo = stored.ID, stored.Blob })
			}
			dir.seed(t, directory.ChildDN(managerDN, directory.PolicyName), "contact", me, nil, func(n *adNode) { n.displayName = lost })

			res, err := c.reconcile()
			if err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			expectWriteCalls(t, "writes", dir, tc.wantCalls)
			l := dir.layout(pwPath)
			if !tc.ack {
				if res.RequeueAfter <= 0 {
					t.Fatalf("KeyLost is not looked at again: %+v", res)
				}
				cd := c.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionFalse, dkmv1.ReasonKeyLost)
				if !strings.Contains(cd.Message, lost) {
					t.Fatalf("KeyLost message does not name %s: %s", lost, cd.Message)
				}
				if l.Policy[managerDN] != lost {
					t.Fatalf("CryptoPolicy moved to %q", l.Policy[managerDN])
				}
				if want := btoi(tc.otherKey); len(l.Keys[managerDN]) != want {
					t.Fatalf("keys %v, want %d", l.Keys[managerDN], want)
				}
				if st := c.get().Status; st.ActiveKeyID != "" || c.r.Keys.Get(c.key) != nil {
					t.Fatalf("a key is served although CryptoPolicy names a lost one: %q", st.ActiveKeyID)
				}
				return
			}
			c.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionTrue, dkmv1.ReasonReady)
			ids := l.Keys[managerDN]
			if len(ids) != 1 || ids[0] == lost || l.Policy[managerDN] != ids[0] {
				t.Fatalf("after the acknowledged loss: keys %v, CryptoPolicy %q", ids, l.Policy[managerDN])
			}
			if c.get().Status.ActiveKeyID != ids[0] {
				t.Fatalf("status active %q, want %s", c.get().Status.ActiveKeyID, ids[0])
			}
		})
	}
}

// Keys recorded in status that vanished from AD (the whole container, the DC Manager, or the
// key contact) are KeyLost: nothing is created in their place, above all not a new container
// on the DN a restore needs.
func TestPartialWriteRecordedKeysVanish(t *testing.T) {
	cases := []struct {
		name   string
		remove func(l adLayout, manager string) string // the DN removed
		// cond is the condition that says KeyLost: ContainerReady when the container itself
		// is gone (the container phase refuses to create it), KeyReady otherwise.
		cond string
	}{
		{"container", func(adLayout, string) string { return pwPath }, dkmv1.ConditionContainerReady},
		{"DC Manager", func(_ adLayout, m string) string { return m }, dkmv1.ConditionKeyReady},
		{"key contact", func(l adLayout, m string) string { return directory.ChildDN(m, l.Keys[m][0]) }, dkmv1.ConditionKeyReady},
	}
	created := map[string]int{"CreateContainer": 1, "CreateManager": 1, "AddKey": 1, "SetActiveKey": 1}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newPWClock()
			dir := newFakeAD(clock.now)
			c := newPWCluster(t, dir, clock, pwOptions{})
			c.mustReconcile()
			id := expectOneKey(t, c)
			l := dir.layout(pwPath)
			dir.remove(t, tc.remove(l, l.Managers[0]))

			for i := 0; i < 2; i++ {
				res, err := c.reconcile()
				if err != nil || res.RequeueAfter <= 0 {
					t.Fatalf("reconcile: %+v, %v", res, err)
				}
				expectWriteCalls(t, "after the loss", dir, created)
				cd := c.expectCond(tc.cond, metav1.ConditionFalse, dkmv1.ReasonKeyLost)
				if !strings.Contains(cd.Message, id) {
					t.Fatalf("KeyLost does not name %s: %s", id, cd.Message)
				}
				if kr := c.cond(dkmv1.ConditionKeyReady); kr.Status == metav1.ConditionTrue {
					t.Fatalf("KeyReady True after the loss: %s", kr.Message)
				}
				ready := c.expectCond(dkmv1.ConditionReady, metav1.ConditionFalse, dkmv1.ReasonKeyLost)
				if !strings.Contains(ready.Message, id) {
					t.Fatalf("Ready does not name %s: %s", id, ready.Message)
				}
				if st := c.get().Status; st.ActiveKeyID != id {
					t.Fatalf("status forgot the lost key: %q", st.ActiveKeyID)
				}
			}
			if tc.name == "container" {
				if _, ok := dir.lookup(pwPath); ok {
					t.Fatal("a container was created on the DN a restore needs")
				}
			}
		})
	}
}

// A reader (another owner's container, or one made outside the operator) loads and serves the
// key and never calls a write method, across several reconciles, even with a rotation due, a
// version under a retired KEK and a drifted DACL under Enforce.
func TestPartialWriteReaderNeverWrites(t *testing.T) {
	cases := []struct {
		name string
		// setup makes the container; it returns the owner reported in status.
		setup func(t *testing.T, dir *fakeAD, clock *pwClock, oldKEK []byte) string
		// wantAccess is AccessControlled's reason; wantAccessFalse: its status is False.
		wantAccess      string
		wantAccessFalse bool
	}{
		{
			name: "another cluster's container",
			setup: func(t *testing.T, dir *fakeAD, clock *pwClock, oldKEK []byte) string {
				w := newPWCluster(t, dir.peer(), clock, pwOptions{cluster: "other", kek: map[string][]byte{"kek": oldKEK}})
				w.mustReconcile()
				return w.owner().Short()
			},
			wantAccess: dkmv1.ReasonReady,
		},
		{
			name: "another cluster's container with a drifted DACL",
			setup: func(t *testing.T, dir *fakeAD, clock *pwClock, oldKEK []byte) string {
				w := newPWCluster(t, dir.peer(), clock, pwOptions{cluster: "other", kek: map[string][]byte{"kek": oldKEK}})
				w.mustReconcile()
				// Safe, but not the template: the service account's ACE is gone.
				dir.setAttr(t, pwPath, func(n *adNode) { n.sd = pwTemplate(t, adOperatorSID) })
				return w.owner().Short()
			},
			wantAccess: dkmv1.ReasonSafeDACL,
		},
		{
			// The owner binds as an identity the reader does not know; its template grants that
			// identity full control, which the reader cannot tell from an intruder: it reports
			// the DACL, but its key phase, which writes nothing, is not held back.
			name: "another cluster's container, owned through another bind identity",
			setup: func(t *testing.T, dir *fakeAD, clock *pwClock, oldKEK []byte) string {
				w := newPWCluster(t, dir.peer(), clock, pwOptions{cluster: "other", kek: map[string][]byte{"kek": oldKEK}})
				w.mustReconcile()
				dir.setAttr(t, pwPath, func(n *adNode) { n.sd = pwTemplate(t, adServiceSID, adOperatorSID, adRel(1199)) })
				return w.owner().Short()
			},
			wantAccess:      dkmv1.ReasonUnsafeDACL,
			wantAccessFalse: true,
		},
		{
			name: "a container made outside the operator",
			setup: func(t *testing.T, dir *fakeAD, clock *pwClock, oldKEK []byte) string {
				container := dir.seed(t, pwPath, "container", "", pwTemplate(t), nil)
				cg, _ := keys.ObjectGUIDFromBytes(container.GUID.Bytes())
				managerDN := directory.ChildDN(pwPath, directory.ManagerPrefix+"5c6f0b2e-4a33-4a8e-9a57-0e0b8e0f4d21")
				dir.seed(t, managerDN, "container", "", nil, nil)
				kr, err := keys.ParseKEKSecret(map[string][]byte{"kek": oldKEK})
				if err != nil {
					t.Fatal(err)
				}
				p, _ := keys.NewProtector(keys.ModeWrapped, kr)
				_, stored, err := keys.NewRing(cg, p, clock.now())
				if err != nil {
					t.Fatal(err)
				}
				dir.seed(t, directory.ChildDN(managerDN, stored.ID), "contact", "", nil, func(n *adNode) { n.l, n.photo = stored.ID, stored.Blob })
				dir.seed(t, directory.ChildDN(managerDN, directory.PolicyName), "contact", "", nil, func(n *adNode) { n.displayName = stored.ID })
				return "none (no ownership record: made outside dkm-operator)"
			},
			wantAccess: dkmv1.ReasonReady,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newPWClock()
			dir := newFakeAD(clock.now)
			oldKEK := newKEK(t)
			owner := tc.setup(t, dir, clock, oldKEK)
			before := dir.layout(pwPath)
			beforeContainer, _ := dir.lookup(pwPath)

			// The reader's KEK Secret has a new active KEK and the old one retired: the key in
			// AD needs re-wrapping, and its rotation period has long passed.
			r := newPWCluster(t, dir, clock, pwOptions{
				kek: map[string][]byte{"kek": newKEK(t), "kek.old": oldKEK},
				mutate: func(o *dkmv1.DKMContainer) {
					o.Spec.Rotation = &dkmv1.RotationSpec{Period: &metav1.Duration{Duration: time.Hour}}
				},
			})
			clock.advance(48 * time.Hour)
			for i := 0; i < 3; i++ {
				r.mustReconcile()
				expectWriteCalls(t, "reader", dir, nil)
				st := r.get().Status
				if st.Role != dkmv1.RoleReader || st.Owner != owner {
					t.Fatalf("role %q owner %q, want Reader of %s", st.Role, st.Owner, owner)
				}
				r.expectCond(dkmv1.ConditionKeyReady, metav1.ConditionTrue, dkmv1.ReasonReady)
				access := metav1.ConditionTrue
				if tc.wantAccessFalse {
					access = metav1.ConditionFalse
				}
				r.expectCond(dkmv1.ConditionAccessControlled, access, tc.wantAccess)
				ring := r.r.Keys.Get(r.key)
				if ring == nil || !ring.NeedsRewrap() || !keys.RotationDue(ring.Active().Created, time.Hour, clock.now()) {
					t.Fatalf("the case does not exercise re-wrap and rotation: %v", ring)
				}
				clock.advance(2 * time.Hour)
			}
			if after := dir.layout(pwPath); !slices.Equal(after.Managers, before.Managers) ||
				!maps.EqualFunc(after.Keys, before.Keys, slices.Equal[[]string]) || !maps.Equal(after.Policy, before.Policy) {
				t.Fatalf("AD changed: %+v, was %+v", after, before)
			}
			if after, _ := dir.lookup(pwPath); after.Owner != beforeContainer.Owner || !after.SD.Equal(beforeContainer.SD) {
				t.Fatal("the container's record or DACL changed")
			}
		})
	}
}

// --- the fake itself ---

func TestFakeADSemantics(t *testing.T) {
	ctx := context.Background()
	clock := newPWClock()
	d := newFakeAD(clock.now)
	me := directory.Owner{Cluster: "c", Namespace: "n", Name: "x", UID: "u"}
	other := directory.Owner{Cluster: "c2", Namespace: "n", Name: "x", UID: "u2"}
	sd := pwTemplate(t)

	if _, err := d.CreateContainer(ctx, "CN=A,CN=Nowhere,DC=demo,DC=local", sd, me); directory.KindOf(err) != directory.KindParentMissing {
		t.Fatalf("add under a missing parent: %v", err)
	}
	c, err := d.CreateContainer(ctx, pwPath, sd, me)
	if err != nil || !c.OwnedBy(me) || c.Class() != "container" || !c.SD.Equal(sd) {
		t.Fatalf("CreateContainer: %+v, %v", c, err)
	}
	if _, err := d.CreateContainer(ctx, strings.ToUpper(pwPath), sd, other); !errors.Is(err, directory.ErrAlreadyExists) {
		t.Fatalf("second add: %v", err)
	}
	if _, err := d.CreateContainer(ctx, "CN=B,"+pwPath, sd, directory.Owner{}); directory.KindOf(err) != directory.KindOther {
		t.Fatalf("add without a record: %v", err)
	}
	m, err := d.CreateManager(ctx, pwPath, "g", me)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.AddKey(ctx, m.DN, "k1", []byte{1}, me); err != nil {
		t.Fatal(err)
	}
	if _, err := d.AddKey(ctx, m.DN, "k1", []byte{2}, me); directory.KindOf(err) != directory.KindAlreadyExists {
		t.Fatalf("a key is never overwritten: %v", err)
	}
	// CryptoPolicy: add from "", then compare-and-swap.
	if err := d.SetActiveKey(ctx, m.DN, "k0", "k1", me); directory.KindOf(err) != directory.KindNoSuchObject {
		t.Fatalf("swap without CryptoPolicy: %v", err)
	}
	if err := d.SetActiveKey(ctx, m.DN, "", "k1", me); err != nil {
		t.Fatal(err)
	}
	if err := d.SetActiveKey(ctx, m.DN, "", "k2", me); directory.KindOf(err) != directory.KindAlreadyExists {
		t.Fatalf("second CryptoPolicy add: %v", err)
	}
	if err := d.SetActiveKey(ctx, m.DN, "k9", "k2", me); directory.KindOf(err) != directory.KindConflict {
		t.Fatalf("swap from a stale value: %v", err)
	}
	if err := d.SetActiveKey(ctx, m.DN, "K1", "k2", me); err != nil {
		t.Fatalf("swap from the current value: %v", err)
	}
	// Ownership record: compare-and-swap too.
	if err := d.SetOwner(ctx, pwPath, "", other); directory.KindOf(err) != directory.KindConflict {
		t.Fatalf("claiming an owned object: %v", err)
	}
	if err := d.SetOwner(ctx, pwPath, other.String(), me); directory.KindOf(err) != directory.KindConflict {
		t.Fatalf("moving a record from a stale value: %v", err)
	}
	obs, err := d.Observe(ctx, pwPath)
	if err != nil || !obs.Exists || len(obs.Managers) != 1 || len(obs.Managers[0].Keys) != 1 ||
		obs.Managers[0].Policy == nil || obs.Managers[0].Policy.ActiveKeyID != "k2" || len(obs.Foreign) != 0 {
		t.Fatalf("Observe: %+v, %v", obs, err)
	}
	if obs, err := d.Observe(ctx, "CN=Gone,"+pwPath); err != nil || obs.Exists {
		t.Fatalf("Observe of a missing container: %+v, %v", obs, err)
	}
	// Injected failures: failOn changes nothing, loseAnswer changes and fails.
	d.failOn("AddKey", 3, transientErr("add", "x"))
	if _, err := d.AddKey(ctx, m.DN, "k3", []byte{3}, me); !directory.IsTransient(err) {
		t.Fatalf("injected failure: %v", err)
	}
	if _, ok := d.lookup(directory.ChildDN(m.DN, "k3")); ok {
		t.Fatal("a failed add took effect")
	}
	d.loseAnswer("AddKey", 4, transientErr("add", "x"))
	if _, err := d.AddKey(ctx, m.DN, "k3", []byte{3}, me); !directory.IsTransient(err) {
		t.Fatalf("lost answer: %v", err)
	}
	if _, ok := d.lookup(directory.ChildDN(m.DN, "k3")); !ok {
		t.Fatal("an add whose answer was lost did not take effect")
	}
	if d.callCount("AddKey") != 4 || d.writeCount("AddKey") != 2 {
		t.Fatalf("AddKey: %d calls, %d writes; want 4, 2", d.callCount("AddKey"), d.writeCount("AddKey"))
	}
	// DeleteOwned: only what me created; a person's object and its ancestors stay.
	d.seed(t, "CN=Notes,"+pwPath, "container", "", nil, nil)
	d.seed(t, directory.ChildDN(m.DN, "k4"), "contact", other.String(), nil, func(n *adNode) { n.l = "k4" })
	left, err := d.DeleteOwned(ctx, c.GUID, me)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(left)
	want := []string{"CN=Notes," + pwPath, directory.ChildDN(m.DN, "k4"), m.DN, pwPath}
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
	if got := d.below(pwPath); len(got) != 3 {
		t.Fatalf("after DeleteOwned: %v", got)
	}
	// A claimed object is never deleted.
	claimed := d.seed(t, "CN=Claimed,CN=System,DC=demo,DC=local", "container", me.AsClaim().String(), nil, nil)
	if left, _ := d.DeleteOwned(ctx, claimed.GUID, me); len(left) != 1 {
		t.Fatalf("a claimed container was deleted: left %v", left)
	}
	// A peer shares the tree, not the counts.
	p := d.peer()
	if obs, _ := p.Observe(ctx, pwPath); !obs.Exists || p.callCount("AddKey") != 0 {
		t.Fatal("peer does not share the tree, or shares the counts")
	}
}
