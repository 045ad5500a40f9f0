package controllers

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/keys"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

// BenchmarkProjection measures the number docs/design.md calls the product: how long a new replica
// pod waits for its key Secret, for bursts of 1, 100, 1000 and 5000 pods (a scale-up or a
// failover), next to the floor: the same number of bare Secrets created at once through the
// projector's own client, in the same run. It reports numbers; it never fails on a timing.
//
//	make bench    # go test ./controllers -run '^$' -bench BenchmarkProjection -benchtime 1x
//
// Only envtest (kube-apiserver + etcd) is needed: the manager runs the ReplicaProjector alone,
// and the key ring is generated locally and handed to the KeyStore, as the DKMContainer
// reconciler would after reading it from AD. No Samba, no LDAP.
//
// Method, per round (every round in a fresh namespace):
//   - floor: once the round's DKMContainer is set up (below) and the namespace known everywhere
//     (admission looks a new namespace up live until its informer has it), n Secrets of the
//     projected Secret's shape (three 32-36 byte values, two labels, but not
//     dkm.io/container, so the projector never sees them) are created all at once (n
//     goroutines released together) through the manager's client, the one the projector
//     creates Secrets with; each sample is the duration of one Create call, from its own start.
//     A single create's latency is not what n concurrent creates reach on the same API server.
//   - projection: a DKMContainer with spec.replicas is created, its ring Set in the KeyStore,
//     and the round waits until ReplicasProjected is True (0 replicas), so setup is not
//     measured. A metadata-only watch on Secrets labelled dkm.io/container=<dkm> is opened.
//     A second one watches the pods. Then n matching pods (allowed service account; no kubelet,
//     they stay Pending) are created all at once, as the floor's Secrets were, through the
//     benchmark's own client.
//     Each sample runs from the pod's appearance to its Secret's first watch event. The pod
//     appears at its first watch event or when its Create call returned, whichever is
//     earlier: the watch sees the pod exist the same way it sees the Secret, but the server
//     may drop and the benchmark resume a lagging watch, and a Create's response can arrive
//     after the projector has already created the Secret. The table also gives the p50
//     measured from the pod Create call's return, a simpler reference point. A create whose
//     connection the server dropped is retried (createRetrying) and counted.
//   - the round's DKMContainer is deleted, so the projector stops watching that namespace.
//
// A round of n pods gives n samples; small bursts repeat their round until they have
// benchMinSamples samples (at most benchMaxRounds rounds), so their p99 means something.
// Percentiles are nearest-rank. DKM_BENCH_PODS=1,100 picks the sizes, DKM_BENCH_WORKERS the
// projector's workers.
func BenchmarkProjection(b *testing.B) {
	pb := startProjectionBench(b)
	var results []benchResult
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			res := benchResult{pods: n, retries: &atomic.Int64{}}
			for i := 0; i < b.N; i++ {
				for r := 0; r < min((benchMinSamples+n-1)/n, benchMaxRounds); r++ {
					pb.round(b, n, &res)
				}
			}
			res.report(b)
			results = append(results, res)
		})
	}
	printProjectionTable(os.Stdout, results)
}

// benchProjectionWorkers is DKM_BENCH_WORKERS, the projector's workers (0: its default).
func benchProjectionWorkers() int {
	n, _ := strconv.Atoi(os.Getenv("DKM_BENCH_WORKERS"))
	return n
}

