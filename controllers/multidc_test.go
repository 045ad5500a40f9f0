package controllers

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

// TestMultiDCOnSambaPair runs the reconciler against a real kube-apiserver (envtest) and two
// real Samba DCs of one domain that replicate only when the test says so (testenv.StartPair).
// Reconciles are driven one at a time, so every step is deterministic; the KeyStore is what
// the projector serves replicas from, so "not projected" is "not in the KeyStore".
func TestMultiDCOnSambaPair(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no Samba pair")
	}
	ctx := t.Context()
	p, kube := startPairCluster(t)
	pool := directory.NewPool()
	t.Cleanup(pool.Close)
	// admin reads one DC on its own, for the test's own checks.
	admin := func(dc *testenv.DC) *directory.Client {
		c, err := pool.Client(directory.Config{URLs: []string{dc.URL}, Username: dc.AdminUser, Password: dc.AdminPassword, CAPEM: p.CAPEM})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	observe := func(t *testing.T, dc *testenv.DC, path string) *directory.Observation {
		t.Helper()
		obs, err := admin(dc).Observe(ctx, path)
		if err != nil {
			t.Fatalf("observing %s on %s: %v", path, dc.Name, err)
		}
		return obs
	}
	replicate := func(t *testing.T, to, from *testenv.DC) {
		t.Helper()
		if err := p.Replicate(ctx, to, from); err != nil {
			t.Fatal(err)
		}
	}

	newRun := func(t *testing.T, name string, mutate func(*dkmv1.DKMContainer)) *pairRun {
		t.Helper()
		return newPairRun(t, p, kube, name, mutate)
	}
	reconcile := func(t *testing.T, x *pairRun) error {
		t.Helper()
		_, err := x.r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(x.obj)})
		return err
	}
	get := func(t *testing.T, x *pairRun) *dkmv1.DKMContainer {
		t.Helper()
		cur := &dkmv1.DKMContainer{}
		if err := kube.Get(ctx, client.ObjectKeyFromObject(x.obj), cur); err != nil {
			t.Fatal(err)
		}
		return cur
	}
	cond := func(t *testing.T, x *pairRun, typ string) metav1.Condition {
		t.Helper()
		if c := meta.FindStatusCondition(get(t, x).Status.Conditions, typ); c != nil {
			return *c
		}
		return metav1.Condition{}
	}
	expectReason := func(t *testing.T, x *pairRun, typ, reason string) metav1.Condition {
		t.Helper()
		c := cond(t, x, typ)
		if c.Reason != reason {
			t.Fatalf("%s = %s/%s (%q), want %s", typ, c.Status, c.Reason, c.Message, reason)
		}
		return c
	}
	// notCommitted: no key in status or the KeyStore, no CryptoPolicy on any DC.
	notCommitted := func(t *testing.T, x *pairRun) {
		t.Helper()
		if st := get(t, x).Status; st.ActiveKeyID != "" || len(st.Keys) != 0 {
			t.Fatalf("status records a key: %s %v", st.ActiveKeyID, st.Keys)
		}
		if ring := x.r.Keys.Get(client.ObjectKeyFromObject(x.obj)); ring != nil {
			t.Fatalf("the KeyStore (what replicas are served from) holds %v", ring)
		}
		for _, dc := range []*testenv.DC{p.DC1, p.DC2} {
			for _, m := range observe(t, dc, x.obj.Spec.Path).Managers {
				if m.Policy != nil {
					t.Fatalf("%s holds CryptoPolicy naming %s", dc.Name, m.Policy.ActiveKeyID)
				}
			}
		}
	}
	// keysOn lists the key IDs in the live DC Managers of path on dc.
	keysOn := func(t *testing.T, dc *testenv.DC, path string) []string {
		t.Helper()
		var ids []string
		for _, m := range observe(t, dc, path).Managers {
			for _, k := range m.Keys {
				ids = append(ids, k.ID)
			}
		}
		return ids
	}
	committed := func(t *testing.T, x *pairRun, id string) {
		t.Helper()
		expectReason(t, x, dkmv1.ConditionKeyReady, dkmv1.ReasonReady)
		if st := get(t, x).Status; st.ActiveKeyID != id || len(st.Keys) != 1 {
			t.Fatalf("status: active %q, %d versions; want %s", st.ActiveKeyID, len(st.Keys), id)
		}
		if ring := x.r.Keys.Get(client.ObjectKeyFromObject(x.obj)); ring == nil || ring.ActiveID().String() != id {
			t.Fatalf("KeyStore holds %v, want %s", ring, id)
		}
	}

	t.Run("a key held back from DC2 is neither recorded nor projected until replicated", func(t *testing.T) {
		if err := p.HoldReplication(ctx, p.DC2); err != nil {
			t.Fatal(err)
		}
		x := newRun(t, "held", nil)
		if err := reconcile(t, x); err != nil {
			t.Fatal(err)
		}
		c := expectReason(t, x, dkmv1.ConditionKeyReady, dkmv1.ReasonKeyNotReplicated)
		if !strings.Contains(c.Message, "is on "+p.DC1.URL+";") {
			t.Errorf("KeyNotReplicated does not name DC1 alone: %q", c.Message)
		}
		if msg := cond(t, x, dkmv1.ConditionDirectoryReachable).Message; !strings.Contains(msg, p.DC1.URL+" ("+p.DC1.Name+", the PDC emulator)") {
			t.Errorf("DirectoryReachable does not name the PDC in use: %q", msg)
		}
		ids := keysOn(t, p.DC1, x.obj.Spec.Path)
		if len(ids) != 1 {
			t.Fatalf("DC1 holds keys %v, want one", ids)
		}
		if err := p.Replicate(ctx, p.DC2, p.DC1); err == nil {
			t.Fatal("replication into DC2 was not held")
		}
		if err := reconcile(t, x); err != nil {
			t.Fatal(err)
		}
		expectReason(t, x, dkmv1.ConditionKeyReady, dkmv1.ReasonKeyNotReplicated)
		notCommitted(t, x)

		if err := p.ReleaseReplication(ctx, p.DC2); err != nil {
			t.Fatal(err)
		}
		replicate(t, p.DC2, p.DC1)
		if err := reconcile(t, x); err != nil {
			t.Fatal(err)
		}
		committed(t, x, ids[0])
	})

	t.Run("DC1 stopped right after the key write: no second key on DC2, the same key committed after DC1 returns", func(t *testing.T) {
		x := newRun(t, "pdcdown", nil)
		if err := reconcile(t, x); err != nil {
			t.Fatal(err)
		}
		expectReason(t, x, dkmv1.ConditionKeyReady, dkmv1.ReasonKeyNotReplicated)
		ids := keysOn(t, p.DC1, x.obj.Spec.Path)
		if len(ids) != 1 {
			t.Fatalf("DC1 holds keys %v, want one", ids)
		}
		if err := p.DC1.Stop(); err != nil {
			t.Fatal(err)
		}
		for range 4 {
			_ = reconcile(t, x) // the first fails on DC1, the next choose DC2
			if ring := x.r.Keys.Get(client.ObjectKeyFromObject(x.obj)); ring != nil {
				t.Fatalf("KeyStore holds %v with DC1 down", ring)
			}
		}
		c := cond(t, x, dkmv1.ConditionContainerReady)
		if c.Reason != dkmv1.ReasonDCUnavailable || !strings.Contains(c.Message, p.DC1.URL) {
			t.Fatalf("ContainerReady = %s (%q), want DCUnavailable naming DC1", c.Reason, c.Message)
		}
		if obs := observe(t, p.DC2, x.obj.Spec.Path); obs.Exists {
			t.Fatalf("something was written to DC2 while DC1 was down: %+v", obs)
		}
		if err := p.DC1.Start(ctx); err != nil {
			t.Fatal(err)
		}
		replicate(t, p.DC2, p.DC1)
		deadline := time.Now().Add(30 * time.Second)
		for cond(t, x, dkmv1.ConditionKeyReady).Reason != dkmv1.ReasonReady && time.Now().Before(deadline) {
			_ = reconcile(t, x)
			time.Sleep(200 * time.Millisecond)
		}
		committed(t, x, ids[0])
		for _, dc := range []*testenv.DC{p.DC1, p.DC2} {
			if got := keysOn(t, dc, x.obj.Spec.Path); len(got) > 1 || (len(got) == 1 && got[0] != ids[0]) {
				t.Fatalf("%s holds keys %v, want only %s", dc.Name, got, ids[0])
			}
		}
	})

	t.Run("failover to a lagging DC: no KeyLost, no write", func(t *testing.T) {
		x := newRun(t, "lag", func(o *dkmv1.DKMContainer) { o.Spec.Directory.MinKeyCopies = ptr.To[int32](1) })
		if err := reconcile(t, x); err != nil {
			t.Fatal(err)
		}
		ids := keysOn(t, p.DC1, x.obj.Spec.Path)
		if len(ids) != 1 {
			t.Fatalf("DC1 holds keys %v", ids)
		}
		committed(t, x, ids[0])
		if err := p.DC1.Stop(); err != nil {
			t.Fatal(err)
		}
		for range 4 {
			_ = reconcile(t, x)
			for _, typ := range []string{dkmv1.ConditionContainerReady, dkmv1.ConditionKeyReady} {
				if c := cond(t, x, typ); c.Reason == dkmv1.ReasonKeyLost {
					t.Fatalf("KeyLost on a lagging DC: %q", c.Message)
				}
			}
		}
		expectReason(t, x, dkmv1.ConditionContainerReady, dkmv1.ReasonDCUnavailable)
		if obs := observe(t, p.DC2, x.obj.Spec.Path); obs.Exists {
			t.Fatal("the container was created on the lagging DC")
		}
		if ring := x.r.Keys.Get(client.ObjectKeyFromObject(x.obj)); ring == nil || ring.ActiveID().String() != ids[0] {
			t.Fatalf("the KeyStore dropped the key during the outage: %v", ring)
		}
		if err := p.DC1.Start(ctx); err != nil {
			t.Fatal(err)
		}
		replicate(t, p.DC2, p.DC1)
	})

	t.Run("a replication conflict object is reported and ignored", func(t *testing.T) {
		// A domain admin made the container; then the same DC Manager name was added on each DC
		// before replication: AD keeps one and renames the other "\0ACNF:<GUID>".
		path := "CN=DKM-cnf,CN=System," + p.DC1.BaseDN
		const manager = "DC Manager 00000000-0000-4000-8000-00000000c0f1"
		addContainer := func(dc *testenv.DC, dn string) {
			conn, err := dc.Dial()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			req := ldap.NewAddRequest(dn, nil)
			req.Attribute("objectClass", []string{"container"})
			if err := conn.Add(req); err != nil {
				t.Fatalf("adding %s on %s: %v", dn, dc.Name, err)
			}
		}
		addContainer(p.DC1, path)
		replicate(t, p.DC2, p.DC1)
		addContainer(p.DC1, directory.ChildDN(path, manager))
		addContainer(p.DC2, directory.ChildDN(path, manager))
		replicate(t, p.DC2, p.DC1)
		replicate(t, p.DC1, p.DC2)
		obs := observe(t, p.DC1, path)
		if len(obs.Managers) != 1 || len(obs.Conflicts) != 1 {
			t.Fatalf("Samba made %d live DC Managers and conflicts %+v", len(obs.Managers), obs.Conflicts)
		}
		conflict := obs.Conflicts[0]
		t.Logf("Samba's conflict object: %q", conflict.DN)

		x := newRun(t, "cnf", func(o *dkmv1.DKMContainer) { o.Spec.Provisioning = dkmv1.ProvisioningAdopt })
		deadline := time.Now().Add(30 * time.Second)
		for cond(t, x, dkmv1.ConditionKeyReady).Reason != dkmv1.ReasonReady && time.Now().Before(deadline) {
			_ = reconcile(t, x)
			replicate(t, p.DC2, p.DC1)
		}
		c := expectReason(t, x, dkmv1.ConditionKeyReady, dkmv1.ReasonReady)
		for _, want := range []string{"1 replication conflict object(s)", conflict.DN, "no ownership record"} {
			if !strings.Contains(c.Message, want) {
				t.Errorf("KeyReady lacks %q: %q", want, c.Message)
			}
		}
		if !strings.Contains(fmt.Sprint(gateEvents(x.r.Recorder.(*events.FakeRecorder))), dkmv1.ReasonReplicationConflict) {
			t.Error("no ReplicationConflict event")
		}
		after := observe(t, p.DC1, path)
		if len(after.Conflicts) != 1 || after.Conflicts[0].GUID != conflict.GUID {
			t.Fatalf("the conflict object changed: %+v", after.Conflicts)
		}
		if len(after.Managers) != 1 || after.Managers[0].DN == conflict.DN || len(after.Managers[0].Keys) != 1 {
			t.Fatalf("the key is not in the live DC Manager: %+v", after.Managers)
		}
	})
}

