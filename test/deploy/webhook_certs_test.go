//go:build linux

package deploy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
	"github.com/dkm-operator/dkm-operator/internal/webhook"
)

// TestSelfManagedWebhookCertificates runs the real operator binary, as its Deployment says,
// against a real kube-apiserver on which the shipped manifests are installed, with the RBAC they
// grant its ServiceAccount, and checks the certificate story end to end: the operator fills the
// empty certificate Secret with a CA and a serving certificate for the webhook Service's DNS
// name, injects the CA into its MutatingWebhookConfiguration, serves the webhook with that
// certificate once it is mounted, the API server calls it through the shipped Service reference,
// and a certificate Secret reset (what a GitOps tool re-applying it would do) heals.
//
// What a cluster would do and envtest cannot is played by the test, as little as possible:
//   - the kubelet: the Deployment mounts the certificate Secret as its certificate directory, so
//     the test copies the Secret's keys into that directory (cert-controller writes only the
//     Secret, and waits for tls.crt to appear);
//   - kube-proxy: the API server resolves the webhook Service to its cluster IP and dials it
//     through an egress selector (an HTTP CONNECT proxy on a Unix socket, run by the test), which
//     connects the cluster IP to the operator's webhook port on 127.0.0.1. The API server checks
//     the certificate against the injected caBundle for <service>.<namespace>.svc, as in a cluster.
//
// The operator listens on 127.0.0.1 only (--webhook-host), with leader election off.
// startKubeWithNamespacedInstall starts a kube-apiserver with egress and applies
// `kustomize build config/namespaced` (watching the namespace vmm) to it.
func startKubeWithNamespacedInstall(t *testing.T) *kubeWithEgress {
	t.Helper()
	k := startKubeWithEgress(t)
	createNamespaces(t, k.c, "vmm")
	objs := kustomizeBuild(t, "config/namespaced")
	install(t, k.c, objs)
	for _, u := range objs {
		if u.GetKind() == "Namespace" || u.GetKind() == "CustomResourceDefinition" {
			continue
		}
		if err := apply(t.Context(), k.c, u, false); err != nil {
			t.Fatalf("applying %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	return k
}

func TestSelfManagedWebhookCertificates(t *testing.T) {
	manager := buildOperator(t)
	t.Run("kustomize namespaced", func(t *testing.T) {
		t.Parallel()
		k := startKubeWithNamespacedInstall(t)
		checkSelfManagedCerts(t, k, manager, operatorNS, "dkm-operator-controller-manager")
	})
	t.Run("helm cluster-wide, another release name", func(t *testing.T) {
		t.Parallel()
		k := startKubeWithEgress(t)
		createNamespaces(t, k.c, "vmm")
		helmOn(t, k.env)("install", "dkm", chartDir, "--namespace", "ops", "--create-namespace", "--timeout", "2m")
		checkSelfManagedCerts(t, k, manager, "ops", "dkm-dkm-operator-controller-manager")
	})
}

// checkSelfManagedCerts runs the operator of the installed Deployment and checks its webhook.
func checkSelfManagedCerts(t *testing.T, k *kubeWithEgress, binary, namespace, deployment string) {
	ctx := t.Context()
	c := k.c
	d := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: deployment}, d); err != nil {
		t.Fatal(err)
	}
	names := namesFromArgs(t, d)
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: names.config}, mwc); err != nil {
		t.Fatalf("the installed webhook configuration (--webhook-config-name): %v", err)
	}
	svc := &corev1.Service{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: names.service}, svc); err != nil {
		t.Fatalf("the installed webhook Service (--webhook-service-name): %v", err)
	}
	dnsName := names.service + "." + namespace + ".svc"
	op := startOperator(t, k, binary, d)
	k.route(net.JoinHostPort(svc.Spec.ClusterIP, "443"), op.webhookAddr)
	started := time.Now()
	since := func() time.Duration { return time.Since(started).Round(time.Millisecond) }

	// The Secret, shipped empty, holds a CA and a certificate for the Service's DNS name.
	secret := &corev1.Secret{}
	poll(t, "the operator fills the certificate Secret", 30*time.Second, func() (bool, error) {
		err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: names.secret}, secret)
		return err == nil && len(secret.Data["tls.crt"]) > 0, err
	})
	for _, key := range []string{"ca.crt", "ca.key", "tls.crt", "tls.key"} {
		if len(secret.Data[key]) == 0 {
			t.Errorf("certificate Secret lacks %s", key)
		}
	}
	ca := secret.Data["ca.crt"]
	verifyChain(t, secret.Data["tls.crt"], ca, dnsName)
	t.Logf("%v: certificate Secret filled", since())

	// Its CA is injected into the webhook configuration.
	caBundle := waitCABundle(t, c, names.config, func(b []byte) bool { return len(b) > 0 })
	if !bytes.Equal(caBundle, ca) {
		t.Fatalf("injected caBundle is not the Secret's ca.crt")
	}

	// The kubelet (the test) puts the certificate where the operator reads it.
	poll(t, "the certificate Secret is projected into the certificate directory", 10*time.Second, func() (bool, error) {
		for _, f := range []string{"tls.crt", "tls.key"} {
			if data, err := os.ReadFile(filepath.Join(op.certDir, f)); err != nil || !bytes.Equal(data, secret.Data[f]) {
				return false, err
			}
		}
		return true, nil
	})

	// The webhook serves that certificate to a client that trusts only the injected bundle and
	// asks for the Service's DNS name, and mutates an annotated pod.
	waitServing(t, op.webhookAddr, dnsName, caBundle)
	t.Logf("%v: CA injected, webhook serving", since())
	reviewDirectly(t, op.webhookAddr, dnsName, caBundle)

	// The API server, told only the Service and the injected bundle, calls it for pods created in
	// an opted-in namespace, and not for others.
	viaAPIServer(t, c, op, k)

	ready, err := http.Get("http://" + op.probeAddr + "/readyz")
	if err != nil || ready.StatusCode != http.StatusOK {
		t.Errorf("/readyz: %v %v", ready, err)
	} else {
		_ = ready.Body.Close()
	}

	// A reset Secret (a sync that re-creates it, or re-applies empty data) heals: a new CA and
	// certificate, injected again, and served once the kubelet has refreshed the files.
	secret.Data = nil
	if err := c.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	reset := time.Now()
	newBundle := waitCABundle(t, c, names.config, func(b []byte) bool { return len(b) > 0 && !bytes.Equal(b, caBundle) })
	poll(t, "the operator refills the reset Secret", 30*time.Second, func() (bool, error) {
		err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: names.secret}, secret)
		return err == nil && bytes.Equal(secret.Data["ca.crt"], newBundle) && len(secret.Data["tls.crt"]) > 0, err
	})
	verifyChain(t, secret.Data["tls.crt"], newBundle, dnsName)
	waitServing(t, op.webhookAddr, dnsName, newBundle)
	t.Logf("reset Secret: new CA injected and served %v later", time.Since(reset).Round(time.Millisecond))
	viaAPIServer(t, c, op, k)

	op.stop(t)
	if logs := op.output(); strings.Contains(logs, "forbidden") {
		t.Errorf("the operator was refused something with the shipped RBAC:\n%s", grepLines(logs, "forbidden"))
	}
}

