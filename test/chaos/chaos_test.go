package chaos

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/controllers"
	"github.com/dkm-operator/dkm-operator/internal/keys"
)

var (
	seedsFlag = flag.String("chaos.seed", os.Getenv("CHAOS_SEED"),
		"replay the schedules of these seeds (comma-separated) instead of drawing random ones")
	countFlag = flag.Int("chaos.count", envInt("CHAOS_COUNT", 0),
		"number of schedules: the regression seeds, then random ones (0: the fixed quick seeds; without -chaos.seed)")
	stepsFlag = flag.Int("chaos.steps", envInt("CHAOS_STEPS", 12), "steps per schedule")
)

const (
	// healTimeout bounds the healing phase: everything up, replication forced both ways, until
	// both DCs agree and every replica holds the active key.
	healTimeout = 90 * time.Second
	dkmName     = "vmm"
	// rotationPeriod is the spec.rotation.period a RotateKey step sets for the step's pause (the
	// least the API server accepts), and how far it moves the operators' clocks meanwhile.
	rotationPeriod = time.Hour
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// TestChaos runs -chaos.count random schedules (or the -chaos.seed ones) against one world.
// Each schedule prints its seed; `go test ./test/chaos -run TestChaos -chaos.seed=N` replays it.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Samba DCs, two API servers and the operator binary")
	}
	logf.SetLogger(zap.New(zap.WriteTo(io.Discard))) // envtest's own client logs nothing the report needs
	seeds := chaosSeeds(t)
	ctx := t.Context()
	start := time.Now()
	w := startWorld(ctx, t)
	t.Logf("world ready after %s", time.Since(start).Round(time.Millisecond))

	var rows []result
	for i, seed := range seeds {
		s := Generate(seed, Options{Steps: *stepsFlag, DCs: len(w.dom.DCs()), InitialReplicas: 1})
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rows = append(rows, runSchedule(ctx, t, w, s, i))
		})
	}
	t.Logf("\n%s", report(rows, time.Since(start)))
}

// regressionSeeds run first in every random run (make chaos): schedules that broke an invariant.
var regressionSeeds = []uint64{
	// Cluster A's operator crashed at once, cluster B appeared and became the writer, and its
	// replica held the first key while only DC1 had it (invariant 1), before durable commit.
	// Fixed by durable commit (6e4b8a9).
	1,
	// Found with 16 steps (make chaos's default): a rotation's new key reached DC2, CryptoPolicy
	// moved on DC1 only; with DC1 stopped, reader B read DC2's older CryptoPolicy and its
	// replica's Secret went back to the old active key and lost the new version (3, 4, 5).
	// Fixed by checkPolicyBehind (controllers/multidc.go).
	2,
}

// quickSeeds are what go test runs without flags (make test): fixed, so make test does not
// stumble on a defect a random seed finds (make chaos is for finding them); a cold schedule
// (the fixed regression) and two warm ones.
var quickSeeds = []uint64{1, 4, 6}

func chaosSeeds(t *testing.T) []uint64 {
	if *seedsFlag != "" {
		var out []uint64
		for _, f := range strings.Split(*seedsFlag, ",") {
			seed, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			if err != nil {
				t.Fatalf("-chaos.seed %q: %v", f, err)
			}
			out = append(out, seed)
		}
		return out
	}
	if *countFlag <= 0 {
		return quickSeeds
	}
	out := make([]uint64, max(*countFlag, len(regressionSeeds)))
	n := copy(out, regressionSeeds)
	var b [8]byte
	for i := n; i < len(out); i++ {
		_, _ = rand.Read(b[:])
		// Seeds short enough to type.
		out[i] = binary.LittleEndian.Uint64(b[:]) % 1_000_000_000
	}
	return out
}

// run is one schedule being applied.
type run struct {
	t        *testing.T
	w        *world
	s        Schedule
	ns, path string
	start    time.Time
	logDir   string
	clusters [2]*cluster
	rec      *recorder

	mu       sync.Mutex
	ops      [2]*operator
	opRuns   [2]int
	bPresent bool
	pods     [2]map[string]types.UID
	kek      map[string][]byte // the KEK Secret's data: kek and the retired kek.rN
	trace    []string

	// dcMu orders DC stops and starts against the recorder's reads: a stopped DC is represented
	// by the snapshot taken just before it stopped.
	dcMu   sync.Mutex
	up     []bool
	frozen []*adView
	held   bool
}

