package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/go-ldap/ldap/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/controllers"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

// Key safety across clusters (issue 12): one Samba DC, two API servers, the operator's
// controllers running against each with a Pool of its own, and both clusters creating a
// DKMContainer on the same fresh path at the same instant. Exactly one DC Manager and one key
// may result, both clusters must project that key and no other, and the cluster that lost the
// container add (the reader) must not write AD at all.
const (
	raceRounds = 20
	// The clusters' operators: a short retry so a reader waiting for the owner's key looks again
	// soon; a resync long enough that 2×(rounds) live DKMContainers do not swamp two cores.
	raceRetry  = 250 * time.Millisecond
	raceResync = 5 * time.Second
	racePoll   = 50 * time.Millisecond
	// raceHold is how long, in every other round, each cluster's look at the still-missing
	// container is held back (a slow DC reply): both clusters then see it missing and both send
	// the add, so the container add itself decides the writer, not which API server was quicker.
	raceHold = 300 * time.Millisecond
	// raceDKM is the DKMContainer's name, and racePod its replica's, in both clusters: the same
	// namespace and name in two clusters is still two owners (the cluster ID tells them apart).
	raceDKM = "vmm"
	racePod = "vmm-0"
)

var _ = Describe("Two clusters creating the same DKM container at once", Ordered, func() {
	var (
		a, b    *raceCluster
		service testenv.Principal
	)

	BeforeAll(func(ctx context.Context) {
		// Cluster A is the suite's API server; cluster B is a second etcd and kube-apiserver.
		kubeB, err := testenv.NewKube(ctx, filepath.Join("config", "crd", "bases"))
		Expect(err).NotTo(HaveOccurred())
		start := time.Now()
		cfgB, err := kubeB.Start()
		Expect(err).NotTo(HaveOccurred(), "starting the second API server")
		DeferCleanup(kubeB.Stop)
		AddReportEntry("second API server started after", time.Since(start).Round(time.Millisecond))
		clientB, err := client.New(cfgB, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())

		a = startRaceCluster(ctx, "A", cfg, k8sClient)
		b = startRaceCluster(ctx, "B", cfgB, clientB)
		Expect(a.id).NotTo(Equal(b.id), "each cluster has its own kube-system UID")

		// One AD service account for every round: both DKMContainers of a round must ask for the
		// same DACL, or the reader would (rightly) report drift on the writer's container.
		service, err = dc.CreateUser(fmt.Sprintf("svc-race-%d", time.Now().UnixNano()%100000), "Svc!Passw0rd-race")
		Expect(err).NotTo(HaveOccurred())
	}, NodeTimeout(5*time.Minute))

	It(fmt.Sprintf("end %d simultaneous creates with one DC Manager, one key in both clusters, and no write by the reader", raceRounds),
		func(ctx context.Context) {
			kek := randomKEK()
			var rows []raceRow
			var paths []string
			var readers []*raceCluster
			contested := 0
			start := time.Now()
			for i := 1; i <= raceRounds; i++ {
				hold := time.Duration(0)
				if i%2 == 0 {
					hold = raceHold
				}
				a.hold.Store(int64(hold))
				b.hold.Store(int64(hold))
				r := runRace(ctx, i, a, b, service, kek, kek)
				// Ready in both clusters.
				r.waitBoth(ctx, func(g Gomega, _ *raceCluster, obj *dkmv1.DKMContainer) {
					ready := meta.FindStatusCondition(obj.Status.Conditions, dkmv1.ConditionReady)
					g.Expect(ready).NotTo(BeNil(), "no Ready condition yet")
					g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "Ready: %s: %s", ready.Reason, ready.Message)
				})
				r.settled = time.Since(r.released)
				row := r.check(ctx)
				row.held = hold > 0
				if row.held {
					contested += row.readerFailedAdds
				}
				rows = append(rows, row)
				paths = append(paths, r.path)
				readers = append(readers, r.reader)
			}
			elapsed := time.Since(start)
			AddReportEntry(fmt.Sprintf("%d rounds took", raceRounds), elapsed.Round(time.Millisecond))
			AddReportEntry("per round", raceTable(rows))
			// Without contention the spec would prove little about the add as the arbiter.
			Expect(contested).To(BeNumerically(">=", raceRounds/4),
				"rounds with a held look in which the reader's container add failed with already_exists")

			// One more resync of every DKMContainer (both clusters): nothing appears in AD later,
			// and no reader wrote on a steady-state reconcile either.
			time.Sleep(raceResync + raceResync/5)
			for i, path := range paths {
				Expect(adManagerDNs(path)).To(HaveLen(1), "round %d after a resync: DC Manager objects in %s", i+1, path)
				Expect(adKeyIDs(path)).To(HaveLen(1), "round %d after a resync: key contacts in %s", i+1, path)
				ok, _ := readers[i].writes.under(path)
				Expect(ok).To(BeZero(), "round %d after a resync: the reader (cluster %s) wrote %s", i+1, readers[i].name, path)
			}
			// deletionPolicy Retain: deleting them, writer or reader, writes nothing to AD.
			writes := a.writes.len() + b.writes.len()
			for _, c := range []*raceCluster{a, b} {
				c.deleteAll(ctx)
			}
			Expect(a.writes.len()+b.writes.len()).To(Equal(writes), "AD writes while the DKMContainers were deleted")
		}, NodeTimeout(10*time.Minute))

	It("with different KEKs: the reader reports KeyUnreadable and never creates a key", func(ctx context.Context) {
		// Held looks: both clusters send the container add, and the loser becomes the reader.
		a.hold.Store(int64(raceHold))
		b.hold.Store(int64(raceHold))
		r := runRace(ctx, raceRounds+1, a, b, service, randomKEK(), randomKEK())
		var loser *raceCluster
		r.waitBoth(ctx, func(g Gomega, c *raceCluster, obj *dkmv1.DKMContainer) {
			key := meta.FindStatusCondition(obj.Status.Conditions, dkmv1.ConditionKeyReady)
			g.Expect(key).NotTo(BeNil(), "no KeyReady condition yet")
			switch obj.Status.Role {
			case dkmv1.RoleWriter:
				ready := meta.FindStatusCondition(obj.Status.Conditions, dkmv1.ConditionReady)
				g.Expect(ready).NotTo(BeNil())
				g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "writer Ready: %s: %s", ready.Reason, ready.Message)
			case dkmv1.RoleReader:
				g.Expect(key.Reason).To(Equal(dkmv1.ReasonKeyUnreadable), "reader KeyReady: %s", key.Message)
				loser = c
			default:
				g.Expect(obj.Status.Role).NotTo(BeEmpty(), "no role yet")
			}
		})
		objA, objB := r.get(ctx, a), r.get(ctx, b)
		Expect([]dkmv1.Role{objA.Status.Role, objB.Status.Role}).To(ConsistOf(dkmv1.RoleWriter, dkmv1.RoleReader),
			"one Writer and one Reader")
		winner := a
		if loser == a {
			winner = b
		}
		// The reader keeps failing to open the key, and keeps its hands off AD, for a resync.
		Consistently(func(g Gomega) {
			obj := r.get(ctx, loser)
			g.Expect(obj.Status.Role).To(Equal(dkmv1.RoleReader))
			key := meta.FindStatusCondition(obj.Status.Conditions, dkmv1.ConditionKeyReady)
			g.Expect(key.Reason).To(Equal(dkmv1.ReasonKeyUnreadable))
			g.Expect(obj.Status.ActiveKeyID).To(BeEmpty())
			g.Expect(loser.store.Get(r.key())).To(BeNil(), "the reader holds no key in memory")
		}, raceResync+time.Second, 250*time.Millisecond).Should(Succeed())
		r.stopWatching()
		r.logTrace()

		Expect(adManagerDNs(r.path)).To(HaveLen(1), "DC Manager objects")
		ids := adKeyIDs(r.path)
		Expect(ids).To(HaveLen(1), "key contacts")
		won := r.get(ctx, winner)
		Expect(strings.EqualFold(ids[0], won.Status.ActiveKeyID)).To(BeTrue(), "the key in AD is the writer's")
		Expect(adOwnerOf(r.path).Cluster).To(Equal(winner.id))
		ok, failed := loser.writes.under(r.path)
		Expect(ok).To(BeZero(), "successful writes by the reader: %v", loser.writes.describe(r.path))
		_, err := secretKeyIn(ctx, loser, r.ns)
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the reader projects no key Secret (got %v)", err)
		Expect(r.seen[loser.name]).To(BeEmpty(), "the reader's replica never held a key")
		Expect(r.seen[winner.name]).To(ConsistOf(strings.ToLower(won.Status.ActiveKeyID)), "the writer's replica held only its key")
		AddReportEntry("different KEKs", fmt.Sprintf("writer %s, reader %s: reader failed adds %d (%s), successful writes 0, KeyReady %s",
			winner.name, loser.name, failed, loser.writes.describe(r.path), dkmv1.ReasonKeyUnreadable))
		for _, c := range []*raceCluster{a, b} {
			c.deleteAll(ctx)
		}
	}, NodeTimeout(3*time.Minute))
})