// viaAPIServer creates an annotated pod in an opted-in namespace and an unlabelled one.
func viaAPIServer(t *testing.T, c client.Client, op *operatorProcess, k *kubeWithEgress) {
	t.Helper()
	ctx := t.Context()
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "opted-in", Labels: map[string]string{webhook.InjectionLabel: "enabled"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
	} {
		if err := c.Create(ctx, ns); client.IgnoreAlreadyExists(err) != nil {
			t.Fatal(err)
		}
	}
	calls := k.calls()
	for _, ns := range []string{"opted-in", "plain"} {
		pod := testPod(ns, "")
		pod.GenerateName, pod.Name = "replica-", ""
		if err := c.Create(ctx, pod); err != nil {
			t.Fatalf("creating a pod in %s: %v\noperator output:\n%s", ns, err, op.output())
		}
		injected := slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool {
			return v.Name == webhook.VolumeName && v.Secret != nil && v.Secret.SecretName == dkmv1.KeySecretName("vmm", pod.Name)
		})
		if injected != (ns == "opted-in") {
			t.Errorf("pod %s/%s: key volume injected %v, volumes %+v", ns, pod.Name, injected, pod.Spec.Volumes)
		}
	}
	if k.calls() == calls {
		t.Error("the API server did not call the webhook through its Service")
	}
}