// benchSizes are the burst sizes; DKM_BENCH_PODS (comma-separated) overrides them.
func benchSizes() []int {
	env := os.Getenv("DKM_BENCH_PODS")
	if env == "" {
		return []int{1, 100, 1000, 5000}
	}
	var out []int
	for _, f := range strings.Split(env, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

const (
	// benchMinSamples is the fewest samples a sub-benchmark collects (small bursts repeat their
	// round), in at most benchMaxRounds rounds.
	benchMinSamples = 500
	benchMaxRounds  = 100
	benchDKM        = "vmm"
	benchSA         = "vmm"
	benchFloorLabel = "bench.dkm.io/floor"
)

type projectionBench struct {
	ctx context.Context
	// api is the benchmark's own client: namespaces, DKMContainers, pods and the Secret watch.
	api client.WithWatch
	// projector is the manager's client, the one the ReplicaProjector creates Secrets with.
	projector client.Client
	keys      *KeyStore
	ring      *keys.Ring
	seq       int
	// calls counts what the projector asks of the API (and its cache) during the bursts.
	calls *projectorCalls
}

func startProjectionBench(b *testing.B) *projectionBench {
	b.Helper()
	logf.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)

	sch := kruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(sch); err != nil {
		b.Fatal(err)
	}
	if err := dkmv1.AddToScheme(sch); err != nil {
		b.Fatal(err)
	}
	env, err := testenv.NewKube(ctx, "config/crd/bases")
	if err != nil {
		b.Fatal(err)
	}
	envCfg, err := env.Start()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = env.Stop() })
	// As in production (ctrl.GetConfig): no client-side rate limit, API priority and fairness
	// decides. envtest's own default (1000 QPS) would otherwise shape the 1000-pod burst.
	cfg := *envCfg
	cfg.QPS = -1

	api, err := client.NewWithWatch(&cfg, client.Options{Scheme: sch})
	if err != nil {
		b.Fatal(err)
	}
	skipNameValidation := true // -count N starts one manager per run in this process
	mgr, err := ctrl.NewManager(&cfg, ctrl.Options{
		Scheme:     sch,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Cache:      CacheOptions(nil),
		Controller: config.Controller{SkipNameValidation: &skipNameValidation},
	})
	if err != nil {
		b.Fatal(err)
	}
	store := NewKeyStore()
	calls := &projectorCalls{}
	if err := (&ReplicaProjector{
		Client:    countingClient{Client: mgr.GetClient(), calls: calls},
		APIReader: countingReader{Reader: mgr.GetAPIReader(), calls: calls},
		Recorder:  mgr.GetEventRecorder("dkm-operator"),
		Keys:      store,
		Workers:   benchProjectionWorkers(),
	}).SetupWithManager(mgr); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		b.Fatal("the manager's cache did not sync")
	}

	var guid keys.ObjectGUID
	_, _ = rand.Read(guid[:])
	ring, _, err := keys.NewRing(guid, keys.Plain{}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	return &projectionBench{ctx: ctx, api: api, projector: mgr.GetClient(), keys: store, ring: ring, calls: calls}
}