// result is one schedule's line in the report.
type result struct {
	seed       uint64
	steps      int
	took, heal time.Duration
	checks     map[int]int
	ambiguous  int
	violations []violation
}

func runSchedule(ctx context.Context, t *testing.T, w *world, s Schedule, n int) result {
	r := &run{t: t, w: w, s: s, start: time.Now(), logDir: t.TempDir(), clusters: w.clusters}
	r.ns = fmt.Sprintf("chaos-%d-%d", n, s.Seed)
	r.path = fmt.Sprintf("CN=DKM-%s-%d,CN=System,%s", r.ns, time.Now().UnixNano()%100000, w.dom.DCs()[0].BaseDN)
	r.up = make([]bool, len(w.dom.DCs()))
	for i := range r.up {
		r.up[i] = true
	}
	r.frozen = make([]*adView, len(r.up))
	r.pods = [2]map[string]types.UID{{}, {}}
	r.kek = map[string][]byte{"kek": randomKEK()}
	required := min(2, len(r.up))
	r.rec = newRecorder(r, required)
	t.Logf("seed %d: replay with `go test ./test/chaos -run TestChaos -chaos.seed=%d -chaos.steps=%d`\n%s", s.Seed, s.Seed, len(s.Steps), s)

	wctx, stopWatching := context.WithCancel(ctx)
	var watchers sync.WaitGroup
	defer func() { stopWatching(); watchers.Wait() }()
	t.Cleanup(r.killOperators)

	// Cluster A: the namespace, its Secrets, the first replica, the operator, the DKMContainer;
	// the faults start at once, while the first key is being made.
	r.prepareNamespace(ctx, ClusterA)
	r.watch(wctx, &watchers, ClusterA)
	r.addPod(ctx, ClusterA, "vmm-0")
	r.startOperator(ClusterA)
	r.create(ctx, ClusterA)
	go r.sampleStatus(wctx)
	if s.Warm {
		// The first key on every DC and in the replica before the first fault.
		if !r.settle(ctx) {
			r.rec.violate(0, "the first key did not settle within %s", healTimeout)
		}
		r.logf("warm: faults start")
	}

	for i, st := range s.Steps {
		r.logf("step %d: %s", i+1, st)
		if err := r.apply(ctx, wctx, &watchers, st); err != nil {
			r.logf("step %d: %v", i+1, err)
		}
		if st.Kind != RotateKey { // RotateKey waits inside its window
			sleep(ctx, st.Pause)
		}
	}
	faultsDone := r.since()
	healed := r.heal(ctx)
	res := result{seed: s.Seed, steps: len(s.Steps), took: r.since(), heal: r.since() - faultsDone}
	if !healed {
		r.rec.violate(0, "not healed within %s", healTimeout)
	}
	views, _ := r.readDCs(ctx)
	var final []adView
	for i, v := range views {
		if v == nil {
			r.rec.violate(2, "dc%d unreadable after healing", i+1)
			continue
		}
		final = append(final, *v)
	}
	r.rec.final(final, []*dkmv1.DKMContainer{r.get(ctx, ClusterA), r.get(ctx, ClusterB)})
	res.violations, res.checks, res.ambiguous = r.rec.summary()
	r.cleanup(ctx)
	if len(res.violations) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "seed %d broke %d invariant check(s); replay: go test ./test/chaos -run TestChaos -chaos.seed=%d -chaos.steps=%d\n%s\n",
			s.Seed, len(res.violations), s.Seed, len(s.Steps), s)
		for _, v := range res.violations {
			fmt.Fprintf(&b, "  %s\n", v)
		}
		fmt.Fprintf(&b, "trace:\n  %s\n", strings.Join(r.traceCopy(), "\n  "))
		for c, path := range r.operatorLogs() {
			fmt.Fprintf(&b, "--- operator log %s (last lines) ---\n%s\n", c, operatorLines(tailFile(path, 2000), 25))
		}
		t.Error(b.String())
	} else if testing.Verbose() {
		t.Logf("trace:\n  %s", strings.Join(r.traceCopy(), "\n  "))
	}
	return res
}