// raceCluster is one API server with the operator's controllers running against it.
type raceCluster struct {
	name   string
	c      client.Client
	id     string // the kube-system namespace's UID: the cluster in AD ownership records
	store  *controllers.KeyStore
	ops    *opCounter   // every LDAP operation of this cluster's Pool
	writes *writeLog    // every write the reconciler asked for, with its DN and outcome
	hold   atomic.Int64 // nanoseconds an Observe that finds no container is held back

	mu  sync.Mutex
	nss []string
}

// startRaceCluster wires the controllers with controllers.Setup, as main does, around a Pool
// of this cluster's own; the cluster ID is left to Setup (the kube-system UID).
func startRaceCluster(ctx context.Context, name string, restCfg *rest.Config, c client.Client) *raceCluster {
	rc := &raceCluster{name: name, c: c, ops: &opCounter{m: map[string]int{}}, writes: &writeLog{}}
	id, err := controllers.ClusterID(ctx, c)
	Expect(err).NotTo(HaveOccurred())
	rc.id = id

	skipNameValidation := true
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:     scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Cache:      controllers.CacheOptions(nil),
		Controller: config.Controller{SkipNameValidation: &skipNameValidation},
	})
	Expect(err).NotTo(HaveOccurred())
	pool := directory.NewPool(directory.WithObserver(rc.ops.observe))
	rc.store, err = controllers.Setup(mgr, controllers.Options{
		Directories: countingFactory(pool, rc.writes, &rc.hold),
		Metrics:     controllers.NewMetrics(nil),
		Resync:      raceResync,
		Retry:       raceRetry,
	})
	Expect(err).NotTo(HaveOccurred())
	mctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(mctx)).To(Succeed())
	}()
	Expect(mgr.GetCache().WaitForCacheSync(ctx)).To(BeTrue(), "cluster %s: the manager's caches", name)
	DeferCleanup(func() {
		cancel()
		<-done
		pool.Close()
	})
	return rc
}