// round runs one floor burst and one projection burst of n in a fresh namespace.
func (pb *projectionBench) round(b *testing.B, n int, res *benchResult) {
	b.Helper()
	ctx := pb.ctx
	pb.seq++
	ns := fmt.Sprintf("bench-%d-%d-%d", n, pb.seq, time.Now().UnixNano()%1_000_000)
	must(b, pb.api.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	must(b, pb.api.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: benchSA, Namespace: ns}}))

	// A DKMContainer whose keys are in memory, reconciled once before any pod exists.
	obj := &dkmv1.DKMContainer{
		ObjectMeta: metav1.ObjectMeta{Name: benchDKM, Namespace: ns},
		Spec: dkmv1.DKMContainerSpec{
			Directory: dkmv1.DirectorySpec{
				URLs:          []string{"ldaps://dc1.demo.local"},
				BindSecretRef: dkmv1.SecretReference{Name: "bind"},
			},
			Path:            "CN=VMMDKM,CN=System,DC=demo,DC=local",
			ServiceAccounts: []string{`DEMO\svc-vmm`},
			KeyProtection:   dkmv1.KeyProtectionSpec{Mode: dkmv1.KeyPlain},
			Replicas: &dkmv1.ReplicasSpec{
				Selector:            metav1.LabelSelector{MatchLabels: map[string]string{"app": "vmm"}},
				ServiceAccountNames: []string{benchSA},
			},
		},
	}
	must(b, pb.api.Create(ctx, obj))
	pb.keys.Set(obj, pb.ring)
	pb.waitProjected(b, obj, 0)

	// Floor: bare Secret creates through the projector's client, once the namespace is known
	// everywhere (admission looks a namespace up live until its informer has it).
	floor := make([]time.Duration, n)
	start, err := burst(n, func(i int) error {
		s := floorSecret(ns, i)
		t := time.Now()
		err := createRetrying(ctx, pb.projector, s, res.retries)
		floor[i] = time.Since(t)
		return err
	})
	must(b, err)
	res.floorWall = append(res.floorWall, time.Since(start))
	res.floor = append(res.floor, floor...)

	// Watch pods and Secrets, metadata only (the benchmark never decodes key bytes), from
	// before the first pod is created.
	pods := pb.watchFirstSeen(b, ns, "PodList", client.MatchingLabels{"app": "vmm"}, n,
		func(m *metav1.PartialObjectMetadata) string { return m.Name })
	defer func() { res.podWatchRestarts += pods.stop() }()
	secrets := pb.watchFirstSeen(b, ns, "SecretList", client.MatchingLabels{LabelContainer: benchDKM}, n,
		func(m *metav1.PartialObjectMetadata) string { return m.Labels[LabelPod] })
	defer func() { res.secretWatchRestarts += secrets.stop() }()

	// The burst: n pods at once.
	before := pb.calls.snapshot()
	issued, returned := make([]time.Time, n), make([]time.Time, n)
	start, err = burst(n, func(i int) error {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("vmm-%d", i), Namespace: ns, Labels: map[string]string{"app": "vmm"}},
			Spec: corev1.PodSpec{
				ServiceAccountName: benchSA,
				Containers:         []corev1.Container{{Name: "vmm", Image: "vmm:2012"}},
			},
		}
		issued[i] = time.Now()
		err := createRetrying(ctx, pb.api, p, res.retries)
		returned[i] = time.Now()
		return err
	})
	must(b, err)
	timeout := 2*time.Minute + time.Duration(n)*100*time.Millisecond
	secretSeen := secrets.wait(b, timeout, "have a Secret")
	podSeen := pods.seenSoFar()
	// Not measured: let the projector settle (status counts every pod) before counting its calls.
	pb.waitProjected(b, obj, n)
	res.calls = res.calls.add(pb.calls.snapshot().sub(before))
	var last time.Time
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("vmm-%d", i)
		at := secretSeen[name]
		if at.After(last) {
			last = at
		}
		appeared := podSeen[name]
		if appeared.IsZero() || returned[i].Before(appeared) {
			appeared = returned[i] // the pod watch was late (resumed after the server dropped it)
		}
		d := at.Sub(appeared)
		if d < 0 { // the two watches are separate streams; not seen so far
			res.early++
			d = 0
		}
		res.latency = append(res.latency, d)
		res.fromReturn = append(res.fromReturn, at.Sub(returned[i]))
		res.fromIssue = append(res.fromIssue, at.Sub(issued[i]))
		res.podCreate = append(res.podCreate, returned[i].Sub(issued[i]))
	}
	res.wall = append(res.wall, last.Sub(start))
	res.podWall = append(res.podWall, slices.MaxFunc(returned, time.Time.Compare).Sub(start))
	// The round's DKMContainer goes, so the projector stops watching its namespace's pods.
	must(b, client.IgnoreNotFound(pb.api.Delete(ctx, obj)))
}

// firstSeen records when a watch first delivered each object (by a key taken from its
// metadata). Under a 1000-pod burst on two cores the API server drops watchers that fall behind
// (its cacher closes the stream, no error event); like a reflector, firstSeen then resumes from
// the last resourceVersion it saw, so no event is lost, only delivered later. Restarts are
// counted and printed next to the numbers they may have delayed.
type firstSeen struct {
	cancel context.CancelFunc
	done   chan struct{}
	n      int
	all    chan struct{}

	mu       sync.Mutex
	seen     map[string]time.Time
	restarts int
	err      error
}

