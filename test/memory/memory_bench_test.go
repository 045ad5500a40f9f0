// Package memory measures the operator binary's memory in a busy cluster (make bench-memory).
package memory

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/controllers"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

// BenchmarkOperatorMemory runs the operator binary (built from this tree into a temporary
// directory, or $DKM_OPERATOR_BINARY) against envtest's kube-apiserver and a Samba DC, in a
// cluster holding one DKMContainer plus noise: 10,000 unrelated Secrets of 10 KiB and 10,000
// unrelated pods (each about 3 KiB of JSON, in ten other namespaces). It reads the process's
// peak resident set (VmHWM in /proc/<pid>/status) once the DKMContainer is Ready and the
// operator has settled, then adds replica pods and reports the resident set's growth per
// replica that received its key Secret. It reports numbers; it never fails on them.
//
//	make bench-memory
//
// DKM_MEMORY_SECRETS, DKM_MEMORY_PODS and DKM_MEMORY_REPLICAS (comma-separated steps) change
// the sizes.
func BenchmarkOperatorMemory(b *testing.B) {
	logf.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	noiseSecrets, noisePods := envInt("DKM_MEMORY_SECRETS", 10000), envInt("DKM_MEMORY_PODS", 10000)
	steps := envInts("DKM_MEMORY_REPLICAS", []int{100, 1000})

	bin := operatorBinary(b)
	dc, err := testenv.StartDC(ctx, testenv.DCOptions{})
	must(b, err)
	b.Cleanup(dc.Close)
	kube, err := testenv.NewKube(ctx, filepath.Join("config", "crd", "bases"))
	must(b, err)
	cfg, err := kube.Start()
	must(b, err)
	b.Cleanup(func() { _ = kube.Stop() })
	cfg.QPS = -1
	sch := runtime.NewScheme()
	must(b, clientgoscheme.AddToScheme(sch))
	must(b, dkmv1.AddToScheme(sch))
	c, err := client.New(cfg, client.Options{Scheme: sch})
	must(b, err)

	start := time.Now()
	seedNoise(ctx, b, c, noiseSecrets, noisePods)
	seeded := time.Since(start)

	obj := dkmContainer(ctx, b, c, dc)
	op := startOperator(b, kube, bin)
	waitProjected(ctx, b, c, obj, 0, 2*time.Minute)
	time.Sleep(settle)
	rows := []memRow{{replicas: 0, mem: op.memory(b)}}
	for _, n := range steps {
		createReplicas(ctx, b, c, obj.Namespace, rows[len(rows)-1].replicas, n)
		waitProjected(ctx, b, c, obj, n, 5*time.Minute)
		time.Sleep(settle)
		rows = append(rows, memRow{replicas: n, mem: op.memory(b)})
	}
	b.ReportMetric(mib(rows[0].mem.hwm), "peak-MiB")
	last := rows[len(rows)-1]
	b.ReportMetric(float64(last.mem.rss-rows[0].mem.rss)/float64(last.replicas), "rss-KiB/replica")

	out := os.Stdout
	fmt.Fprintf(out, "\nOperator binary with 1 DKMContainer, %d unrelated 10 KiB Secrets and %d unrelated pods (seeded in %s)\n\n",
		noiseSecrets, noisePods, seeded.Round(time.Second))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "replicas with a key\tVmHWM (peak)\tVmRSS\tanonymous\tfile (binary)\tGo heap in use\tGo sys\tRSS growth per replica since 0\t")
	for _, r := range rows {
		growth := "-"
		if r.replicas > 0 {
			growth = fmt.Sprintf("%.1f KiB", float64(r.mem.rss-rows[0].mem.rss)/float64(r.replicas))
		}
		fmt.Fprintf(tw, "%d\t%.1f MiB\t%.1f MiB\t%.1f MiB\t%.1f MiB\t%.1f MiB\t%.1f MiB\t%s\t\n", r.replicas,
			mib(r.mem.hwm), mib(r.mem.rss), mib(r.mem.anon), mib(r.mem.file), r.mem.heapInuse/(1<<20), r.mem.goSys/(1<<20), growth)
	}
	_ = tw.Flush()
	fmt.Fprintf(out, "\nVmRSS read %s after each step settled; the operator log is %s.\n", settle, op.log)
}

// settle is how long the operator is left alone before its memory is read (its caches are
// full by then; the Go runtime has collected at least once).
const settle = 10 * time.Second

type memRow struct {
	replicas int
	mem      procMemory
}