// prepare creates the round's namespace with the bind, CA and KEK Secrets, the replicas'
// service account and one replica pod (no kubelet: it stays Pending, which the projector serves).
func (c *raceCluster) prepare(ctx context.Context, ns string, kek []byte) {
	Expect(c.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	for name, data := range map[string]map[string][]byte{
		"bind": {controllers.BindUsernameKey: []byte(dc.AdminUser), controllers.BindPasswordKey: []byte(dc.AdminPassword)},
		"ca":   {"ca.crt": dc.CAPEM},
		"kek":  {"kek": kek},
	} {
		Expect(c.c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: data})).To(Succeed())
	}
	Expect(c.c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "vmm", Namespace: ns}})).To(Succeed())
	Expect(c.c.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: racePod, Namespace: ns, Labels: replicaLabels},
		Spec:       replicaPodSpec(),
	})).To(Succeed())
	c.mu.Lock()
	c.nss = append(c.nss, ns)
	c.mu.Unlock()
}

// deleteAll deletes the rounds' DKMContainers (deletionPolicy Retain: AD is not touched) while
// this cluster's operator still runs to remove the finalizers, so the other specs' operators on
// cluster A never see them.
func (c *raceCluster) deleteAll(ctx context.Context) {
	c.mu.Lock()
	nss := slices.Clone(c.nss)
	c.nss = nil
	c.mu.Unlock()
	for _, ns := range nss {
		obj := &dkmv1.DKMContainer{ObjectMeta: metav1.ObjectMeta{Name: raceDKM, Namespace: ns}}
		Expect(client.IgnoreNotFound(c.c.Delete(ctx, obj))).To(Succeed())
	}
	for _, ns := range nss {
		Eventually(func() bool {
			return apierrors.IsNotFound(c.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: raceDKM}, &dkmv1.DKMContainer{}))
		}, eventually, poll).Should(BeTrue(), "cluster %s: DKMContainer %s/%s not deleted", c.name, ns, raceDKM)
	}
}

// race is one round: the same DKMContainer created in both clusters at once.
type race struct {
	round    int
	ns, path string
	a, b     *raceCluster
	released time.Time
	settled  time.Duration
	// before holds each cluster's LDAP operation counts at the release.
	before map[string]map[string]int

	// seen collects, per cluster, every key ID its replica's Secret or its key store held while
	// the round ran (lower case); stopWatching ends the collection.
	mu       sync.Mutex
	seen     map[string][]string
	last     map[string]string    // each cluster's last conditionSummary
	lagSince map[string]time.Time // when Ready was first seen False with every other condition True
	trace    []string             // their changes, for a slow or failed round
	stop     chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once

	writer, reader *raceCluster
}