func (pb *projectionBench) watchFirstSeen(b *testing.B, ns, listKind string, sel client.MatchingLabels, n int, key func(*metav1.PartialObjectMetadata) string) *firstSeen {
	b.Helper()
	newList := func() *metav1.PartialObjectMetadataList {
		l := &metav1.PartialObjectMetadataList{}
		l.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(listKind))
		return l
	}
	// The list gives the resourceVersion to watch from (and nothing yet, the round is new).
	start := newList()
	must(b, pb.api.List(pb.ctx, start, client.InNamespace(ns), sel))
	ctx, cancel := context.WithCancel(pb.ctx)
	watchFrom := func(rv string) (watch.Interface, error) {
		return pb.api.Watch(ctx, newList(), client.InNamespace(ns), sel,
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
	}
	w, err := watchFrom(start.ResourceVersion)
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	f := &firstSeen{cancel: cancel, done: make(chan struct{}), n: n, all: make(chan struct{}), seen: make(map[string]time.Time, n)}
	go func() {
		defer close(f.done)
		rv := start.ResourceVersion
		for {
			for ev := range w.ResultChan() {
				now := time.Now()
				if ev.Type == watch.Error {
					f.mu.Lock()
					f.err = fmt.Errorf("watch error: %v", apierrors.FromObject(ev.Object))
					f.mu.Unlock()
					continue
				}
				m, ok := ev.Object.(*metav1.PartialObjectMetadata)
				if !ok {
					continue
				}
				rv = m.ResourceVersion
				if ev.Type != watch.Added && ev.Type != watch.Modified {
					continue
				}
				k := key(m)
				f.mu.Lock()
				if _, dup := f.seen[k]; !dup && k != "" {
					f.seen[k] = now
					if len(f.seen) == n {
						close(f.all)
					}
				}
				f.mu.Unlock()
			}
			w.Stop()
			if ctx.Err() != nil {
				return
			}
			f.mu.Lock()
			f.restarts++
			f.mu.Unlock()
			for w, err = watchFrom(rv); err != nil; w, err = watchFrom(rv) {
				f.mu.Lock()
				f.err = err
				f.mu.Unlock()
				if ctx.Err() != nil {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
	return f
}

// wait returns the first-seen times once all n objects were seen.
func (f *firstSeen) wait(b *testing.B, timeout time.Duration, what string) map[string]time.Time {
	b.Helper()
	select {
	case <-f.all:
	case <-time.After(timeout):
		f.mu.Lock()
		defer f.mu.Unlock()
		b.Fatalf("after %s, %d pods %s, want %d (watch restarts: %d, last error: %v)", timeout, len(f.seen), what, f.n, f.restarts, f.err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.seen)
}

// seenSoFar returns the first-seen times recorded so far.
func (f *firstSeen) seenSoFar() map[string]time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.seen)
}

// stop ends the watch and returns how often it had to be resumed.
func (f *firstSeen) stop() int {
	f.cancel()
	<-f.done
	return f.restarts
}

// waitProjected polls (not measured) until the projector reports n replicas projected.
func (pb *projectionBench) waitProjected(b *testing.B, obj *dkmv1.DKMContainer, n int) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := &dkmv1.DKMContainer{}
		if err := pb.api.Get(pb.ctx, client.ObjectKeyFromObject(obj), got); err == nil &&
			meta.IsStatusConditionTrue(got.Status.Conditions, dkmv1.ConditionReplicasProjected) &&
			got.Status.ProjectedReplicas == int32(n) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s/%s: ReplicasProjected not True with %d replicas after a minute", obj.Namespace, obj.Name, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// floorSecret has the shape of a projected Secret (same data sizes, two labels, an owner-less
// Opaque Secret) with random bytes that are no key, and without dkm.io/container.
func floorSecret(ns string, i int) *corev1.Secret {
	key, version := make([]byte, keys.KeySize), make([]byte, keys.KeySize)
	_, _ = rand.Read(key)
	_, _ = rand.Read(version)
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("floor-%d", i),
			Namespace: ns,
			Labels:    map[string]string{benchFloorLabel: benchDKM, LabelPod: fmt.Sprintf("vmm-%d", i)},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			SecretKeyActive:   key,
			SecretKeyActiveID: []byte("00000000-0000-0000-0000-000000000000"),
			SecretKeyVersionPrefix + "00000000-0000-0000-0000-000000000000": version,
		},
	}
}

// burst runs fn(0..n-1) all at once: n goroutines, released together once all exist. It returns
// when they were released and the first error.
func burst(n int, fn func(i int) error) (time.Time, error) {
	release := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-release
			if err := fn(i); err != nil {
				errs <- err
			}
		})
	}
	start := time.Now()
	close(release)
	wg.Wait()
	close(errs)
	return start, <-errs
}