// clockFile holds how far the operators' clocks run ahead (see test/chaos/operator).
func (r *run) clockFile() string { return filepath.Join(r.logDir, "clock-offset") }

func (r *run) since() time.Duration { return time.Since(r.start) }

func (r *run) logf(format string, args ...any) {
	line := fmt.Sprintf("+%s ", r.since().Round(time.Millisecond)) + fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.trace = append(r.trace, line)
	r.mu.Unlock()
}

func (r *run) traceCopy() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.trace)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// apply performs one step.
func (r *run) apply(ctx, wctx context.Context, watchers *sync.WaitGroup, st Step) error {
	switch st.Kind {
	case StopDC:
		return r.stopDC(ctx, st.DC)
	case StartDC:
		return r.startDC(ctx, st.DC)
	case HoldReplication:
		r.dcMu.Lock()
		defer r.dcMu.Unlock()
		r.held = true
		return r.w.dom.Hold(ctx)
	case ReleaseReplication:
		r.dcMu.Lock()
		defer r.dcMu.Unlock()
		r.held = false
		return r.w.dom.Release(ctx)
	case Replicate:
		return r.replicate(ctx, st.DC, st.To)
	case CrashOperator:
		r.mu.Lock()
		op := r.ops[st.Cluster]
		r.ops[st.Cluster] = nil
		r.mu.Unlock()
		if op != nil {
			op.proc.Kill()
		}
		return nil
	case StartOperator:
		r.startOperator(st.Cluster)
		return nil
	case SecondCluster:
		r.prepareNamespace(ctx, ClusterB)
		r.watch(wctx, watchers, ClusterB)
		r.addPod(ctx, ClusterB, st.Pod)
		r.startOperator(ClusterB)
		r.create(ctx, ClusterB)
		r.mu.Lock()
		r.bPresent = true
		r.mu.Unlock()
		return nil
	case RotateKey:
		// rotation.period is at least 1h: the operators' clocks run an hour ahead while the
		// period is set, so the reconcile the spec change starts finds the rotation due.
		open := time.Now()
		if err := os.WriteFile(r.clockFile(), []byte(rotationPeriod.String()), 0o600); err != nil {
			return err
		}
		r.setRotation(ctx, &metav1.Duration{Duration: rotationPeriod})
		sleep(ctx, st.Pause)
		r.setRotation(ctx, nil)
		err := os.WriteFile(r.clockFile(), []byte("0s"), 0o600)
		r.rec.rotationWindow(window{open: open, close: time.Now()})
		return err
	case RotateKEK:
		return r.rotateKEK(ctx)
	case AddReplica:
		r.addPod(ctx, st.Cluster, st.Pod)
		return nil
	case RemoveReplica:
		return r.removePod(ctx, st.Cluster, st.Pod)
	}
	return fmt.Errorf("unknown step %s", st.Kind)
}

// stopDC snapshots what the DC holds, then stops it: while it is down it cannot change.
func (r *run) stopDC(ctx context.Context, i int) error {
	r.dcMu.Lock()
	defer r.dcMu.Unlock()
	v, err := readDC(ctx, r.w.dirs[i], r.path, r.protector())
	if err != nil {
		r.logf("dc%d: snapshot before the stop failed: %v", i+1, err)
	}
	if err == nil {
		r.frozen[i] = &v
	}
	r.up[i] = false
	return r.w.dom.Stop(i)
}

// startDC starts the DC and reads it before anything can replicate to it, to settle what the
// recorder could not know while it was down.
func (r *run) startDC(ctx context.Context, i int) error {
	r.dcMu.Lock()
	err := r.w.dom.Start(ctx, i)
	var v adView
	var rerr error
	if err == nil {
		v, rerr = readDC(ctx, r.w.dirs[i], r.path, r.protector())
		r.up[i], r.frozen[i] = true, nil
	}
	r.dcMu.Unlock()
	if err != nil {
		return fmt.Errorf("starting dc%d: %w", i+1, err)
	}
	if rerr != nil {
		return fmt.Errorf("reading dc%d after its start: %w", i+1, rerr)
	}
	r.rec.dcStarted(i, v)
	return nil
}