// procMemory is a process's resident set now and at its peak, its anonymous and file-backed
// (the binary's pages) parts, in KiB, and the Go runtime's own view from its metrics: heap in
// use and all memory obtained from the OS, in bytes.
type procMemory struct {
	rss, hwm, anon, file int64
	heapInuse, goSys     float64
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

type operatorProcess struct {
	pid        int
	log        string
	metricsURL string
}

// memory reads VmRSS and VmHWM from /proc/<pid>/status.
func (op *operatorProcess) memory(b *testing.B) procMemory {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", op.pid))
	must(b, err)
	var m procMemory
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.rss = v
		case "VmHWM:":
			m.hwm = v
		case "RssAnon:":
			m.anon = v
		case "RssFile:":
			m.file = v
		}
	}
	m.heapInuse, m.goSys = op.goMemory()
	return m
}

// goMemory scrapes the operator's metrics for the Go runtime's heap in use and memory obtained
// from the OS (0 when the scrape fails: the numbers are informative only).
func (op *operatorProcess) goMemory() (heapInuse, sys float64) {
	resp, err := http.Get(op.metricsURL)
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "go_memstats_heap_inuse_bytes":
			heapInuse = v
		case "go_memstats_sys_bytes":
			sys = v
		}
	}
	return heapInuse, sys
}

// operatorBinary builds the operator (main.go) into a temporary directory as the Dockerfile
// builds it, unless DKM_OPERATOR_BINARY names one (to measure another build).
func operatorBinary(b *testing.B) string {
	b.Helper()
	if bin := os.Getenv("DKM_OPERATOR_BINARY"); bin != "" {
		return bin
	}
	root, err := testenv.RepoRoot()
	must(b, err)
	bin := filepath.Join(b.TempDir(), "manager")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir, cmd.Stderr = root, os.Stderr
	must(b, cmd.Run())
	return bin
}

// startOperator runs the binary as main runs it in a cluster, without leader election, webhook
// or probes, as a cluster admin.
func startOperator(b *testing.B, kube *envtest.Environment, bin string) *operatorProcess {
	b.Helper()
	user, err := kube.AddUser(envtest.User{Name: "dkm-operator-memory", Groups: []string{"system:masters"}}, nil)
	must(b, err)
	kubeconfig, err := user.KubeConfig()
	must(b, err)
	// Kept after the run (the log is the first thing to read about a number).
	dir, err := os.MkdirTemp("", "dkm-memory-")
	must(b, err)
	path := filepath.Join(dir, "kubeconfig")
	must(b, os.WriteFile(path, kubeconfig, 0o600))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(b, err)
	metrics := l.Addr().String()
	_ = l.Close()
	op := &operatorProcess{log: filepath.Join(dir, "operator.log"), metricsURL: "http://" + metrics + "/metrics"}
	// Plain-HTTP metrics on loopback, read for the Go runtime's own memory figures.
	cmd := exec.Command(bin, "--kubeconfig="+path, "--leader-elect=false", "--enable-webhook=false",
		"--metrics-bind-address="+metrics, "--metrics-secure=false", "--health-probe-bind-address=0")
	// DKM_OPERATOR_GODEBUG reaches the operator alone (gctrace=1 logs every collection).
	cmd.Env = append(os.Environ(), "GODEBUG="+os.Getenv("DKM_OPERATOR_GODEBUG"))
	p, err := testenv.StartProcess(cmd, op.log, false)
	must(b, err)
	b.Cleanup(func() { _ = p.Stop(10 * time.Second) })
	op.pid = cmd.Process.Pid
	return op
}

// seedNoise creates the unrelated Secrets and pods, 64 at a time, in ten namespaces.
func seedNoise(ctx context.Context, b *testing.B, c client.Client, secrets, pods int) {
	b.Helper()
	const namespaces = 10
	for i := range namespaces {
		must(b, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("noise-%d", i)}}))
	}
	payload := make([]byte, 10*1024)
	_, _ = rand.Read(payload)
	must(b, parallel(secrets, func(i int) error {
		return c.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("noise-%d", i), Namespace: fmt.Sprintf("noise-%d", i%namespaces)},
			Data:       map[string][]byte{"payload": payload},
		})
	}))
	must(b, parallel(pods, func(i int) error {
		return c.Create(ctx, noisePod(fmt.Sprintf("noise-%d", i%namespaces), fmt.Sprintf("web-%d", i)))
	}))
}

