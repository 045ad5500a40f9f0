package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/controllers"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

// The operators run with short periods so a schedule of a few seconds exercises their loops.
const (
	operatorResync = 2 * time.Second
	operatorRetry  = time.Second
	// opTimeout is the DKMContainers' spec.directory.operationTimeout: an LDAP operation to a DC
	// that stops mid-request fails within it.
	opTimeout = 5 * time.Second
)

// world is what every schedule shares: the domain controllers, two API servers (cluster A and
// cluster B, each its own etcd and kube-apiserver, so its own cluster ID), the operator binary
// and the AD service account the containers grant access to.
type world struct {
	dom      domain
	clusters [2]*cluster
	binary   string
	service  testenv.Principal
	scheme   *runtime.Scheme
	// dirs reads each DC alone, as Administrator.
	dirs []*directory.Client
	pool *directory.Pool
}

// cluster is one API server and how the operator process and the suite reach it.
type cluster struct {
	name       string
	c          client.WithWatch
	kubeconfig string
}

// domain is the domain controllers a schedule acts on: the replicating pair of internal/testenv,
// or a single DC (then replication steps are never drawn).
type domain interface {
	DCs() []*testenv.DC
	Stop(i int) error
	Start(ctx context.Context, i int) error
	// Hold stops replication between the DCs; Release lets it flow again.
	Hold(ctx context.Context) error
	Release(ctx context.Context) error
	// Replicate pulls the domain partition from DC from into DC to, synchronously.
	Replicate(ctx context.Context, from, to int) error
	Close()
}

// singleDC is a domain of one Samba DC.
type singleDC struct{ dc *testenv.DC }

func (s singleDC) DCs() []*testenv.DC                        { return []*testenv.DC{s.dc} }
func (s singleDC) Stop(int) error                            { return s.dc.Stop() }
func (s singleDC) Start(ctx context.Context, _ int) error    { return s.dc.Start(ctx) }
func (s singleDC) Hold(context.Context) error                { return nil }
func (s singleDC) Release(context.Context) error             { return nil }
func (s singleDC) Replicate(context.Context, int, int) error { return nil }
func (s singleDC) Close()                                    { s.dc.Close() }

func startWorld(ctx context.Context, t *testing.T) *world {
	t.Helper()
	w := &world{scheme: runtime.NewScheme()}
	must(t, clientgoscheme.AddToScheme(w.scheme))
	must(t, dkmv1.AddToScheme(w.scheme))

	var wg sync.WaitGroup
	var buildErr error
	wg.Go(func() { w.binary, buildErr = buildOperator(ctx, t.TempDir()) })

	start := time.Now()
	dom, err := startDomain(ctx)
	if err != nil {
		t.Fatalf("starting the domain controllers: %v", err)
	}
	t.Cleanup(dom.Close)
	w.dom = dom
	t.Logf("%d domain controller(s) ready after %s", len(dom.DCs()), time.Since(start).Round(time.Millisecond))

	for i := range w.clusters {
		w.clusters[i] = startCluster(ctx, t, ClusterName(i), w.scheme)
	}
	dc1 := dom.DCs()[0]
	w.service, err = dc1.CreateUser(fmt.Sprintf("svc-chaos-%d", time.Now().UnixNano()%100000), "Svc!Passw0rd-chaos")
	if err != nil {
		t.Fatalf("creating the AD service account: %v", err)
	}
	// The account must be on every DC before a schedule starts: the operator resolves it on
	// whichever DC it uses.
	for to := 1; to < len(dom.DCs()); to++ {
		if err := dom.Replicate(ctx, 0, to); err != nil {
			t.Fatalf("replicating the service account to dc%d: %v", to+1, err)
		}
	}
	w.pool = directory.NewPool()
	t.Cleanup(w.pool.Close)
	for _, dc := range dom.DCs() {
		c, err := w.pool.Client(directory.Config{
			URLs: []string{dc.URL}, Username: dc.AdminUser, Password: dc.AdminPassword, CAPEM: dc.CAPEM,
			DialTimeout: 2 * time.Second, OpTimeout: opTimeout,
		})
		if err != nil {
			t.Fatal(err)
		}
		w.dirs = append(w.dirs, c)
	}
	wg.Wait()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return w
}

// pairDomain is two replicating DCs (testenv.StartPair): DC1 is the PDC emulator.
type pairDomain struct{ p *testenv.Pair }