func (r *run) replicate(ctx context.Context, from, to int) error {
	r.dcMu.Lock()
	defer r.dcMu.Unlock()
	if r.held {
		r.logf("replication held: nothing replicated")
		return nil
	}
	if !r.up[from] || !r.up[to] {
		r.logf("a DC is down: nothing replicated")
		return nil
	}
	return r.w.dom.Replicate(ctx, from, to)
}

// readDCs reads every DC that is up and stands in the snapshot for every DC that is down (nil
// when unreadable); up says which is which.
func (r *run) readDCs(ctx context.Context) ([]*adView, []bool) {
	r.dcMu.Lock()
	defer r.dcMu.Unlock()
	views := make([]*adView, len(r.up))
	p := r.protector()
	for i := range r.up {
		if !r.up[i] {
			views[i] = r.frozen[i]
			continue
		}
		v, err := readDC(ctx, r.w.dirs[i], r.path, p)
		if err != nil {
			// Once more: a pooled connection may have died with an earlier stop of this DC.
			v, err = readDC(ctx, r.w.dirs[i], r.path, p)
		}
		if err != nil {
			r.logf("reading dc%d: %v", i+1, err)
			continue
		}
		views[i] = &v
	}
	return views, slices.Clone(r.up)
}

// protector opens key blobs with every KEK the schedule has used.
func (r *run) protector() keys.Protector {
	r.mu.Lock()
	ring, err := keys.ParseKEKSecret(r.kek)
	r.mu.Unlock()
	if err != nil {
		r.t.Fatalf("the schedule's KEK Secret: %v", err)
	}
	p, err := keys.NewProtector(keys.ModeWrapped, ring)
	if err != nil {
		r.t.Fatalf("protector: %v", err)
	}
	return p
}

func randomKEK() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

// prepareNamespace creates the namespace with the bind, CA and KEK Secrets and the replicas'
// service account.
func (r *run) prepareNamespace(ctx context.Context, c int) {
	kc := r.clusters[c].c
	dcs := r.w.dom.DCs()
	var ca []byte
	for _, dc := range dcs {
		ca = append(ca, dc.CAPEM...)
	}
	must(r.t, kc.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.ns}}))
	r.mu.Lock()
	kek := cloneData(r.kek)
	r.mu.Unlock()
	for name, data := range map[string]map[string][]byte{
		"bind": {controllers.BindUsernameKey: []byte(dcs[0].AdminUser), controllers.BindPasswordKey: []byte(dcs[0].AdminPassword)},
		"ca":   {"ca.crt": ca},
		"kek":  kek,
	} {
		must(r.t, kc.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: r.ns}, Data: data}))
	}
	must(r.t, kc.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "vmm", Namespace: r.ns}}))
}

func cloneData(in map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(in))
	for k, v := range in {
		out[k] = slices.Clone(v)
	}
	return out
}

// watch starts the recorder's Secret watch for a cluster and waits until it is established.
func (r *run) watch(ctx context.Context, wg *sync.WaitGroup, c int) {
	ready := make(chan struct{})
	wg.Go(func() { r.rec.watchSecrets(ctx, c, r.clusters[c].c, r.ns, ready) })
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		r.t.Fatalf("cluster %s: the Secret watch did not start", ClusterName(c))
	}
}