const pairNS = "multidc"

// startPairCluster starts two replicating Samba DCs and an envtest API server holding the
// namespace pairNS with the bind, CA and KEK Secrets.
func startPairCluster(tb testing.TB) (*testenv.Pair, client.Client) {
	tb.Helper()
	ctx := tb.Context()
	p, err := testenv.StartPair(ctx, testenv.PairOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	env, err := testenv.NewKube(ctx, filepath.Join("config", "crd", "bases"))
	if err != nil {
		tb.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = env.Stop() })
	kube, err := client.New(cfg, client.Options{Scheme: unitScheme(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: pairNS}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bind", Namespace: pairNS},
			Data: map[string][]byte{BindUsernameKey: []byte(p.DC1.AdminUser), BindPasswordKey: []byte(p.DC1.AdminPassword)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "ca", Namespace: pairNS}, Data: map[string][]byte{"ca.crt": p.CAPEM}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kek", Namespace: pairNS}, Data: map[string][]byte{"kek": kek}},
	} {
		if err := kube.Create(ctx, obj); err != nil {
			tb.Fatal(err)
		}
	}
	return p, kube
}

// pairRun is one DKMContainer on the pair and a reconciler of its own, driven by the test.
type pairRun struct {
	r   *DKMContainerReconciler
	obj *dkmv1.DKMContainer
}

// newPairRun creates a DKMContainer listing both DCs (DC1, the PDC, first).
func newPairRun(tb testing.TB, p *testenv.Pair, kube client.Client, name string, mutate func(*dkmv1.DKMContainer)) *pairRun {
	tb.Helper()
	obj := &dkmv1.DKMContainer{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: pairNS},
		Spec: dkmv1.DKMContainerSpec{
			Directory: dkmv1.DirectorySpec{
				URLs:              []string{p.DC1.URL, p.DC2.URL},
				BindSecretRef:     dkmv1.SecretReference{Name: "bind"},
				CABundleSecretRef: &dkmv1.SecretKeyReference{Name: "ca", Key: "ca.crt"},
				DialTimeout:       &metav1.Duration{Duration: 2 * time.Second},
			},
			Path:            "CN=DKM-" + name + ",CN=System," + p.DC1.BaseDN,
			ServiceAccounts: []string{p.DC1.NetBIOS + `\Administrator`},
			KeyProtection:   dkmv1.KeyProtectionSpec{Mode: dkmv1.KeyWrapped, KEKSecretRef: &dkmv1.SecretReference{Name: "kek"}},
		},
	}
	if mutate != nil {
		mutate(obj)
	}
	if err := kube.Create(tb.Context(), obj); err != nil {
		tb.Fatal(err)
	}
	return &pairRun{obj: obj, r: &DKMContainerReconciler{
		Client: kube, APIReader: kube, Recorder: events.NewFakeRecorder(1000),
		Directories: PoolFactory(directory.NewPool()), Keys: NewKeyStore(), Metrics: NewMetrics(nil),
		ClusterID: "pair", Retry: time.Second, CommitRetry: time.Second,
	}}
}