func testPod(namespace, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Annotations: map[string]string{dkmv1.AnnotationInject: "vmm"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "vmm", Image: "registry.example/vmm:1"}}},
	}
}

// reviewDirectly POSTs an AdmissionReview to the webhook as the API server would.
func reviewDirectly(t *testing.T, addr, serverName string, caBundle []byte) {
	t.Helper()
	raw, err := json.Marshal(testPod("vmm", "replica-0"))
	if err != nil {
		t.Fatal(err)
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "0f2d5b52-7c0a-4d0e-9d6b-1b2c3d4e5f60",
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "vmm", Name: "replica-0", Operation: admissionv1.Create,
			Object: k8sruntime.RawExtension{Raw: raw},
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	httpc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: trusting(t, serverName, caBundle)}}
	resp, err := httpc.Post("https://"+addr+webhook.Path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Response == nil {
		t.Fatalf("decoding the webhook's answer (%s): %v", resp.Status, err)
	}
	if !out.Response.Allowed || out.Response.UID != review.Request.UID || out.Response.PatchType == nil ||
		*out.Response.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("webhook answer: %+v", out.Response)
	}
	type operation struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	var patch []operation
	if err := json.Unmarshal(out.Response.Patch, &patch); err != nil {
		t.Fatal(err)
	}
	want := dkmv1.KeySecretName("vmm", "replica-0")
	if !slices.ContainsFunc(patch, func(p operation) bool {
		return p.Op == "add" && strings.HasPrefix(p.Path, "/spec/volumes") && bytes.Contains(p.Value, []byte(`"`+want+`"`))
	}) {
		t.Errorf("patch %s does not add the volume of Secret %s", out.Response.Patch, want)
	}
}

// trusting is a TLS client configuration that trusts only caBundle, for serverName.
func trusting(t *testing.T, serverName string, caBundle []byte) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle) {
		t.Fatal("the CA bundle holds no PEM certificate")
	}
	return &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
}

// waitServing waits until the webhook's TLS handshake verifies against caBundle for serverName.
func waitServing(t *testing.T, addr, serverName string, caBundle []byte) {
	t.Helper()
	cfg := trusting(t, serverName, caBundle)
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: cfg}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if last = err; err != nil {
			return false, nil
		}
		_ = conn.Close()
		return true, nil
	})
	if err != nil {
		t.Fatalf("the webhook on %s does not serve a certificate for %s from the injected CA: %v", addr, serverName, last)
	}
}

func verifyChain(t *testing.T, certPEM, caPEM []byte, dnsName string) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no PEM certificate")
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("tls.crt holds no PEM block")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: dnsName, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("tls.crt does not chain to ca.crt for %s: %v", dnsName, err)
	}
}

func waitCABundle(t *testing.T, c client.Client, name string, ok func([]byte) bool) []byte {
	t.Helper()
	var bundle []byte
	poll(t, "the CA bundle is injected into "+name, 30*time.Second, func() (bool, error) {
		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := c.Get(t.Context(), client.ObjectKey{Name: name}, mwc); err != nil {
			return false, err
		}
		for _, w := range mwc.Webhooks {
			if !ok(w.ClientConfig.CABundle) {
				return false, nil
			}
			bundle = w.ClientConfig.CABundle
		}
		return len(mwc.Webhooks) > 0, nil
	})
	return bundle
}