// dkm is the schedule's DKMContainer: every DC's URL, Wrapped, replicas app=vmm running as vmm.
func (r *run) dkm() *dkmv1.DKMContainer {
	var urls []string
	for _, dc := range r.w.dom.DCs() {
		urls = append(urls, dc.URL)
	}
	return &dkmv1.DKMContainer{
		ObjectMeta: metav1.ObjectMeta{Name: dkmName, Namespace: r.ns},
		Spec: dkmv1.DKMContainerSpec{
			Directory: dkmv1.DirectorySpec{
				URLs:              urls,
				BindSecretRef:     dkmv1.SecretReference{Name: "bind"},
				CABundleSecretRef: &dkmv1.SecretKeyReference{Name: "ca", Key: "ca.crt"},
				DialTimeout:       &metav1.Duration{Duration: 2 * time.Second},
				OperationTimeout:  &metav1.Duration{Duration: opTimeout},
			},
			Path:            r.path,
			ServiceAccounts: []string{r.w.service.DownLevel(r.w.dom.DCs()[0])},
			KeyProtection:   dkmv1.KeyProtectionSpec{Mode: dkmv1.KeyWrapped, KEKSecretRef: &dkmv1.SecretReference{Name: "kek"}},
			Replicas: &dkmv1.ReplicasSpec{
				Selector:            metav1.LabelSelector{MatchLabels: map[string]string{"app": "vmm"}},
				ServiceAccountNames: []string{"vmm"},
			},
		},
	}
}

func (r *run) create(ctx context.Context, c int) {
	must(r.t, r.clusters[c].c.Create(ctx, r.dkm()))
}

func (r *run) get(ctx context.Context, c int) *dkmv1.DKMContainer {
	obj := &dkmv1.DKMContainer{}
	if err := r.clusters[c].c.Get(ctx, client.ObjectKey{Namespace: r.ns, Name: dkmName}, obj); err != nil {
		return nil
	}
	return obj
}

func (r *run) present() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bPresent {
		return []int{ClusterA, ClusterB}
	}
	return []int{ClusterA}
}

// setRotation sets (or clears) spec.rotation.period in every cluster: only the writer acts on it.
func (r *run) setRotation(ctx context.Context, period *metav1.Duration) {
	for _, c := range r.present() {
		obj := r.get(ctx, c)
		if obj == nil {
			continue
		}
		patch := client.MergeFrom(obj.DeepCopy())
		obj.Spec.Rotation = nil
		if period != nil {
			obj.Spec.Rotation = &dkmv1.RotationSpec{Period: period}
		}
		if err := r.clusters[c].c.Patch(ctx, obj, patch); err != nil {
			r.logf("cluster %s: setting the rotation period: %v", ClusterName(c), err)
		}
	}
}

// rotateKEK makes a new KEK active in both clusters' KEK Secrets and keeps the old ones retired.
func (r *run) rotateKEK(ctx context.Context) error {
	r.mu.Lock()
	retired := 0
	for k := range r.kek {
		if strings.HasPrefix(k, "kek.") {
			retired++
		}
	}
	r.kek[fmt.Sprintf("kek.r%d", retired+1)] = r.kek["kek"]
	r.kek["kek"] = randomKEK()
	data := cloneData(r.kek)
	r.mu.Unlock()
	for _, c := range r.present() {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kek", Namespace: r.ns}}
		patch := client.MergeFrom(s.DeepCopy())
		s.Data = data
		if err := r.clusters[c].c.Patch(ctx, s, patch); err != nil {
			return fmt.Errorf("cluster %s: KEK Secret: %w", ClusterName(c), err)
		}
	}
	return nil
}

func (r *run) addPod(ctx context.Context, c int, name string) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: r.ns, Labels: map[string]string{"app": "vmm"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "vmm",
			Containers:         []corev1.Container{{Name: "vmm", Image: "vmm"}},
		},
	}
	must(r.t, r.clusters[c].c.Create(ctx, pod))
	r.mu.Lock()
	r.pods[c][name] = pod.UID
	r.mu.Unlock()
}

func (r *run) removePod(ctx context.Context, c int, name string) error {
	r.mu.Lock()
	uid := r.pods[c][name]
	delete(r.pods[c], name)
	r.mu.Unlock()
	r.rec.podRemoved(c, uid)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: r.ns}}
	return client.IgnoreNotFound(r.clusters[c].c.Delete(ctx, pod, client.GracePeriodSeconds(0)))
}

