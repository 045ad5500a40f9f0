package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Kind is one sort of fault (or of ordinary life) a schedule applies.
type Kind string

const (
	// StopDC stops domain controller DC (its data stays); StartDC brings it back.
	StopDC  Kind = "stop-dc"
	StartDC Kind = "start-dc"
	// HoldReplication holds replication between the DCs back; ReleaseReplication lets it flow.
	HoldReplication    Kind = "hold-replication"
	ReleaseReplication Kind = "release-replication"
	// Replicate forces one replication from DC to To (AD's own replication is off in the
	// fixture, so this is the only way a write reaches the other DC). While replication is held
	// it does nothing.
	Replicate Kind = "replicate"
	// CrashOperator kills Cluster's operator process (SIGKILL, mid-reconcile); StartOperator
	// starts a new one with an empty key store.
	CrashOperator Kind = "crash-operator"
	StartOperator Kind = "start-operator"
	// SecondCluster: cluster B's DKMContainer appears on the same path, with its own operator.
	SecondCluster Kind = "second-cluster"
	// RotateKey asks the writer for a key rotation (spec.rotation.period set briefly).
	RotateKey Kind = "rotate-key"
	// RotateKEK puts a new active KEK into both clusters' KEK Secrets, keeping the old ones
	// retired, so the writer re-wraps every version.
	RotateKEK Kind = "rotate-kek"
	// AddReplica creates replica pod Pod in Cluster; RemoveReplica deletes it.
	AddReplica    Kind = "add-replica"
	RemoveReplica Kind = "remove-replica"
)

// Clusters: A is where the schedule's DKMContainer is created first (its writer); B is the
// second cluster whose DKMContainer appears on the same path during the schedule.
const (
	ClusterA = 0
	ClusterB = 1
)

// Step is one fault (or ordinary event) and the pause that follows it.
type Step struct {
	Kind Kind
	// DC is the domain controller (StopDC, StartDC, Replicate's source); To is Replicate's
	// destination.
	DC, To int
	// Cluster is the operator's or the replica's cluster (ClusterA or ClusterB).
	Cluster int
	// Pod is the replica pod's name (AddReplica, RemoveReplica).
	Pod string
	// Pause is how long the schedule waits after the step, for the operator to act on it.
	Pause time.Duration
}

func (s Step) String() string {
	var what string
	switch s.Kind {
	case StopDC, StartDC:
		what = fmt.Sprintf("%s dc%d", s.Kind, s.DC+1)
	case Replicate:
		what = fmt.Sprintf("%s dc%d->dc%d", s.Kind, s.DC+1, s.To+1)
	case CrashOperator, StartOperator, SecondCluster:
		what = fmt.Sprintf("%s %s", s.Kind, ClusterName(s.Cluster))
	case AddReplica, RemoveReplica:
		what = fmt.Sprintf("%s %s/%s", s.Kind, ClusterName(s.Cluster), s.Pod)
	default:
		what = string(s.Kind)
	}
	return fmt.Sprintf("%-34s then %s", what, s.Pause)
}

// ClusterName is "A" or "B".
func ClusterName(c int) string { return string(rune('A' + c)) }

// Schedule is a reproducible list of steps: the same seed and options give the same steps.
type Schedule struct {
	Seed uint64
	// Warm schedules (even seeds) start once the first key is on every DC and in the replicas,
	// so their faults hit rotations and a running writer; cold ones (odd seeds) start as the
	// DKMContainer is created, so their faults hit the first key.
	Warm  bool
	Steps []Step
}

func (s Schedule) String() string {
	var b strings.Builder
	start := "cold: faults from the DKMContainer's creation"
	if s.Warm {
		start = "warm: faults once the first key is everywhere"
	}
	fmt.Fprintf(&b, "schedule seed=%d (%d steps, %s):\n", s.Seed, len(s.Steps), start)
	for i, st := range s.Steps {
		fmt.Fprintf(&b, "  %2d. %s\n", i+1, st)
	}
	return b.String()
}

// Has reports whether the schedule has a step of kind k.
func (s Schedule) Has(k Kind) bool {
	for _, st := range s.Steps {
		if st.Kind == k {
			return true
		}
	}
	return false
}

// Options shape the schedules Generate draws.
type Options struct {
	// Steps is the number of steps (default 12).
	Steps int
	// DCs is the number of domain controllers (1 or 2; default 2). With one, no replication
	// steps are drawn.
	DCs int
	// MaxPause bounds the pause after a step (default 1.5s); pauses are multiples of 100ms.
	MaxPause time.Duration
	// InitialReplicas is the number of replica pods cluster A starts with (vmm-0, ...); the
	// second cluster starts with one.
	InitialReplicas int
}

func (o Options) withDefaults() Options {
	if o.Steps <= 0 {
		o.Steps = 12
	}
	if o.DCs <= 0 {
		o.DCs = 2
	}
	if o.MaxPause <= 0 {
		o.MaxPause = 1500 * time.Millisecond
	}
	return o
}

// weights says how often each kind is drawn, among those possible in the current state.
var weights = map[Kind]int{
	Replicate:          20,
	StopDC:             8,
	StartDC:            10,
	HoldReplication:    5,
	ReleaseReplication: 6,
	CrashOperator:      8,
	StartOperator:      10,
	SecondCluster:      6,
	RotateKey:          8,
	RotateKEK:          4,
	AddReplica:         7,
	RemoveReplica:      5,
}

// kinds fixes the order in which candidates are listed, so the draw is reproducible.
var kinds = []Kind{Replicate, StopDC, StartDC, HoldReplication, ReleaseReplication, CrashOperator,
	StartOperator, SecondCluster, RotateKey, RotateKEK, AddReplica, RemoveReplica}