func runRace(ctx context.Context, round int, a, b *raceCluster, service testenv.Principal, kekA, kekB []byte) *race {
	r := &race{
		round: round, a: a, b: b,
		ns:   fmt.Sprintf("race-%d-%d", round, time.Now().UnixNano()%100000),
		seen: map[string][]string{}, last: map[string]string{}, lagSince: map[string]time.Time{}, stop: make(chan struct{}), stopped: make(chan struct{}),
	}
	r.path = fmt.Sprintf("CN=DKM-%s,CN=System,%s", r.ns, dc.BaseDN)
	a.prepare(ctx, r.ns, kekA)
	b.prepare(ctx, r.ns, kekB)

	objs := map[*raceCluster]*dkmv1.DKMContainer{a: r.dkm(service), b: r.dkm(service)}
	release := make(chan struct{})
	errs := make(chan error, 2)
	var ready sync.WaitGroup
	for c, obj := range objs {
		ready.Add(1)
		go func() {
			ready.Done()
			<-release
			if err := c.c.Create(ctx, obj); err != nil {
				errs <- fmt.Errorf("cluster %s: %w", c.name, err)
				return
			}
			errs <- nil
		}()
	}
	ready.Wait()
	r.before = map[string]map[string]int{a.name: a.ops.snapshot(), b.name: b.ops.snapshot()}
	r.released = time.Now()
	go r.watch(ctx)
	DeferCleanup(r.stopWatching)
	close(release)
	for range objs {
		Expect(<-errs).To(Succeed())
	}
	return r
}

func (r *race) dkm(service testenv.Principal) *dkmv1.DKMContainer {
	return &dkmv1.DKMContainer{
		ObjectMeta: metav1.ObjectMeta{Name: raceDKM, Namespace: r.ns},
		Spec: dkmv1.DKMContainerSpec{
			Directory: dkmv1.DirectorySpec{
				URLs:              []string{dc.URL},
				BindSecretRef:     dkmv1.SecretReference{Name: "bind"},
				CABundleSecretRef: &dkmv1.SecretKeyReference{Name: "ca", Key: "ca.crt"},
			},
			Path:            r.path,
			ServiceAccounts: []string{service.DownLevel(dc)},
			KeyProtection:   dkmv1.KeyProtectionSpec{Mode: dkmv1.KeyWrapped, KEKSecretRef: &dkmv1.SecretReference{Name: "kek"}},
			Replicas: &dkmv1.ReplicasSpec{
				Selector:            metav1.LabelSelector{MatchLabels: replicaLabels},
				ServiceAccountNames: []string{"vmm"},
			},
		},
	}
}

func (r *race) key() types.NamespacedName {
	return types.NamespacedName{Namespace: r.ns, Name: raceDKM}
}

func (r *race) get(ctx context.Context, c *raceCluster) *dkmv1.DKMContainer {
	obj := &dkmv1.DKMContainer{}
	Expect(c.c.Get(ctx, r.key(), obj)).To(Succeed())
	return obj
}

// waitBoth waits until check passes for the DKMContainer in both clusters.
func (r *race) waitBoth(ctx context.Context, check func(Gomega, *raceCluster, *dkmv1.DKMContainer)) {
	Eventually(func(g Gomega) {
		for _, c := range []*raceCluster{r.a, r.b} {
			obj := &dkmv1.DKMContainer{}
			g.Expect(c.c.Get(ctx, r.key(), obj)).To(Succeed())
			check(g, c, obj)
		}
	}, eventually, racePoll).Should(Succeed(), "round %d (%s)", r.round, r.path)
}

