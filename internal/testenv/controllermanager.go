package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// GarbageCollectorController is kube-controller-manager's name for the ownerReference garbage
// collector. StartControllerManager always runs it.
const GarbageCollectorController = "garbage-collector-controller"

// controllerManagerReadyTimeout bounds the wait for a first garbage collection: the collector
// discovers every API resource and syncs an informer for each before it acts, which takes a few
// seconds on an idle machine and much longer on a busy one.
const controllerManagerReadyTimeout = 2 * time.Minute

// ControllerManager is a real kube-controller-manager running against an envtest API server.
//
// envtest starts only etcd and kube-apiserver, so nothing there acts on ownerReferences: an
// object whose owner is deleted simply stays. Tests that depend on garbage collection (a key
// Secret owned by a pod must go with the pod) need the real collector, which lives in
// kube-controller-manager. It is built like kube-apiserver by hack/envtest-binaries.sh.
type ControllerManager struct {
	// LogFile is where kube-controller-manager's output goes (removed by Stop).
	LogFile string

	dir      string
	process  *Process
	stopOnce sync.Once
}

// StartControllerManager starts kube-controller-manager against env (which must be started) with
// the garbage collector plus the given controllers (kube-controller-manager's names, e.g.
// "statefulset-controller"). It returns once the garbage collector has collected a throwaway
// ConfigMap, so callers can rely on collection from then on. Call Stop when done; the process is
// also killed if the test process dies.
func StartControllerManager(ctx context.Context, env *envtest.Environment, controllers ...string) (*ControllerManager, error) {
	if env.Config == nil {
		return nil, errors.New("starting kube-controller-manager: the envtest environment is not started")
	}
	assets, err := KubeAssets(ctx, true)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "dkm-kcm-")
	if err != nil {
		return nil, fmt.Errorf("creating kube-controller-manager's directory: %w", err)
	}
	kubeconfig, err := writeControllerManagerKubeconfig(env, dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	cm := &ControllerManager{dir: dir, LogFile: filepath.Join(dir, "kube-controller-manager.log")}
	args := controllerManagerArgs(kubeconfig, controllers)
	if err := cm.start(filepath.Join(assets, "kube-controller-manager"), args); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := cm.waitForGarbageCollection(ctx, env.Config); err != nil {
		err = fmt.Errorf("%w\n--- last lines of %s ---\n%s", err, cm.LogFile, cm.LogTail(40))
		_ = cm.Stop()
		return nil, err
	}
	return cm, nil
}

// writeControllerManagerKubeconfig gives kube-controller-manager its own identity in system:masters
// (envtest's authorizer knows no RBAC bootstrap roles beyond that) and writes its kubeconfig.
func writeControllerManagerKubeconfig(env *envtest.Environment, dir string) (string, error) {
	user, err := env.AddUser(envtest.User{Name: "system:kube-controller-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", fmt.Errorf("adding the kube-controller-manager user to envtest: %w", err)
	}
	data, err := user.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("rendering kube-controller-manager's kubeconfig: %w", err)
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("writing kube-controller-manager's kubeconfig: %w", err)
	}
	return path, nil
}

// controllerManagerArgs runs only the requested controllers, alone (no leader election), with
// no cloud provider and no listening socket at all: --secure-port=0 turns off its HTTPS server,
// so readiness is proved by a garbage collection instead of /healthz, and the loopback-only
// rule holds trivially (--bind-address pins loopback should serving ever be turned on).
func controllerManagerArgs(kubeconfig string, controllers []string) []string {
	list := []string{GarbageCollectorController}
	for _, c := range controllers {
		if !slices.Contains(list, c) {
			list = append(list, c)
		}
	}
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--controllers=" + strings.Join(list, ","),
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--secure-port=0",
		"--bind-address=127.0.0.1",
		// -v=2 makes the garbage collector log each deletion, which is the evidence to read
		// when a test about collection fails.
		"--v=2",
	}
}

// start runs the binary (the pdeathsig wrapper), killed with the calling process.
func (cm *ControllerManager) start(binary string, args []string) error {
	p, err := StartProcess(exec.Command(binary, args...), cm.LogFile, false)
	if err != nil {
		return fmt.Errorf("starting kube-controller-manager (%s): %w", binary, err)
	}
	cm.process = p
	return nil
}

// waitForGarbageCollection creates a ConfigMap owned by another, deletes the owner and waits
// until the collector has deleted the dependent. Only then are the collector's informers for
// every resource synced, which /healthz would not say.
func (cm *ControllerManager) waitForGarbageCollection(ctx context.Context, cfg *rest.Config) error {
	ctx, cancel := context.WithTimeout(ctx, controllerManagerReadyTimeout)
	defer cancel()
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return fmt.Errorf("client for the garbage-collection probe: %w", err)
	}
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "kcm-probe-", Namespace: metav1.NamespaceDefault}}
	if err := c.Create(ctx, owner); err != nil {
		return fmt.Errorf("creating the probe owner ConfigMap: %w", err)
	}
	dependent := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		GenerateName: owner.Name + "-dependent-", Namespace: owner.Namespace,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID}},
	}}
	if err := c.Create(ctx, dependent); err != nil {
		return fmt.Errorf("creating the probe dependent ConfigMap: %w", err)
	}
	if err := c.Delete(ctx, owner); err != nil {
		return fmt.Errorf("deleting the probe owner ConfigMap: %w", err)
	}
	for {
		err := c.Get(ctx, client.ObjectKeyFromObject(dependent), &corev1.ConfigMap{})
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case cm.Exited():
			return fmt.Errorf("kube-controller-manager exited during start-up: %v", cm.process.Err())
		}
		select {
		case <-ctx.Done():
			_ = c.Delete(context.Background(), dependent)
			return fmt.Errorf("kube-controller-manager's garbage collector did not delete the probe ConfigMap %s (owner deleted): %w",
				dependent.Name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Exited reports whether kube-controller-manager has stopped (crashed, or Stop was called).
func (cm *ControllerManager) Exited() bool { return cm.process.Exited() }

// Collected reports whether the garbage collector has logged deleting the object (at --v=2 it
// logs `"Deleting item" item="[v1/Secret, namespace: ns, name: n, uid: ...]"`). It tells the
// collector's deletions apart from anyone else's; group is "" for the core API group.
func (cm *ControllerManager) Collected(group, version, kind, namespace, name string) bool {
	data, err := os.ReadFile(cm.LogFile)
	if err != nil {
		return false
	}
	gv := version
	if group != "" {
		gv = group + "/" + version
	}
	item := fmt.Sprintf(`"Deleting item" item="[%s/%s, namespace: %s, name: %s, uid: `, gv, kind, namespace, name)
	return strings.Contains(string(data), item)
}

// LogTail returns the last n lines of kube-controller-manager's log, for failure messages.
func (cm *ControllerManager) LogTail(n int) string {
	data, err := os.ReadFile(cm.LogFile)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", cm.LogFile, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop sends SIGTERM, then SIGKILL if the process has not gone within 10s, and removes its
// directory. It is safe to call more than once.
func (cm *ControllerManager) Stop() error {
	var err error
	cm.stopOnce.Do(func() {
		if cm.process != nil {
			err = cm.process.Stop(10 * time.Second)
		}
		_ = os.RemoveAll(cm.dir)
	})
	return err
}