func poll(t *testing.T, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		done, err := cond()
		last = err
		return done, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %v (last error: %v)", what, timeout, last)
	}
}

func grepLines(s, substr string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// --- the operator process ---

// buildOperator builds the operator binary (main.go at the repository root) for one test.
func buildOperator(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "manager")
	start := time.Now()
	if _, stderr, err := run(t, nil, "go", "build", "-o", path, "."); err != nil {
		t.Fatalf("go build: %v\n%s", err, stderr)
	}
	t.Logf("built the operator in %v", time.Since(start).Round(time.Millisecond))
	return path
}

type operatorProcess struct {
	cmd                                 *exec.Cmd
	done                                chan error
	out                                 *syncBuffer
	certDir                             string
	webhookAddr, probeAddr, metricsAddr string
	stopOnce                            sync.Once
}

// startOperator runs the binary with the installed Deployment's args and env, as its
// ServiceAccount, with what a test machine needs instead: loopback addresses (the metrics
// endpoint keeps the Deployment's other metrics flags), a temporary certificate directory
// (filled from the mounted Secret by the test, as the kubelet would) and no leader election.
// extraArgs come last, so they override (--leader-elect=true puts leader election back).
func startOperator(t *testing.T, k *kubeWithEgress, binary string, d *appsv1.Deployment, extraArgs ...string) *operatorProcess {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	sa := d.Spec.Template.Spec.ServiceAccountName
	user, err := k.env.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + d.Namespace + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + d.Namespace, "system:authenticated"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}

	// The certificate directory: the Deployment mounts a Secret at --webhook-cert-dir.
	mountPath := flagValue(t, c.Args, "webhook-cert-dir")
	m := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == mountPath })
	if m < 0 {
		t.Fatalf("the Deployment mounts nothing at %s", mountPath)
	}
	v := slices.IndexFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[m].Name })
	if v < 0 || d.Spec.Template.Spec.Volumes[v].Secret == nil {
		t.Fatalf("the certificate directory is not a Secret volume")
	}
	op := &operatorProcess{done: make(chan error, 1), out: &syncBuffer{}, certDir: filepath.Join(dir, "serving-certs")}
	if err := os.Mkdir(op.certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, stopKubelet := context.WithCancel(context.Background())
	kubeletDone := make(chan struct{})
	go func() {
		defer close(kubeletDone)
		projectSecret(ctx, k.c, d.Namespace, d.Spec.Template.Spec.Volumes[v].Secret.SecretName, op.certDir)
	}()
	t.Cleanup(func() { stopKubelet(); <-kubeletDone })

	op.webhookAddr, op.probeAddr, op.metricsAddr = freeLoopbackAddr(t), freeLoopbackAddr(t), freeLoopbackAddr(t)
	_, webhookPort, _ := net.SplitHostPort(op.webhookAddr)
	args := slices.DeleteFunc(slices.Clone(c.Args), func(a string) bool {
		return strings.HasPrefix(a, "--leader-elect") || strings.HasPrefix(a, "--metrics-bind-address") ||
			strings.HasPrefix(a, "--health-probe-bind-address")
	})
	args = append(args, "--leader-elect=false", "--metrics-bind-address="+op.metricsAddr, "--health-probe-bind-address="+op.probeAddr,
		"--webhook-host=127.0.0.1", "--webhook-port="+webhookPort, "--webhook-cert-dir="+op.certDir)
	args = append(args, extraArgs...)
	env := []string{"KUBECONFIG=" + kubeconfigPath, "HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env = append(env, e.Name+"="+d.Namespace)
		default:
			t.Fatalf("env %s: the test cannot resolve %+v", e.Name, e.ValueFrom)
		}
	}
	t.Logf("operator args: %v", args)

	started := make(chan error, 1)
	go func() {
		// The parent-death signal is tied to the thread that started the child: keep it.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		op.cmd = exec.Command(binary, args...)
		op.cmd.Env = env
		op.cmd.Stdout, op.cmd.Stderr = op.out, op.out
		op.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := op.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		op.done <- op.cmd.Wait()
	}()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		op.stop(t)
		if t.Failed() {
			t.Logf("operator output:\n%s", op.output())
		}
	})
	return op
}