// watch polls, while the race settles, each cluster's replica key Secret (its active key ID,
// and every key.<id> entry) and the key ring its operator serves replicas from; it samples once
// more when stopped, so what check then reads was seen too.
func (r *race) watch(ctx context.Context) {
	defer close(r.stopped)
	t := time.NewTicker(racePoll)
	defer t.Stop()
	for {
		r.sample(ctx)
		select {
		case <-r.stop:
			r.sample(ctx)
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *race) sample(ctx context.Context) {
	for _, c := range []*raceCluster{r.a, r.b} {
		var ids []string
		if s, err := secretKeyIn(ctx, c, r.ns); err == nil {
			ids = append(ids, strings.ToLower(string(s.Data[controllers.SecretKeyActiveID])))
			for k := range s.Data {
				if id, ok := strings.CutPrefix(k, controllers.SecretKeyVersionPrefix); ok {
					ids = append(ids, strings.ToLower(id))
				}
			}
		}
		if ring := c.store.Get(r.key()); ring != nil {
			for _, v := range ring.Versions() {
				ids = append(ids, strings.ToLower(v.ID.String()))
			}
		}
		state := "absent"
		obj := &dkmv1.DKMContainer{}
		if err := c.c.Get(ctx, r.key(), obj); err == nil {
			state = conditionSummary(obj)
			// Ready False while every other condition is True: Ready lags behind the conditions
			// it summarises (see the report).
			if r.lagSince[c.name].IsZero() && staleReady(obj) {
				r.mu.Lock()
				r.lagSince[c.name] = time.Now()
				r.mu.Unlock()
			}
		}
		r.mu.Lock()
		for _, id := range ids {
			if !slices.Contains(r.seen[c.name], id) {
				r.seen[c.name] = append(r.seen[c.name], id)
			}
		}
		if state != r.last[c.name] {
			r.last[c.name] = state
			r.trace = append(r.trace, fmt.Sprintf("+%s %s: %s", time.Since(r.released).Round(time.Millisecond), c.name, state))
		}
		r.mu.Unlock()
	}
}

// staleReady: Ready is not True although every condition it summarises is.
func staleReady(obj *dkmv1.DKMContainer) bool {
	ready := meta.FindStatusCondition(obj.Status.Conditions, dkmv1.ConditionReady)
	if ready == nil || ready.Status == metav1.ConditionTrue {
		return false
	}
	for _, t := range []string{dkmv1.ConditionDirectoryReachable, dkmv1.ConditionContainerReady, dkmv1.ConditionAccessControlled,
		dkmv1.ConditionKeyReady, dkmv1.ConditionReplicasProjected} {
		if !meta.IsStatusConditionTrue(obj.Status.Conditions, t) {
			return false
		}
	}
	return true
}

// conditionSummary names the role and each condition that is not True, for the round's trace.
func conditionSummary(obj *dkmv1.DKMContainer) string {
	parts := []string{"role=" + string(obj.Status.Role)}
	for _, c := range obj.Status.Conditions {
		if c.Status != metav1.ConditionTrue {
			parts = append(parts, c.Type+"="+string(c.Status)+"/"+c.Reason)
		}
	}
	return strings.Join(parts, " ")
}

// readyLags says, per cluster, how long Ready stayed False after every condition it summarises
// was True (until both were seen Ready).
func (r *race) readyLags() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range []*raceCluster{r.a, r.b} {
		if since := r.lagSince[c.name]; !since.IsZero() {
			out = append(out, fmt.Sprintf("%s %s", c.name, r.released.Add(r.settled).Sub(since).Round(100*time.Millisecond)))
		}
	}
	return out
}

// logTrace writes the round's status changes to GinkgoWriter: shown with a failure, or with -v.
func (r *race) logTrace() {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(GinkgoWriter, "round %d (%s), statuses as they changed:\n  %s\n", r.round, r.path, strings.Join(r.trace, "\n  "))
}

func (r *race) stopWatching() {
	r.stopOnce.Do(func() { close(r.stop) })
	<-r.stopped
}

// raceRow is one round's numbers for the report.
type raceRow struct {
	round                            int
	held                             bool
	writer, reader                   string
	readerFailedAdds                 int // the reader's CreateContainer that AD refused: already_exists
	settled                          time.Duration
	readerOK, readerFailed, writerOK int
	readerFailedOps                  string
	readerPoolWrites, readerPoolFail int
	readyLag                         []string // "B 5.1s": Ready False that long with every other condition True
	trace                            []string
}

// check asserts the round's outcome, once both DKMContainers are Ready.
func (r *race) check(ctx context.Context) raceRow {
	r.stopWatching()
	r.logTrace()
	objA, objB := r.get(ctx, r.a), r.get(ctx, r.b)
	Expect([]dkmv1.Role{objA.Status.Role, objB.Status.Role}).To(ConsistOf(dkmv1.RoleWriter, dkmv1.RoleReader),
		"round %d: roles of A and B: want one Writer and one Reader (owners: A %q, B %q)", r.round, objA.Status.Owner, objB.Status.Owner)
	r.writer, r.reader = r.a, r.b
	if objB.Status.Role == dkmv1.RoleWriter {
		r.writer, r.reader = r.b, r.a
	}

	// AD, read as Administrator: one DC Manager, one key, owned by the writer's cluster.
	Expect(adManagerDNs(r.path)).To(HaveLen(1), "round %d: DC Manager objects in %s", r.round, r.path)
	ids := adKeyIDs(r.path)
	Expect(ids).To(HaveLen(1), "round %d: key contacts in %s", r.round, r.path)
	owner := adOwnerOf(r.path)
	Expect(owner.Cluster).To(Equal(r.writer.id), "round %d: the container's record names the writer's cluster", r.round)
	Expect(owner.Namespace + "/" + owner.Name).To(Equal(r.ns + "/" + raceDKM))

	// Both clusters: the same key in status and in the replica's Secret, and no other ever.
	keyID := strings.ToLower(ids[0])
	fp := objA.Status.ActiveKeyFingerprint
	Expect(fp).To(HavePrefix("sha256:"), "round %d", r.round)
	Expect(objB.Status.ActiveKeyFingerprint).To(Equal(fp), "round %d: activeKeyFingerprint differs between the clusters", r.round)
	var projected [][]byte
	for c, obj := range map[*raceCluster]*dkmv1.DKMContainer{r.a: objA, r.b: objB} {
		Expect(strings.ToLower(obj.Status.ActiveKeyID)).To(Equal(keyID), "round %d, cluster %s: activeKeyID", r.round, c.name)
		s, err := secretKeyIn(ctx, c, r.ns)
		Expect(err).NotTo(HaveOccurred(), "round %d, cluster %s: the replica's key Secret", r.round, c.name)
		Expect(strings.ToLower(string(s.Data[controllers.SecretKeyActiveID]))).To(Equal(keyID), "round %d, cluster %s", r.round, c.name)
		Expect(fingerprint(s.Data[controllers.SecretKeyActive])).To(Equal(fp), "round %d, cluster %s: the replica's key", r.round, c.name)
		projected = append(projected, s.Data[controllers.SecretKeyActive])
		r.mu.Lock()
		seen := slices.Clone(r.seen[c.name])
		r.mu.Unlock()
		Expect(seen).To(ConsistOf(keyID), "round %d, cluster %s: key IDs a replica or the key store held while the race settled", r.round, c.name)
	}
	Expect(bytes.Equal(projected[0], projected[1])).To(BeTrue(), "round %d: the replicas' keys differ", r.round)

	// The reader never wrote the path; the writer made the container, the DC Manager, the key
	// and CryptoPolicy.
	readerOK, readerFailed := r.reader.writes.under(r.path)
	Expect(readerOK).To(BeZero(), "round %d: successful writes by the reader (cluster %s): %s",
		r.round, r.reader.name, r.reader.writes.describe(r.path))
	writerOK, _ := r.writer.writes.under(r.path)
	Expect(writerOK).To(BeNumerically(">=", 4), "round %d: writes by the writer: %s", r.round, r.writer.writes.describe(r.path))
	// Across both clusters, one DC Manager and one key were ever added.
	for _, m := range []string{"CreateManager", "AddKey"} {
		Expect(r.a.writes.count(r.path, m, true)+r.b.writes.count(r.path, m, true)).To(Equal(1), "round %d: successful %s", r.round, m)
	}
	// The reader's whole Pool (every DKMContainer of its cluster) since the release.
	after := r.reader.ops.snapshot()
	before := r.before[r.reader.name]
	poolOK, poolFail := 0, 0
	for _, op := range []string{"add", "modify", "delete"} {
		poolOK += after[op+"/ok"] - before[op+"/ok"]
		for k, v := range after {
			if strings.HasPrefix(k, op+"/") && k != op+"/ok" {
				poolFail += v - before[k]
			}
		}
	}
	Expect(poolOK).To(BeZero(), "round %d: successful add/modify/delete on the reader's Pool (cluster %s)", r.round, r.reader.name)
	return raceRow{
		round: r.round, writer: r.writer.name, reader: r.reader.name, settled: r.settled,
		readerOK: readerOK, readerFailed: readerFailed, writerOK: writerOK,
		readerFailedOps: r.reader.writes.describe(r.path), readerPoolWrites: poolOK, readerPoolFail: poolFail,
		readerFailedAdds: r.reader.writes.count(r.path, "CreateContainer", false),
		trace:            slices.Clone(r.trace),
		readyLag:         r.readyLags(),
	}
}

func raceTable(rows []raceRow) string {
	var buf bytes.Buffer
	w := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ROUND\tLOOK HELD\tWRITER\tREADER\tBOTH READY AFTER\tREADER WRITES OK\tREADER WRITES FAILED\tREADER POOL ADD/MOD/DEL OK\tREADER POOL FAILED\tWRITER WRITES OK\tREADY LAGGED")
	failedAdds := 0
	var slow []string
	for _, r := range rows {
		held := "-"
		if r.held {
			held = raceHold.String()
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%d\t%d %s\t%d\t%d\t%d\t%s\n", r.round, held, r.writer, r.reader, r.settled.Round(time.Millisecond),
			r.readerOK, r.readerFailed, r.readerFailedOps, r.readerPoolWrites, r.readerPoolFail, r.writerOK, strings.Join(r.readyLag, ", "))
		failedAdds += r.readerFailed
		if r.settled > 2*time.Second {
			slow = append(slow, fmt.Sprintf("round %d:\n  %s", r.round, strings.Join(r.trace, "\n  ")))
		}
	}
	_ = w.Flush()
	fmt.Fprintf(&buf, "readers' failed writes in all: %d in %d rounds\n", failedAdds, len(rows))
	if len(slow) > 0 {
		fmt.Fprintf(&buf, "rounds slower than 2s, as the clusters' statuses changed:\n%s\n", strings.Join(slow, "\n"))
	}
	return buf.String()
}

// secretKeyIn reads the round's replica key Secret in cluster c.
func secretKeyIn(ctx context.Context, c *raceCluster, ns string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	err := c.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: dkmv1.KeySecretName(raceDKM, racePod)}, s)
	return s, err
}