// createRetrying creates obj, again when the connection failed (not the API server's answer):
// under a burst of thousands on two cores the server may drop a connection, and a create
// whose answer was lost may have been applied, so AlreadyExists then means done. Retries are
// counted and printed; the sample includes them.
func createRetrying(ctx context.Context, c client.Client, obj client.Object, retries *atomic.Int64) error {
	err := c.Create(ctx, obj)
	for attempt := 0; attempt < 5 && err != nil && !isAPIStatus(err); attempt++ {
		retries.Add(1)
		obj.SetResourceVersion("")
		if err = c.Create(ctx, obj); apierrors.IsAlreadyExists(err) {
			return nil
		}
	}
	return err
}

func isAPIStatus(err error) bool {
	var status apierrors.APIStatus
	return errors.As(err, &status)
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

type benchResult struct {
	pods                                      int
	latency, fromReturn, fromIssue, podCreate []time.Duration
	floor                                     []time.Duration
	wall, podWall, floorWall                  []time.Duration
	early                                     int
	retries                                   *atomic.Int64
	podWatchRestarts, secretWatchRestarts     int
	calls                                     callCounts
}

func (r *benchResult) report(b *testing.B) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentile(r.latency, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(r.latency, 0.99)), "p99-ms")
	b.ReportMetric(ms(percentile(r.latency, 1)), "max-ms")
	b.ReportMetric(ms(percentile(r.floor, 0.50)), "floor-p50-ms")
	b.ReportMetric(ms(percentile(r.floor, 0.99)), "floor-p99-ms")
	b.ReportMetric(ratio(percentile(r.latency, 0.50), percentile(r.floor, 0.50)), "ratio-p50")
	b.ReportMetric(ratio(percentile(r.latency, 0.99), percentile(r.floor, 0.99)), "ratio-p99")
	b.ReportMetric(ms(mean(r.wall)), "burst-ms")
}

// percentile is the nearest-rank percentile (p in (0,1]) of ds; 0 for none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(float64(len(s))*p + 0.999999)
	return s[min(max(rank, 1), len(s))-1]
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func printProjectionTable(out io.Writer, results []benchResult) {
	if len(results) == 0 {
		return
	}
	r := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
	fmt.Fprintf(out, "\nTime from a pod's appearance (first watch event or Create returned) to its key Secret's first watch event,\n"+
		"vs the floor: as many bare Secrets created at once through the projector's client, each from its own start\n")
	fmt.Fprintf(out, "(pods and floor Secrets created all at once; GOMAXPROCS %d)\n\n", runtime.GOMAXPROCS(0))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pods\tsamples\tp50\tp99\tmax\tfloor p50\tfloor p99\tratio p50\tratio p99\t"+
		"burst\tfloor burst\tratio burst\tpod burst\tp50 from Create returned\tpod Create p50\t")
	for _, res := range results {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%.1fx\t%.1fx\t%s\t%s\t%.1fx\t%s\t%s\t%s\t\n",
			res.pods, len(res.latency),
			r(percentile(res.latency, 0.5)), r(percentile(res.latency, 0.99)), r(percentile(res.latency, 1)),
			r(percentile(res.floor, 0.5)), r(percentile(res.floor, 0.99)),
			ratio(percentile(res.latency, 0.5), percentile(res.floor, 0.5)),
			ratio(percentile(res.latency, 0.99), percentile(res.floor, 0.99)),
			r(mean(res.wall)), r(mean(res.floorWall)), ratio(mean(res.wall), mean(res.floorWall)),
			r(mean(res.podWall)), r(percentile(res.fromReturn, 0.5)), r(percentile(res.podCreate, 0.5)))
	}
	_ = tw.Flush()
	fmt.Fprintf(out, "\nburst = first pod Create issued to last Secret seen; floor burst = first to last floor create; pod burst = to the\n"+
		"last pod Create returned (each the mean over rounds).\n")
	for _, res := range results {
		c := res.calls
		fmt.Fprintf(out, "pods=%d: in %d round(s), until its status counted every pod, the projector read its DKMContainer %d times, and made "+
			"%d Secret creates (%d already existed), %d updates, %d deletes, %d uncached reads, %d status writes.\n",
			res.pods, len(res.wall), c.reconciles, c.creates, c.alreadyExisted, c.updates, c.deletes, c.apiReads, c.statusPatches)
		if res.podWatchRestarts+res.secretWatchRestarts > 0 {
			fmt.Fprintf(out, "pods=%d: the API server dropped the benchmark's watches (too slow a reader), resumed from the last resourceVersion: pods %d time(s), Secrets %d time(s).\n",
				res.pods, res.podWatchRestarts, res.secretWatchRestarts)
		}
		if n := res.retries.Load(); n > 0 {
			fmt.Fprintf(out, "pods=%d: %d create(s) retried after the API server dropped the connection (counted in the sample).\n", res.pods, n)
		}
		if res.early > 0 {
			fmt.Fprintf(out, "pods=%d: %d Secret(s) seen before their pod by the other watch (counted as 0).\n", res.pods, res.early)
		}
	}
}

