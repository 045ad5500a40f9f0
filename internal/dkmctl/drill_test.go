package dkmctl

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/controllers"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

const drillWait = 90 * time.Second

// The restore drill (docs/testing.md): against a real API server with the operator running and
// two real Samba domains provisioned separately (different domain SIDs), a workload encrypts a
// value with its projected key; the container is backed up with dkmctl, its subtree deleted in
// AD (KeyLost), restored with dkmctl (Ready, identical fingerprints, the value decrypts); then
// the same backup goes into the other domain, where a DKMContainer adopts it and its replica's
// key decrypts the value.
func TestRestoreDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two Samba DCs and an API server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	demo, err := testenv.StartDC(ctx, testenv.DCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer demo.Close()
	other, err := testenv.StartDC(ctx, testenv.DCOptions{OtherDomain: true})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if demo.DomainSID == other.DomainSID {
		t.Fatalf("the two domains share the domain SID %s: the cross-domain restore would prove nothing", demo.DomainSID)
	}
	kube := startOperator(ctx, t)

	d := &drill{t: t, ctx: ctx, kube: kube, ns: "drill", dir: t.TempDir(), svc: map[string]testenv.Principal{}}
	d.namespace()
	pass := filepath.Join(d.dir, "passphrase")
	if err := os.WriteFile(pass, []byte("a drill passphrase, not a secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Create, and a workload encrypts a value with the key projected to its replica.
	src := d.dkm("vmm", demo, "CN=DKM-drill,CN=System,"+demo.BaseDN, dkmv1.ProvisioningCreate)
	before := d.waitReady(src)
	sealed := seal(t, d.replicaKey(src, "vmm-0"), "the value VMM encrypted")

	file := filepath.Join(d.dir, "vmm.age")
	out := d.dkmctl(ExitOK, "backup", "vmm", "-n", d.ns, "-o", file, "--passphrase-file", pass)
	if !strings.Contains(out, before.Status.ActiveKeyFingerprint) {
		t.Fatalf("the backup summary does not name the key's fingerprint:\n%s", out)
	}
	d.noKeyBytes(out, src, "vmm-0")
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	d.noKeyBytes(string(raw), src, "vmm-0")

	// Disaster: the container subtree is deleted in AD.
	if err := demo.DeleteTree(src.Spec.Path); err != nil {
		t.Fatal(err)
	}
	d.waitReason(src, dkmv1.ReasonKeyLost)

	out = d.dkmctl(ExitOK, "restore", "vmm", "-n", d.ns, "-i", file, "--passphrase-file", pass)
	d.noKeyBytes(out, src, "vmm-0")
	if strings.Contains(out, "DACL:") {
		t.Fatalf("a restore into the source domain remapped SIDs:\n%s", out)
	}
	after := d.waitReady(src)
	sameKeys(t, after, before)
	if after.Status.Container.GUID == before.Status.Container.GUID {
		t.Fatal("the container was restored under its old objectGUID: was it deleted at all?")
	}
	if got := open(t, d.replicaKey(src, "vmm-0"), sealed); got != "the value VMM encrypted" {
		t.Fatalf("decrypted %q", got)
	}
	// A second restore onto a container that holds keys again is refused and changes nothing.
	d.dkmctl(ExitFailed, "restore", "vmm", "-n", d.ns, "-i", file, "--passphrase-file", pass)
	sameKeys(t, d.waitReady(src), before)

	// The same backup into another, separately provisioned domain: a DKMContainer there that
	// adopts the path (ContainerMissing until the restore) gets the same keys.
	dst := d.dkm("vmm-other", other, "CN=DKM-drill,CN=System,"+other.BaseDN, dkmv1.ProvisioningAdopt)
	d.waitReason(dst, dkmv1.ReasonContainerMissing)
	out = d.dkmctl(ExitOK, "restore", "vmm-other", "-n", d.ns, "-i", file, "--passphrase-file", pass)
	remap := fmt.Sprintf("%s -> %s (svc-drill)", d.svc[demo.NetBIOS].SID, d.svc[other.NetBIOS].SID)
	if !strings.Contains(out, remap) || !strings.Contains(out, other.DomainSID+"-512") {
		t.Fatalf("the restore does not show the service account %q and Domain Admins remapped:\n%s", remap, out)
	}
	moved := d.waitReady(dst)
	sameKeys(t, moved, before)
	if got := open(t, d.replicaKey(dst, "vmm-other-0"), sealed); got != "the value VMM encrypted" {
		t.Fatalf("decrypted %q in the other domain", got)
	}
}

type drill struct {
	t    *testing.T
	ctx  context.Context
	kube client.Client
	ns   string
	dir  string
	// svc is the AD service account of each domain, by NetBIOS name.
	svc map[string]testenv.Principal
}

func startOperator(ctx context.Context, t *testing.T) client.Client {
	t.Helper()
	env, err := testenv.NewKube(ctx, filepath.Join("config", "crd", "bases"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := dkmv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	skip := true // one manager per run; -count=N runs several in this process
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Cache: controllers.CacheOptions(nil), Controller: config.Controller{SkipNameValidation: &skip}})
	if err != nil {
		t.Fatal(err)
	}
	pool := directory.NewPool()
	t.Cleanup(pool.Close)
	if _, err := controllers.Setup(mgr, controllers.Options{Directories: controllers.PoolFactory(pool),
		Metrics: controllers.NewMetrics(nil), Resync: 2 * time.Second, Retry: time.Second}); err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(mctx) }()
	t.Cleanup(func() { stop(); <-done })
	kube, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return kube
}

func (d *drill) namespace() {
	d.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: d.ns}})
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	d.secret("kek", map[string][]byte{"kek": kek})
	kek2 := make([]byte, 32)
	_, _ = rand.Read(kek2)
	d.secret("kek-other", map[string][]byte{"kek": kek2})
}