func (x *pairRun) reconcile(ctx context.Context) error {
	_, err := x.r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(x.obj)})
	return err
}

// BenchmarkFirstKeyCommit is the first key's reconcile work on the pair (create container, DC
// Manager and key, then commit: CryptoPolicy, status) with minKeyCopies 1 and 2: the difference
// is what durable commit adds in the operator (the reads of the other DC; the second pass).
// Excluded: the forced replication between the passes, and in production the wait for AD's own
// replication and CommitRetry (5 s).
func BenchmarkFirstKeyCommit(b *testing.B) {
	p, kube := startPairCluster(b)
	ctx := b.Context()
	for _, copies := range []int32{1, 2} {
		b.Run(fmt.Sprintf("minKeyCopies=%d", copies), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				x := newPairRun(b, p, kube, fmt.Sprintf("bench%d-%d", copies, i), func(o *dkmv1.DKMContainer) {
					o.Spec.Directory.MinKeyCopies = ptr.To(copies)
				})
				b.StartTimer()
				if err := x.reconcile(ctx); err != nil {
					b.Fatal(err)
				}
				if copies > 1 {
					b.StopTimer()
					if err := p.Replicate(ctx, p.DC2, p.DC1); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if err := x.reconcile(ctx); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if x.r.Keys.Get(client.ObjectKeyFromObject(x.obj)) == nil {
					b.Fatal("no key committed")
				}
				b.StartTimer()
			}
		})
	}
}