// projectorCalls counts the projector's client calls; countingClient feeds it.
type projectorCalls struct {
	reconciles, creates, alreadyExisted, updates, deletes, apiReads, statusPatches atomic.Int64
}

type callCounts struct {
	reconciles, creates, alreadyExisted, updates, deletes, apiReads, statusPatches int64
}

func (c *projectorCalls) snapshot() callCounts {
	return callCounts{c.reconciles.Load(), c.creates.Load(), c.alreadyExisted.Load(), c.updates.Load(),
		c.deletes.Load(), c.apiReads.Load(), c.statusPatches.Load()}
}

func (a callCounts) sub(b callCounts) callCounts {
	return callCounts{a.reconciles - b.reconciles, a.creates - b.creates,
		a.alreadyExisted - b.alreadyExisted, a.updates - b.updates, a.deletes - b.deletes, a.apiReads - b.apiReads,
		a.statusPatches - b.statusPatches}
}

func (a callCounts) add(b callCounts) callCounts {
	return callCounts{a.reconciles + b.reconciles, a.creates + b.creates,
		a.alreadyExisted + b.alreadyExisted, a.updates + b.updates, a.deletes + b.deletes, a.apiReads + b.apiReads,
		a.statusPatches + b.statusPatches}
}

// countingClient is the projector's client, counting its calls: a Get of a DKMContainer opens
// every reconcile of its status (the old projector's every reconcile).
type countingClient struct {
	client.Client
	calls *projectorCalls
}

func (c countingClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*dkmv1.DKMContainer); ok {
		c.calls.reconciles.Add(1)
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

func (c countingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	err := c.Client.Create(ctx, obj, opts...)
	c.calls.creates.Add(1)
	if apierrors.IsAlreadyExists(err) {
		c.calls.alreadyExisted.Add(1)
	}
	return err
}

func (c countingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	c.calls.updates.Add(1)
	return c.Client.Update(ctx, obj, opts...)
}

func (c countingClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	c.calls.deletes.Add(1)
	return c.Client.Delete(ctx, obj, opts...)
}

func (c countingClient) Status() client.SubResourceWriter {
	return countingStatus{SubResourceWriter: c.Client.Status(), calls: c.calls}
}

type countingStatus struct {
	client.SubResourceWriter
	calls *projectorCalls
}

func (s countingStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	s.calls.statusPatches.Add(1)
	return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

func (s countingStatus) Apply(ctx context.Context, obj kruntime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
	s.calls.statusPatches.Add(1)
	return s.SubResourceWriter.Apply(ctx, obj, opts...)
}

// countingReader counts the projector's uncached reads (APIReader).
type countingReader struct {
	client.Reader
	calls *projectorCalls
}

func (r countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	r.calls.apiReads.Add(1)
	return r.Reader.Get(ctx, key, obj, opts...)
}