func (d *drill) create(obj client.Object) {
	d.t.Helper()
	if err := d.kube.Create(d.ctx, obj); err != nil {
		d.t.Fatal(err)
	}
}

func (d *drill) secret(name string, data map[string][]byte) {
	d.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.ns}, Data: data})
}

// dkm creates a DKMContainer on dc bound as Administrator, Wrapped, with one replica pod (name-0)
// running as a Kubernetes service account, and svc-drill as the AD service account.
func (d *drill) dkm(name string, dc *testenv.DC, path string, mode dkmv1.ProvisioningMode) *dkmv1.DKMContainer {
	d.t.Helper()
	svc, err := dc.CreateUser("svc-drill", "Svc!Passw0rd-drill")
	if err != nil {
		d.t.Fatal(err)
	}
	d.svc[dc.NetBIOS] = svc
	d.secret(name+"-bind", map[string][]byte{controllers.BindUsernameKey: []byte(dc.AdminUser), controllers.BindPasswordKey: []byte(dc.AdminPassword)})
	d.secret(name+"-ca", map[string][]byte{"ca.crt": dc.CAPEM})
	kek := "kek"
	if mode == dkmv1.ProvisioningAdopt {
		kek = "kek-other" // the target has its own KEK: the backup carries the keys unwrapped
	}
	d.create(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.ns}})
	obj := &dkmv1.DKMContainer{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.ns},
		Spec: dkmv1.DKMContainerSpec{
			Directory: dkmv1.DirectorySpec{URLs: []string{dc.URL}, BindSecretRef: dkmv1.SecretReference{Name: name + "-bind"},
				CABundleSecretRef: &dkmv1.SecretKeyReference{Name: name + "-ca", Key: "ca.crt"}},
			Path:            path,
			Provisioning:    mode,
			ServiceAccounts: []string{dc.NetBIOS + `\svc-drill`},
			KeyProtection:   dkmv1.KeyProtectionSpec{Mode: dkmv1.KeyWrapped, KEKSecretRef: &dkmv1.SecretReference{Name: kek}},
			Replicas: &dkmv1.ReplicasSpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
				ServiceAccountNames: []string{name}},
		},
	}
	d.create(obj)
	d.create(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-0", Namespace: d.ns, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{ServiceAccountName: name, Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	})
	return obj
}