// model is what the generator knows of the world after each step, so that every step it draws
// is possible: a stopped DC is started, never stopped twice; a crashed operator is restarted.
type model struct {
	dcUp     []bool
	held     bool
	opUp     [2]bool
	bPresent bool
	pods     [2][]string
	nextPod  [2]int
	dcs      int
}

// Generate draws the schedule of a seed.
func Generate(seed uint64, opts Options) Schedule {
	opts = opts.withDefaults()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	m := &model{dcUp: make([]bool, opts.DCs), dcs: opts.DCs, opUp: [2]bool{true, false}}
	for i := range m.dcUp {
		m.dcUp[i] = true
	}
	for range max(opts.InitialReplicas, 0) {
		m.addPod(ClusterA)
	}
	s := Schedule{Seed: seed, Warm: seed%2 == 0}
	pauses := int(opts.MaxPause / (100 * time.Millisecond))
	for range opts.Steps {
		st := m.draw(rng)
		st.Pause = time.Duration(1+rng.IntN(pauses)) * 100 * time.Millisecond
		m.apply(st)
		s.Steps = append(s.Steps, st)
	}
	return s
}

func (m *model) addPod(c int) string {
	name := fmt.Sprintf("vmm-%d", m.nextPod[c])
	m.nextPod[c]++
	m.pods[c] = append(m.pods[c], name)
	return name
}

// clusters lists the clusters that have a DKMContainer.
func (m *model) clusters() []int {
	if m.bPresent {
		return []int{ClusterA, ClusterB}
	}
	return []int{ClusterA}
}

// draw picks a kind by weight among the possible ones, then its arguments.
func (m *model) draw(rng *rand.Rand) Step {
	type option struct {
		kind   Kind
		weight int
	}
	var opts []option
	total := 0
	for _, k := range kinds {
		if m.possible(k) {
			opts = append(opts, option{k, weights[k]})
			total += weights[k]
		}
	}
	n := rng.IntN(total)
	var k Kind
	for _, o := range opts {
		if n < o.weight {
			k = o.kind
			break
		}
		n -= o.weight
	}
	st := Step{Kind: k}
	switch k {
	case StopDC:
		st.DC = pick(rng, m.dcsWhere(true))
	case StartDC:
		st.DC = pick(rng, m.dcsWhere(false))
	case Replicate:
		st.DC = rng.IntN(m.dcs)
		st.To = (st.DC + 1 + rng.IntN(m.dcs-1)) % m.dcs
	case CrashOperator:
		st.Cluster = pick(rng, m.operators(true))
	case StartOperator:
		st.Cluster = pick(rng, m.operators(false))
	case SecondCluster:
		st.Cluster, st.Pod = ClusterB, fmt.Sprintf("vmm-%d", m.nextPod[ClusterB])
	case AddReplica:
		st.Cluster = pick(rng, m.clusters())
		st.Pod = fmt.Sprintf("vmm-%d", m.nextPod[st.Cluster])
	case RemoveReplica:
		var with []int
		for _, c := range m.clusters() {
			if len(m.pods[c]) > 0 {
				with = append(with, c)
			}
		}
		st.Cluster = pick(rng, with)
		st.Pod = m.pods[st.Cluster][rng.IntN(len(m.pods[st.Cluster]))]
	}
	return st
}

func pick(rng *rand.Rand, from []int) int { return from[rng.IntN(len(from))] }

func (m *model) possible(k Kind) bool {
	switch k {
	case Replicate:
		return m.dcs > 1
	case StopDC:
		// At most one DC down at a time when there are two: both down is an outage of all of AD,
		// which the single-DC schedules already cover with their one DC.
		return len(m.dcsWhere(false)) == 0 && (m.dcs == 1 || len(m.dcsWhere(true)) > 1)
	case StartDC:
		return len(m.dcsWhere(false)) > 0
	case HoldReplication:
		return m.dcs > 1 && !m.held
	case ReleaseReplication:
		return m.held
	case CrashOperator:
		return len(m.operators(true)) > 0
	case StartOperator:
		return len(m.operators(false)) > 0
	case SecondCluster:
		return !m.bPresent
	case RotateKey, RotateKEK, AddReplica:
		return true
	case RemoveReplica:
		return len(m.pods[ClusterA])+len(m.pods[ClusterB]) > 0
	}
	return false
}

func (m *model) dcsWhere(up bool) []int {
	var out []int
	for i, u := range m.dcUp {
		if u == up {
			out = append(out, i)
		}
	}
	return out
}

// operators lists the clusters with a DKMContainer whose operator is (not) running.
func (m *model) operators(up bool) []int {
	var out []int
	for _, c := range m.clusters() {
		if m.opUp[c] == up {
			out = append(out, c)
		}
	}
	return out
}

func (m *model) apply(st Step) {
	switch st.Kind {
	case StopDC:
		m.dcUp[st.DC] = false
	case StartDC:
		m.dcUp[st.DC] = true
	case HoldReplication:
		m.held = true
	case ReleaseReplication:
		m.held = false
	case CrashOperator:
		m.opUp[st.Cluster] = false
	case StartOperator:
		m.opUp[st.Cluster] = true
	case SecondCluster:
		m.bPresent, m.opUp[ClusterB] = true, true
		m.addPod(ClusterB)
	case AddReplica:
		m.addPod(st.Cluster)
	case RemoveReplica:
		m.pods[st.Cluster] = slices.DeleteFunc(m.pods[st.Cluster], func(p string) bool { return p == st.Pod })
	}
}