func (d pairDomain) DCs() []*testenv.DC                     { return []*testenv.DC{d.p.DC1, d.p.DC2} }
func (d pairDomain) Stop(i int) error                       { return d.DCs()[i].Stop() }
func (d pairDomain) Start(ctx context.Context, i int) error { return d.DCs()[i].Start(ctx) }
func (d pairDomain) Close()                                 { d.p.Close() }

func (d pairDomain) Replicate(ctx context.Context, from, to int) error {
	return d.p.Replicate(ctx, d.DCs()[to], d.DCs()[from])
}

// Hold disables inbound replication on both DCs (it survives a restart, as in AD).
func (d pairDomain) Hold(ctx context.Context) error {
	return errors.Join(d.p.HoldReplication(ctx, d.p.DC1), d.p.HoldReplication(ctx, d.p.DC2))
}

func (d pairDomain) Release(ctx context.Context) error {
	return errors.Join(d.p.ReleaseReplication(ctx, d.p.DC1), d.p.ReleaseReplication(ctx, d.p.DC2))
}

// dcsFlag picks the domain: the replicating pair (issue 13's fixture, N = 2) or one DC (no
// replication steps, N = 1).
var dcsFlag = flag.Int("chaos.dcs", envInt("CHAOS_DCS", 2), "domain controllers: 1, or 2 (a replicating pair)")

// startDomain starts the DCs the suite runs on.
func startDomain(ctx context.Context) (domain, error) {
	if *dcsFlag == 1 {
		dc, err := testenv.StartDC(ctx, testenv.DCOptions{})
		if err != nil {
			return nil, err
		}
		return singleDC{dc}, nil
	}
	p, err := testenv.StartPair(ctx, testenv.PairOptions{})
	if err != nil {
		return nil, err
	}
	return pairDomain{p}, nil
}

// startCluster starts an etcd and kube-apiserver with the CRDs and writes an admin kubeconfig
// for the operator process.
func startCluster(ctx context.Context, t *testing.T, name string, scheme *runtime.Scheme) *cluster {
	t.Helper()
	env, err := testenv.NewKube(ctx, filepath.Join("config", "crd", "bases"))
	must(t, err)
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("cluster %s: starting envtest: %v", name, err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c := &cluster{name: name}
	c.c, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	must(t, err)
	c.kubeconfig = writeKubeconfig(t, env, name)
	// The operator reads its cluster ID from kube-system, which a fresh API server creates a
	// moment after it serves.
	if _, err := controllers.ClusterID(ctx, c.c); err != nil {
		t.Fatalf("cluster %s: %v", name, err)
	}
	return c
}

func writeKubeconfig(t *testing.T, env *envtest.Environment, name string) string {
	t.Helper()
	user, err := env.AddUser(envtest.User{Name: "chaos-operator", Groups: []string{"system:masters"}}, nil)
	must(t, err)
	kc, err := user.KubeConfig()
	must(t, err)
	path := filepath.Join(t.TempDir(), "kubeconfig-"+name)
	must(t, os.WriteFile(path, kc, 0o600))
	return path
}

// buildOperator builds ./test/chaos/operator (the operator's controllers wired as main.go wires
// them, with a clock a schedule can move): a crash is a SIGKILL of a process.
func buildOperator(ctx context.Context, dir string) (string, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "operator")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "./test/chaos/operator")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build of the operator: %v\n%s", err, out)
	}
	return path, nil
}

// operator is one run of the operator binary against one cluster.
type operator struct {
	proc *testenv.Process
	log  string
}

// startOperator runs the operator binary for cluster c, logging to logPath, its clock ahead by
// what clockFile says. No leader election: a restarted operator acts at once, as a new pod would
// after the old one's lease expired.
func (w *world) startOperator(c *cluster, logPath, clockFile string) (*operator, error) {
	cmd := exec.Command(w.binary,
		"--resync-period="+operatorResync.String(), "--retry-period="+operatorRetry.String(),
		"--clock-offset-file="+clockFile, "--zap-devel=false")
	cmd.Env = []string{"KUBECONFIG=" + c.kubeconfig, "HOME=" + filepath.Dir(logPath), "PATH=" + os.Getenv("PATH")}
	p, err := testenv.StartProcess(cmd, logPath, false)
	if err != nil {
		return nil, fmt.Errorf("starting the operator of cluster %s: %w", c.name, err)
	}
	return &operator{proc: p, log: logPath}, nil
}

// tail returns the last n lines of the operator's log.
func (o *operator) tail(n int) string {
	b, err := os.ReadFile(o.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