func randomKEK() []byte {
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	return kek
}

// countingFactory hands the reconciler the Pool's Clients, wrapped to log each write with its DN.
func countingFactory(p *directory.Pool, log *writeLog, hold *atomic.Int64) controllers.DirectoryFactory {
	return func(cfg directory.Config) (controllers.Directory, error) {
		c, err := p.Client(cfg)
		if err != nil {
			return nil, err
		}
		return countingDirectory{Client: c, log: log, hold: hold}, nil
	}
}

// countingDirectory is a *directory.Client (every other read, and RetryBind, pass straight
// through) whose writes are logged.
type countingDirectory struct {
	*directory.Client
	log  *writeLog
	hold *atomic.Int64
}

var _ controllers.Directory = countingDirectory{}

// Observe holds back an answer that the container is missing for hold (see raceHold): the
// reconciler's look and its add are then far enough apart for the other cluster's add to land
// in between, as with a slow DC.
func (d countingDirectory) Observe(ctx context.Context, dn string) (*directory.Observation, error) {
	obs, err := d.Client.Observe(ctx, dn)
	if hold := time.Duration(d.hold.Load()); err == nil && !obs.Exists && hold > 0 {
		select {
		case <-time.After(hold):
		case <-ctx.Done():
		}
	}
	return obs, err
}