func (r *run) startOperator(c int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ops[c] != nil {
		return
	}
	r.opRuns[c]++
	op, err := r.w.startOperator(r.clusters[c], filepath.Join(r.logDir, fmt.Sprintf("operator-%s-%d.log", ClusterName(c), r.opRuns[c])), r.clockFile())
	if err != nil {
		r.t.Fatal(err)
	}
	r.ops[c] = op
}

func (r *run) killOperators() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c, op := range r.ops {
		if op != nil {
			op.proc.Kill()
			r.ops[c] = nil
		}
	}
}

// operatorLogs names each operator run's log, newest last.
func (r *run) operatorLogs() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for c := range r.opRuns {
		for i := 1; i <= r.opRuns[c]; i++ {
			out[fmt.Sprintf("%s run %d", ClusterName(c), i)] = filepath.Join(r.logDir, fmt.Sprintf("operator-%s-%d.log", ClusterName(c), i))
		}
	}
	return out
}

func tailFile(path string, n int) string {
	return (&operator{log: path}).tail(n)
}

// operatorLines keeps the last n lines that explain a failure from an operator log: no start-up
// chatter, no stack traces, each line cut to 300 characters.
func operatorLines(log string, n int) string {
	var out []string
	for line := range strings.SplitSeq(log, "\n") {
		if strings.Contains(line, `"msg":"Starting `) {
			continue
		}
		if i := strings.Index(line, `,"stacktrace"`); i > 0 {
			line = line[:i] + "}"
		}
		if len(line) > 300 {
			line = line[:300] + "..."
		}
		out = append(out, line)
	}
	return strings.Join(out[max(0, len(out)-n):], "\n")
}

// sampleStatus logs each change of the DKMContainers' conditions into the trace.
func (r *run) sampleStatus(ctx context.Context) {
	last := map[int]string{}
	for ctx.Err() == nil {
		for _, c := range r.present() {
			obj := r.get(ctx, c)
			if obj == nil {
				continue
			}
			if s := conditionSummary(obj); s != last[c] {
				last[c] = s
				r.logf("cluster %s: %s", ClusterName(c), s)
			}
		}
		sleep(ctx, 250*time.Millisecond)
	}
}

// conditionSummary names the role, the active key and each condition that is not True.
func conditionSummary(obj *dkmv1.DKMContainer) string {
	parts := []string{"role=" + string(obj.Status.Role), "active=" + short(strings.ToLower(obj.Status.ActiveKeyID))}
	for _, c := range obj.Status.Conditions {
		if c.Status != metav1.ConditionTrue {
			parts = append(parts, c.Type+"="+string(c.Status)+"/"+c.Reason)
		}
	}
	return strings.Join(parts, " ")
}

// heal brings everything up, releases replication and forces it both ways until both DCs hold
// the same thing and every present cluster is Ready with each replica holding the active key.
func (r *run) heal(ctx context.Context) bool {
	r.logf("healing")
	for i := range r.up {
		r.dcMu.Lock()
		down := !r.up[i]
		r.dcMu.Unlock()
		if down {
			if err := r.startDC(ctx, i); err != nil {
				r.logf("healing: %v", err)
			}
		}
	}
	// Released even if no step held it: a hold set while a DC was down may not have reached it.
	r.dcMu.Lock()
	r.held = false
	if err := r.w.dom.Release(ctx); err != nil {
		r.logf("healing: releasing replication: %v", err)
	}
	r.dcMu.Unlock()
	for _, c := range r.present() {
		r.startOperator(c)
	}
	return r.settle(ctx)
}

// settle forces replication both ways every 0.5s until converged says everything agrees (at
// most healTimeout).
func (r *run) settle(ctx context.Context) bool {
	deadline := time.Now().Add(healTimeout)
	why := ""
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for from := range r.up {
			for to := range r.up {
				if from != to {
					if err := r.replicate(ctx, from, to); err != nil {
						r.logf("healing: replicating dc%d->dc%d: %v", from+1, to+1, err)
					}
				}
			}
		}
		if why = r.converged(ctx); why == "" {
			r.logf("converged")
			return true
		}
		sleep(ctx, 500*time.Millisecond)
	}
	r.logf("not converged: %s", why)
	return false
}