// stop sends SIGTERM and expects a clean exit.
func (op *operatorProcess) stop(t *testing.T) {
	t.Helper()
	op.stopOnce.Do(func() {
		_ = op.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-op.done:
			if err != nil {
				t.Errorf("the operator did not exit cleanly on SIGTERM: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = op.cmd.Process.Kill()
			<-op.done
			t.Error("the operator did not stop within 30s of SIGTERM")
		}
	})
}

func (op *operatorProcess) output() string { return op.out.String() }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// projectSecret plays the kubelet's Secret volume: it keeps dir holding the Secret's keys as
// files, each replaced atomically, until ctx ends.
func projectSecret(ctx context.Context, c client.Client, namespace, name, dir string) {
	var seen map[string][]byte
	for ctx.Err() == nil {
		s := &corev1.Secret{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, s); err == nil && !maps.EqualFunc(s.Data, seen, bytes.Equal) {
			for key, value := range s.Data {
				tmp := filepath.Join(dir, "."+key+".tmp")
				if os.WriteFile(tmp, value, 0o644) == nil {
					_ = os.Rename(tmp, filepath.Join(dir, key))
				}
			}
			seen = s.Data
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// --- the API server, with an egress proxy standing in for kube-proxy ---

type kubeWithEgress struct {
	env *envtest.Environment
	c   client.Client

	mu     sync.Mutex
	routes map[string]string // cluster IP:port -> loopback address
	n      int               // connections routed
}

func (k *kubeWithEgress) route(from, to string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.routes[from] = to
}

func (k *kubeWithEgress) calls() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.n
}

// startKubeWithEgress starts envtest's kube-apiserver with its "cluster" egress (webhooks,
// among others) sent through an HTTP CONNECT proxy on a Unix socket that the test runs.
func startKubeWithEgress(t *testing.T) *kubeWithEgress {
	t.Helper()
	dir, err := os.MkdirTemp("", "dkm-egress-") // short: a Unix socket path has ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	k := &kubeWithEgress{routes: map[string]string{}}
	socket := filepath.Join(dir, "egress.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go k.serveEgress(l)
	config := filepath.Join(dir, "egress.yaml")
	if err := os.WriteFile(config, fmt.Appendf(nil, `apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %s
`, socket), 0o600); err != nil {
		t.Fatal(err)
	}

	env, err := testenv.NewKube(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	env.ControlPlane.GetAPIServer().Configure().Set("egress-selector-config-file", config)
	start := time.Now()
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})
	t.Logf("kube-apiserver up in %v", time.Since(start).Round(time.Millisecond))
	k.env = env
	if k.c, err = client.New(cfg, client.Options{Scheme: clientgoscheme.Scheme}); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *kubeWithEgress) serveEgress(l net.Listener) {
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		go k.tunnel(conn)
	}
}

// tunnel answers one CONNECT: routed destinations are connected, anything else refused.
func (k *kubeWithEgress) tunnel(conn net.Conn) {
	defer func() { _ = conn.Close() }()
	br := bufio.NewReader(conn)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	k.mu.Lock()
	to, ok := k.routes[req.Host]
	if ok {
		k.n++
	}
	k.mu.Unlock()
	if req.Method != http.MethodConnect || !ok {
		_, _ = io.WriteString(conn, "HTTP/1.1 403 Forbidden\r\n\r\n")
		return
	}
	upstream, err := net.DialTimeout("tcp", to, 5*time.Second)
	if err != nil {
		_, _ = io.WriteString(conn, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		return
	}
	defer func() { _ = upstream.Close() }()
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(upstream, br); done <- struct{}{} }()
	go func() { _, _ = io.Copy(conn, upstream); done <- struct{}{} }()
	<-done
}