func (d countingDirectory) CreateContainer(ctx context.Context, dn string, sd *secdesc.SecurityDescriptor, owner directory.Owner) (directory.Object, error) {
	o, err := d.Client.CreateContainer(ctx, dn, sd, owner)
	d.log.add("CreateContainer", dn, err)
	return o, err
}

func (d countingDirectory) SetOwner(ctx context.Context, dn, from string, to directory.Owner) error {
	err := d.Client.SetOwner(ctx, dn, from, to)
	d.log.add("SetOwner", dn, err)
	return err
}

func (d countingDirectory) ReplaceDACL(ctx context.Context, dn string, sd *secdesc.SecurityDescriptor) error {
	err := d.Client.ReplaceDACL(ctx, dn, sd)
	d.log.add("ReplaceDACL", dn, err)
	return err
}

func (d countingDirectory) CreateManager(ctx context.Context, containerDN, managerGUID string, owner directory.Owner) (directory.Object, error) {
	o, err := d.Client.CreateManager(ctx, containerDN, managerGUID, owner)
	d.log.add("CreateManager", containerDN, err)
	return o, err
}

func (d countingDirectory) AddKey(ctx context.Context, managerDN, keyID string, blob []byte, owner directory.Owner) (directory.KeyObject, error) {
	k, err := d.Client.AddKey(ctx, managerDN, keyID, blob, owner)
	d.log.add("AddKey", managerDN, err)
	return k, err
}

func (d countingDirectory) SetActiveKey(ctx context.Context, managerDN, fromID, toID string, owner directory.Owner) error {
	err := d.Client.SetActiveKey(ctx, managerDN, fromID, toID, owner)
	d.log.add("SetActiveKey", managerDN, err)
	return err
}