// converged says what is not yet healed ("" when everything is).
func (r *run) converged(ctx context.Context) string {
	views, _ := r.readDCs(ctx)
	for i, v := range views {
		switch {
		case v == nil:
			return fmt.Sprintf("dc%d unreadable", i+1)
		case !v.exists || v.active == "":
			return fmt.Sprintf("dc%d: %s", i+1, v.summary())
		case !v.equal(*views[0]):
			return fmt.Sprintf("dc1 and dc%d differ: %s / %s", i+1, views[0].summary(), v.summary())
		}
	}
	active := views[0].active
	for _, c := range r.present() {
		obj := r.get(ctx, c)
		if obj == nil {
			return fmt.Sprintf("cluster %s: no DKMContainer", ClusterName(c))
		}
		if !meta.IsStatusConditionTrue(obj.Status.Conditions, dkmv1.ConditionReady) || strings.ToLower(obj.Status.ActiveKeyID) != active {
			return fmt.Sprintf("cluster %s: %s (AD's active key %s)", ClusterName(c), conditionSummary(obj), short(active))
		}
		r.mu.Lock()
		pods := slices.Sorted(maps.Keys(r.pods[c]))
		r.mu.Unlock()
		for _, pod := range pods {
			s := &corev1.Secret{}
			err := r.clusters[c].c.Get(ctx, client.ObjectKey{Namespace: r.ns, Name: dkmv1.KeySecretName(dkmName, pod)}, s)
			if err != nil || strings.ToLower(string(s.Data[controllers.SecretKeyActiveID])) != active {
				return fmt.Sprintf("cluster %s: pod %s's key Secret does not hold the active key yet", ClusterName(c), pod)
			}
		}
	}
	return ""
}

// cleanup deletes the DKMContainers (deletionPolicy Retain: AD is left alone) while their
// operators run to remove the finalizers, then stops the operators.
func (r *run) cleanup(ctx context.Context) {
	present := r.present()
	for _, c := range present {
		r.startOperator(c)
		obj := &dkmv1.DKMContainer{ObjectMeta: metav1.ObjectMeta{Name: dkmName, Namespace: r.ns}}
		if err := client.IgnoreNotFound(r.clusters[c].c.Delete(ctx, obj)); err != nil {
			r.t.Errorf("cluster %s: deleting the DKMContainer: %v", ClusterName(c), err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range present {
		for {
			err := r.clusters[c].c.Get(ctx, client.ObjectKey{Namespace: r.ns, Name: dkmName}, &dkmv1.DKMContainer{})
			if apierrors.IsNotFound(err) {
				break
			}
			if time.Now().After(deadline) {
				r.t.Errorf("cluster %s: the DKMContainer was not deleted within 30s", ClusterName(c))
				break
			}
			sleep(ctx, 100*time.Millisecond)
		}
	}
	r.killOperators()
}

// report is the table TestChaos logs at the end.
func report(rows []result, took time.Duration) string {
	var b strings.Builder
	totals := map[int]int{}
	failed := 0
	fmt.Fprintf(&b, "%-12s %5s %8s %8s %6s %6s %6s %6s %6s %5s %s\n", "SEED", "STEPS", "TOOK", "HEAL", "INV1", "INV2", "INV3", "INV4", "INV5", "AMBIG", "VIOLATIONS")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-12d %5d %8s %8s %6d %6d %6d %6d %6d %5d %d\n", r.seed, r.steps, r.took.Round(100*time.Millisecond),
			r.heal.Round(100*time.Millisecond), r.checks[1], r.checks[2], r.checks[3], r.checks[4], r.checks[5], r.ambiguous, len(r.violations))
		for k, v := range r.checks {
			totals[k] += v
		}
		if len(r.violations) > 0 {
			failed++
		}
	}
	fmt.Fprintf(&b, "%d schedule(s) in %s, %d failed; invariant checks: 1: %d, 2: %d, 3: %d, 4: %d, 5: %d\n",
		len(rows), took.Round(time.Second), failed, totals[1], totals[2], totals[3], totals[4], totals[5])
	return b.String()
}
