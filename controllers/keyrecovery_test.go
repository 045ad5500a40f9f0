package controllers

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/keys"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

// newPodKeyWithin is how soon, after an operator restart while the DC is down, a new replica
// pod must hold its key Secret (issue 15: "within a second").
const newPodKeyWithin = time.Second

// TestKeysAfterRestartWhileDCDown restarts the operator (a fresh manager and KeyStore, as a new
// process would have) while the only DC is down, against a real kube-apiserver and Samba:
//   - a new replica pod gets its Secret within a second, from the existing replica Secrets;
//   - a Secret whose key does not match the fingerprint in status is never used (one replica's
//     Secret is overwritten with other bytes before the restart);
//   - a status whose key fields someone other than the operator wrote is not trusted, also
//     after the operator re-applied its status and restarted once more;
//   - AD stays the source of truth: it was rotated behind the operator's back while it was
//     stopped, and once the DC is back every replica gets what AD holds.
func TestKeysAfterRestartWhileDCDown(t *testing.T) {
	ctx := t.Context()
	g := NewWithT(t)
	dc, err := testenv.StartDC(ctx, testenv.DCOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(dc.Close)
	env, err := testenv.NewKube(ctx, filepath.Join("config", "crd", "bases"))
	g.Expect(err).NotTo(HaveOccurred())
	cfg, err := env.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	sch := unitScheme(t)
	c, err := client.New(cfg, client.Options{Scheme: sch})
	g.Expect(err).NotTo(HaveOccurred())

	// A namespace with the bind, CA and KEK Secrets, two DKMContainers with replicas, and pods.
	const ns = "restart"
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	create := func(obj client.Object) { t.Helper(); g.Expect(c.Create(ctx, obj)).To(Succeed()) }
	create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	create(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "vmm", Namespace: ns}})
	for name, data := range map[string]map[string][]byte{
		"bind": {BindUsernameKey: []byte(dc.AdminUser), BindPasswordKey: []byte(dc.AdminPassword)},
		"ca":   {"ca.crt": dc.CAPEM},
		"kek":  {"kek": kek},
	} {
		create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: data})
	}
	svc, err := dc.CreateUser("svc-restart", "Svc!Passw0rd-restart")
	g.Expect(err).NotTo(HaveOccurred())
	dkm := func(name string) *dkmv1.DKMContainer {
		return &dkmv1.DKMContainer{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: dkmv1.DKMContainerSpec{
				Directory: dkmv1.DirectorySpec{
					URLs:              []string{dc.URL},
					BindSecretRef:     dkmv1.SecretReference{Name: "bind"},
					CABundleSecretRef: &dkmv1.SecretKeyReference{Name: "ca", Key: "ca.crt"},
				},
				Path:            "CN=DKM-" + name + ",CN=System," + dc.BaseDN,
				ServiceAccounts: []string{svc.DownLevel(dc)},
				KeyProtection:   dkmv1.KeyProtectionSpec{Mode: dkmv1.KeyWrapped, KEKSecretRef: &dkmv1.SecretReference{Name: "kek"}},
				Replicas: &dkmv1.ReplicasSpec{
					Selector:            metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
					ServiceAccountNames: []string{"vmm"},
				},
			},
		}
	}
	pod := func(app, name string) {
		t.Helper()
		create(&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": app}},
			Spec:       corev1.PodSpec{ServiceAccountName: "vmm", Containers: []corev1.Container{{Name: "vmm", Image: "vmm:2012"}}},
		})
	}
	// keysOf names what a replica Secret holds by a digest, so a failure never prints key bytes.
	keysOf := func(data map[string][]byte) string {
		if data == nil {
			return ""
		}
		h := sha256.New()
		for _, k := range slices.Sorted(maps.Keys(data)) {
			fmt.Fprintf(h, "%q=%x;", k, data[k])
		}
		return fmt.Sprintf("%d entries, sha256 %x", len(data), h.Sum(nil)[:8])
	}
	secretData := func(obj *dkmv1.DKMContainer, podName string) map[string][]byte {
		s := &corev1.Secret{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: dkmv1.KeySecretName(obj.Name, podName)}, s); err != nil {
			return nil
		}
		return s.Data
	}
	cond := func(obj *dkmv1.DKMContainer, t string) metav1.Condition {
		cur := &dkmv1.DKMContainer{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), cur); err == nil {
			if found := meta.FindStatusCondition(cur.Status.Conditions, t); found != nil {
				return *found
			}
		}
		return metav1.Condition{}
	}

	// vmm is the DKMContainer whose keys are recovered; adfs the one whose status is forged.
	vmm, adfs := dkm("vmm"), dkm("adfs")
	op := startRestartOperator(t, cfg, sch)
	create(vmm)
	create(adfs)
	pod("vmm", "vmm-0")
	pod("vmm", "vmm-1")
	pod("adfs", "adfs-0")
	for _, obj := range []*dkmv1.DKMContainer{vmm, adfs} {
		g.Eventually(func() metav1.ConditionStatus { return cond(obj, dkmv1.ConditionReady).Status }, 60*time.Second, 100*time.Millisecond).
			Should(Equal(metav1.ConditionTrue), "%s Ready", obj.Name)
	}
	g.Eventually(func() map[string][]byte { return secretData(vmm, "vmm-1") }, 10*time.Second, 50*time.Millisecond).ShouldNot(BeNil())
	g.Eventually(func() map[string][]byte { return secretData(adfs, "adfs-0") }, 10*time.Second, 50*time.Millisecond).ShouldNot(BeNil())
	served := secretData(vmm, "vmm-1")
	op.stop()

	// While the operator is stopped: AD moves on (a new active key), the DC goes down, one of
	// vmm's replica Secrets gets other bytes, and someone rewrites adfs's status to fingerprint
	// the bytes they put in its replica's Secret.
	rotated := rotateInAD(t, dc, vmm.Spec.Path, kek)
	g.Expect(dc.Stop()).To(Succeed())
	forged := bytes.Repeat([]byte{0x42}, keys.KeySize)
	overwriteKeys(t, c, ns, dkmv1.KeySecretName(vmm.Name, "vmm-0"), forged)
	overwriteKeys(t, c, ns, dkmv1.KeySecretName(adfs.Name, "adfs-0"), forged)
	forgeStatus(t, c, adfs, forged)

	// The restart: the new pod of vmm is served from vmm-1's Secret, never from vmm-0's.
	op = startRestartOperator(t, cfg, sch)
	start := time.Now()
	pod("vmm", "vmm-2")
	pod("adfs", "adfs-1")
	g.Eventually(func() string { return keysOf(secretData(vmm, "vmm-2")) }, newPodKeyWithin, 10*time.Millisecond).
		Should(Equal(keysOf(served)), "the new pod holds the keys of the intact replica Secret")
	t.Logf("new pod's key Secret %v after its creation, %v after the operator started, with the DC down",
		time.Since(start).Round(time.Millisecond), time.Since(op.started).Round(time.Millisecond))
	g.Eventually(func() string { return keysOf(secretData(vmm, "vmm-0")) }, 10*time.Second, 50*time.Millisecond).
		Should(Equal(keysOf(served)), "the overwritten Secret is restored from the verified keys")
	g.Eventually(func() string { return cond(vmm, dkmv1.ConditionKeyReady).Reason }, 10*time.Second, 50*time.Millisecond).
		Should(Equal(dkmv1.ReasonKeysFromReplicaSecrets))
	g.Expect(cond(vmm, dkmv1.ConditionKeyReady).Message).To(ContainSubstring("served to replicas from their existing Secrets"))
	g.Expect(cond(vmm, dkmv1.ConditionDirectoryReachable).Status).To(Equal(metav1.ConditionFalse))

	// adfs: status not written by the operator is not trusted, so no key is served at all,
	// also after the operator re-applied its status and was restarted once more.
	for restart := range 2 {
		g.Eventually(func() string { return cond(adfs, dkmv1.ConditionKeyReady).Message }, 10*time.Second, 50*time.Millisecond).
			Should(ContainSubstring("was not written by the operator"), "restart %d", restart)
		g.Consistently(func() string { return keysOf(secretData(adfs, "adfs-1")) }, 2*time.Second, 100*time.Millisecond).
			Should(BeEmpty(), "restart %d: no key from an untrusted status", restart)
		g.Expect(bytes.Equal(secretData(adfs, "adfs-0")[SecretKeyActive], forged)).To(BeTrue(), "left alone, not restored from forged status")
		op.stop()
		op = startRestartOperator(t, cfg, sch)
	}

	// The DC is back: AD is read again and every replica gets what AD holds.
	g.Expect(dc.Start(ctx)).To(Succeed())
	back := time.Now()
	for _, name := range []string{"vmm-0", "vmm-1", "vmm-2"} {
		g.Eventually(func() string { return string(secretData(vmm, name)[SecretKeyActiveID]) }, 30*time.Second, 50*time.Millisecond).
			Should(Equal(rotated), "%s follows AD's active key", name)
	}
	t.Logf("AD re-read and projected %v after the DC came back", time.Since(back).Round(time.Millisecond))
	g.Expect(op.store.Recovered(client.ObjectKeyFromObject(vmm))).To(BeFalse())
	g.Eventually(func() string { return cond(vmm, dkmv1.ConditionKeyReady).Reason }, 10*time.Second, 50*time.Millisecond).
		Should(Equal(dkmv1.ReasonReady))
	g.Eventually(func() string { return keysOf(secretData(adfs, "adfs-1")) }, 30*time.Second, 50*time.Millisecond).
		ShouldNot(BeEmpty())
	g.Expect(bytes.Equal(secretData(adfs, "adfs-1")[SecretKeyActive], forged)).To(BeFalse(), "AD's key, not the forged one")
}