func (d countingDirectory) ReplaceKeyBlob(ctx context.Context, keyDN string, blob []byte) error {
	err := d.Client.ReplaceKeyBlob(ctx, keyDN, blob)
	d.log.add("ReplaceKeyBlob", keyDN, err)
	return err
}

func (d countingDirectory) DeleteOwned(ctx context.Context, root secdesc.GUID, owner directory.Owner) ([]string, error) {
	left, err := d.Client.DeleteOwned(ctx, root, owner)
	// No DN to attribute it to: logged under the GUID, and never expected in these specs.
	d.log.add("DeleteOwned", "<GUID="+root.String()+">", err)
	return left, err
}

// writeLog records every write a cluster's reconciler asked AD for.
type writeLog struct {
	mu     sync.Mutex
	events []writeEvent
}

type writeEvent struct {
	method, dn string
	result     string // "ok" or the error's directory.Kind
}

func (l *writeLog) add(method, dn string, err error) {
	result := "ok"
	if err != nil {
		result = directory.KindOf(err).String()
	}
	l.mu.Lock()
	l.events = append(l.events, writeEvent{method, dn, result})
	l.mu.Unlock()
}

func (l *writeLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// within lists the events on path or below it, and those that name no DN (DeleteOwned, never
// expected here): counted against every path, so they cannot slip through.
func (l *writeLog) within(path string) []writeEvent {
	suffix := strings.ToLower(path)
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []writeEvent
	for _, e := range l.events {
		dn := strings.ToLower(e.dn)
		if dn == suffix || strings.HasSuffix(dn, ","+suffix) || strings.HasPrefix(dn, "<guid=") {
			out = append(out, e)
		}
	}
	return out
}

// under counts the successful and the failed writes on path.
func (l *writeLog) under(path string) (ok, failed int) {
	for _, e := range l.within(path) {
		if e.result == "ok" {
			ok++
		} else {
			failed++
		}
	}
	return ok, failed
}

func (l *writeLog) count(path, method string, succeeded bool) int {
	n := 0
	for _, e := range l.within(path) {
		if e.method == method && (e.result == "ok") == succeeded {
			n++
		}
	}
	return n
}

// describe summarises the writes on path, e.g. "[CreateContainer:already_exists]".
func (l *writeLog) describe(path string) string {
	var parts []string
	for _, e := range l.within(path) {
		parts = append(parts, e.method+":"+e.result)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// opCounter counts a Pool's LDAP operations by "op/result" (directory.WithObserver).
type opCounter struct {
	mu sync.Mutex
	m  map[string]int
}

func (o *opCounter) observe(op, result string) {
	o.mu.Lock()
	o.m[op+"/"+result]++
	o.mu.Unlock()
}

func (o *opCounter) snapshot() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]int, len(o.m))
	for k, v := range o.m {
		out[k] = v
	}
	return out
}

// AD, read as Administrator.

// adSearchAll runs a subtree search under base; a missing base is no entries.
func adSearchAll(base, filter string, attrs ...string) []*ldap.Entry {
	conn, err := dc.Dial()
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	res, err := conn.Search(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil))
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return nil
	}
	Expect(err).NotTo(HaveOccurred(), "searching %s", base)
	return res.Entries
}

// adManagerDNs lists the DC Manager objects anywhere under path.
func adManagerDNs(path string) []string {
	var dns []string
	for _, e := range adSearchAll(path, "(&(objectClass=container)(cn="+directory.ManagerPrefix+"*))", "cn") {
		dns = append(dns, e.DN)
	}
	sort.Strings(dns)
	return dns
}

// adKeyIDs lists the key contacts (every contact but CryptoPolicy) anywhere under path, by ID.
func adKeyIDs(path string) []string {
	var ids []string
	for _, e := range adSearchAll(path, "(&(objectClass=contact)(!(cn="+directory.PolicyName+")))", "l", "cn") {
		id := e.GetAttributeValue("l")
		if id == "" {
			id = e.GetAttributeValue("cn")
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// adOwnerOf reads the container's ownership record.
func adOwnerOf(path string) directory.Owner {
	conn, err := dc.Dial()
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	res, err := conn.Search(ldap.NewSearchRequest(path, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{directory.OwnerAttribute}, nil))
	Expect(err).NotTo(HaveOccurred())
	Expect(res.Entries).To(HaveLen(1))
	o, err := directory.ParseOwner(res.Entries[0].GetAttributeValue(directory.OwnerAttribute))
	Expect(err).NotTo(HaveOccurred())
	return o
}