func (d *drill) get(obj *dkmv1.DKMContainer) *dkmv1.DKMContainer {
	d.t.Helper()
	out := &dkmv1.DKMContainer{}
	if err := d.kube.Get(d.ctx, client.ObjectKeyFromObject(obj), out); err != nil {
		d.t.Fatal(err)
	}
	return out
}

func (d *drill) waitReason(obj *dkmv1.DKMContainer, reason string) *dkmv1.DKMContainer {
	d.t.Helper()
	var last string
	for deadline := time.Now().Add(drillWait); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		got := d.get(obj)
		if c := meta.FindStatusCondition(got.Status.Conditions, dkmv1.ConditionReady); c != nil {
			last = c.Reason + ": " + c.Message
			if c.Reason == reason {
				return got
			}
		}
	}
	d.t.Fatalf("%s never reached %s; last Ready: %s", obj.Name, reason, last)
	return nil
}

func (d *drill) waitReady(obj *dkmv1.DKMContainer) *dkmv1.DKMContainer {
	d.t.Helper()
	return d.waitReason(obj, dkmv1.ReasonReady)
}

// replicaKey is the active key the operator projected to a replica pod.
func (d *drill) replicaKey(obj *dkmv1.DKMContainer, pod string) []byte {
	d.t.Helper()
	want := d.get(obj).Status.ActiveKeyID
	for deadline := time.Now().Add(drillWait); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		s := &corev1.Secret{}
		err := d.kube.Get(d.ctx, client.ObjectKey{Namespace: d.ns, Name: dkmv1.KeySecretName(obj.Name, pod)}, s)
		if err == nil && string(s.Data[controllers.SecretKeyActiveID]) == want {
			return s.Data[controllers.SecretKeyActive]
		}
	}
	d.t.Fatalf("no key Secret with key %s for pod %s", want, pod)
	return nil
}

// noKeyBytes fails when text shows the replica's key in any usual encoding.
func (d *drill) noKeyBytes(text string, obj *dkmv1.DKMContainer, pod string) {
	d.t.Helper()
	key := d.replicaKey(obj, pod)
	for _, form := range []string{string(key), hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key),
		base64.RawStdEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key)} {
		if strings.Contains(text, form) {
			d.t.Fatalf("key bytes in clear in the output or file")
		}
	}
}

func (d *drill) dkmctl(want int, args ...string) string {
	d.t.Helper()
	var stdout, stderr bytes.Buffer
	code := Run(d.ctx, args, Env{Stdout: &stdout, Stderr: &stderr, Kube: d.kube})
	d.t.Logf("dkmctl %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	if code != want {
		d.t.Fatalf("dkmctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, stdout.String(), stderr.String())
	}
	return stdout.String() + stderr.String()
}

// sameKeys: the same active key and the same versions, by ID and fingerprint.
func sameKeys(t *testing.T, got, want *dkmv1.DKMContainer) {
	t.Helper()
	if got.Status.ActiveKeyID != want.Status.ActiveKeyID || got.Status.ActiveKeyFingerprint != want.Status.ActiveKeyFingerprint {
		t.Fatalf("active key %s %s, want %s %s", got.Status.ActiveKeyID, got.Status.ActiveKeyFingerprint,
			want.Status.ActiveKeyID, want.Status.ActiveKeyFingerprint)
	}
	ids := func(o *dkmv1.DKMContainer) []string {
		var out []string
		for _, k := range o.Status.Keys {
			out = append(out, k.ID+" "+k.Fingerprint)
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(ids(got), ids(want)) {
		t.Fatalf("versions %v, want %v", ids(got), ids(want))
	}
}

// seal is the test workload: AES-256-GCM under the projected key, nonce first.
func seal(t *testing.T, key []byte, value string) []byte {
	t.Helper()
	aead := gcm(t, key)
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	return aead.Seal(nonce, nonce, []byte(value), nil)
}

func open(t *testing.T, key, sealed []byte) string {
	t.Helper()
	aead := gcm(t, key)
	n := aead.NonceSize()
	plain, err := aead.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		t.Fatalf("the value does not decrypt with the restored key: %v", err)
	}
	return string(plain)
}

func gcm(t *testing.T, key []byte) cipher.AEAD {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return aead
}