type restartOperator struct {
	store   *KeyStore
	started time.Time
	stop    func()
}

// startRestartOperator runs the operator's controllers in a manager of their own, as a freshly
// started process would: an empty KeyStore, an empty directory pool, caches synced anew.
func startRestartOperator(t *testing.T, cfg *rest.Config, sch *runtime.Scheme) *restartOperator {
	t.Helper()
	skip := true
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:     sch,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Cache:      CacheOptions(nil),
		Controller: config.Controller{SkipNameValidation: &skip},
	})
	if err != nil {
		t.Fatal(err)
	}
	pool := directory.NewPool()
	store, err := Setup(mgr, Options{Directories: PoolFactory(pool), Metrics: NewMetrics(nil), Resync: testResync, Retry: testRetry})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	op := &restartOperator{store: store, started: time.Now()}
	go func() { done <- mgr.Start(ctx) }()
	var once bool
	op.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
		pool.Close()
	}
	t.Cleanup(op.stop)
	return op
}

// rotateInAD adds a key version to the container and makes it active, as another writer with
// the KEK would, and returns its ID.
func rotateInAD(t *testing.T, dc *testenv.DC, path string, kek []byte) string {
	t.Helper()
	ctx := t.Context()
	pool := directory.NewPool()
	defer pool.Close()
	d, err := pool.Client(directory.Config{URLs: []string{dc.URL}, Username: dc.AdminUser, Password: dc.AdminPassword, CAPEM: dc.CAPEM})
	if err != nil {
		t.Fatal(err)
	}
	obs, err := d.Observe(ctx, path)
	if err != nil || len(obs.Managers) != 1 || obs.Managers[0].Policy == nil || obs.Container.Owner == nil {
		t.Fatalf("observing %s: %v (%+v)", path, err, obs)
	}
	m := obs.Managers[0]
	container, err := keys.ObjectGUIDFromBytes(obs.Container.GUID.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keys.ParseKEKSecret(map[string][]byte{"kek": kek})
	if err != nil {
		t.Fatal(err)
	}
	p, err := keys.NewProtector(keys.ModeWrapped, kr)
	if err != nil {
		t.Fatal(err)
	}
	var stored []keys.StoredKey
	for _, k := range m.Keys {
		stored = append(stored, keys.StoredKey{ID: k.ID, Blob: k.Blob, Created: k.Created})
	}
	ring, err := keys.LoadRing(container, m.Policy.ActiveKeyID, stored, p)
	if err != nil {
		t.Fatal(err)
	}
	_, next, err := ring.Rotate(p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.AddKey(ctx, m.DN, next.ID, next.Blob, *obs.Container.Owner); err != nil {
		t.Fatal(err)
	}
	if err := d.SetActiveKey(ctx, m.DN, m.Policy.ActiveKeyID, next.ID, *obs.Container.Owner); err != nil {
		t.Fatal(err)
	}
	return next.ID
}

// overwriteKeys replaces every key in a replica Secret with b.
func overwriteKeys(t *testing.T, c client.Client, ns, name string, b []byte) {
	t.Helper()
	s := &corev1.Secret{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		t.Fatal(err)
	}
	for k := range s.Data {
		if k != SecretKeyActiveID {
			s.Data[k] = b
		}
	}
	if err := c.Update(t.Context(), s); err != nil {
		t.Fatal(err)
	}
}

// forgeStatus rewrites obj's key fingerprints in status to those of b, as a person with write
// access to dkmcontainers/status (but not the operator's field manager) could.
func forgeStatus(t *testing.T, c client.Client, obj *dkmv1.DKMContainer, b []byte) {
	t.Helper()
	cur := &dkmv1.DKMContainer{}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(obj), cur); err != nil {
		t.Fatal(err)
	}
	m, err := keys.NewMaterial(b)
	if err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(cur.DeepCopy())
	cur.Status.ActiveKeyFingerprint = m.Fingerprint().String()
	for i := range cur.Status.Keys {
		cur.Status.Keys[i].Fingerprint = m.Fingerprint().String()
	}
	if err := c.Status().Patch(t.Context(), cur, patch, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
}