// noisePod is an ordinary workload pod: two containers with environment, resources, probes
// and mounts, labels and an annotation, about 3 KiB as JSON.
func noisePod(ns, name string) *corev1.Pod {
	container := func(n string) corev1.Container {
		c := corev1.Container{
			Name: n, Image: "registry.example/team/" + n + ":1.2.3", Args: []string{"--port=8080", "--log-level=info", "--config=/etc/app/config.yaml"},
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
			},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intOrString(8080)}}},
			VolumeMounts:   []corev1.VolumeMount{{Name: "config", MountPath: "/etc/app"}},
		}
		for i := range 10 {
			c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("SETTING_%d", i), Value: fmt.Sprintf("value-%d-of-a-typical-length", i)})
		}
		return c
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns,
			Labels:      map[string]string{"app": "web", "tier": "frontend", "release": "stable", "pod-template-hash": "5d8f7c9b6d"},
			Annotations: map[string]string{"example.com/notes": strings.Repeat("n", 512)},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{container("web"), container("sidecar")},
			Volumes:    []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}}},
		},
	}
}

// dkmContainer creates the one DKMContainer (Wrapped, bound as Administrator over LDAPS) with
// its namespace, Secrets and replica service account.
func dkmContainer(ctx context.Context, b *testing.B, c client.Client, dc *testenv.DC) *dkmv1.DKMContainer {
	b.Helper()
	const ns = "dkm"
	must(b, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	must(b, c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "vmm", Namespace: ns}}))
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	for name, data := range map[string]map[string][]byte{
		"bind": {controllers.BindUsernameKey: []byte(dc.AdminUser), controllers.BindPasswordKey: []byte(dc.AdminPassword)},
		"ca":   {"ca.crt": dc.CAPEM},
		"kek":  {"kek": kek},
	} {
		must(b, c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: data}))
	}
	svc, err := dc.CreateUser("svc-memory", "Svc!Passw0rd-memory")
	must(b, err)
	obj := &dkmv1.DKMContainer{
		ObjectMeta: metav1.ObjectMeta{Name: "vmm", Namespace: ns},
		Spec: dkmv1.DKMContainerSpec{
			Directory: dkmv1.DirectorySpec{
				URLs:              []string{dc.URL},
				BindSecretRef:     dkmv1.SecretReference{Name: "bind"},
				CABundleSecretRef: &dkmv1.SecretKeyReference{Name: "ca", Key: "ca.crt"},
			},
			Path:            "CN=DKM-memory,CN=System," + dc.BaseDN,
			ServiceAccounts: []string{svc.DownLevel(dc)},
			KeyProtection:   dkmv1.KeyProtectionSpec{Mode: dkmv1.KeyWrapped, KEKSecretRef: &dkmv1.SecretReference{Name: "kek"}},
			Replicas: &dkmv1.ReplicasSpec{
				Selector:            metav1.LabelSelector{MatchLabels: map[string]string{"app": "vmm"}},
				ServiceAccountNames: []string{"vmm"},
			},
		},
	}
	must(b, c.Create(ctx, obj))
	return obj
}

// createReplicas adds replica pods from index from up to (not including) to.
func createReplicas(ctx context.Context, b *testing.B, c client.Client, ns string, from, to int) {
	b.Helper()
	must(b, parallel(to-from, func(i int) error {
		return c.Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("vmm-%d", from+i), Namespace: ns, Labels: map[string]string{"app": "vmm"}},
			Spec: corev1.PodSpec{
				ServiceAccountName: "vmm",
				Containers:         []corev1.Container{{Name: "vmm", Image: "vmm:2012"}},
			},
		})
	}))
}

// waitProjected waits until the DKMContainer is Ready with n replicas holding the key.
func waitProjected(ctx context.Context, b *testing.B, c client.Client, obj *dkmv1.DKMContainer, n int, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := &dkmv1.DKMContainer{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), got); err == nil &&
			meta.IsStatusConditionTrue(got.Status.Conditions, dkmv1.ConditionReady) && got.Status.ProjectedReplicas == int32(n) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s/%s not Ready with %d replicas after %s", obj.Namespace, obj.Name, n, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// parallel runs fn(0..n-1), 64 at a time, and returns the first error.
func parallel(n int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for range min(64, n) {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n >= 0 {
		return n
	}
	return def
}

func envInts(name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

func intOrString(port int) intstr.IntOrString { return intstr.FromInt32(int32(port)) }
