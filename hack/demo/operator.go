package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/dkm-operator/dkm-operator/internal/testenv"
	"github.com/dkm-operator/dkm-operator/internal/webhook"
)

// operatorUser is the identity the operator runs as; it holds only config/rbac/role.yaml's
// ClusterRole, so the demo also shows the generated RBAC is enough.
const operatorUser = "dkm-operator"

// operatorProcess is the running bin/manager.
type operatorProcess struct {
	cmd         *exec.Cmd
	process     *testenv.Process
	metricsURL  string
	readyURL    string
	webhookURL  string
	webhookCA   []byte
	logFile     string
	kubeconfig  string
	webhookPort int
}

// startOperator runs the operator binary (bin/manager, built by `make demo`) as operatorUser
// with its webhook on loopback, and registers the webhook with the apiserver.
func (d *demo) startOperator(ctx context.Context, env *environment) error {
	d.section("The operator")
	if err := grantOperatorRole(ctx, env); err != nil {
		return err
	}
	op, err := prepareOperator(env)
	if err != nil {
		return err
	}
	d.operatorLog = op.logFile
	start := time.Now()
	if err := op.start(); err != nil {
		return err
	}
	d.onShutdown("operator", op.stop)
	env.operator = op
	if err := op.waitReady(ctx); err != nil {
		return err
	}
	d.printf("bin/manager running as user %q with the ClusterRole of config/rbac/role.yaml, ready in %s.\n",
		operatorUser, time.Since(start).Round(10*time.Millisecond))
	if err := registerWebhook(ctx, env, op); err != nil {
		return err
	}
	d.printf("Pod injection webhook (failurePolicy Fail, namespaces labelled %s=enabled) at %s.\n",
		webhook.InjectionLabel, op.webhookURL)
	return nil
}

// grantOperatorRole creates config/rbac/role.yaml's ClusterRole and binds it to operatorUser.
func grantOperatorRole(ctx context.Context, env *environment) error {
	raw, err := os.ReadFile(filepath.Join(env.root, "config", "rbac", "role.yaml"))
	if err != nil {
		return err
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(raw, role); err != nil {
		return fmt.Errorf("config/rbac/role.yaml: %w", err)
	}
	if err := env.client.Create(ctx, role); err != nil {
		return fmt.Errorf("creating ClusterRole %s: %w", role.Name, err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: operatorUser}},
	}
	if err := env.client.Create(ctx, binding); err != nil {
		return fmt.Errorf("creating ClusterRoleBinding %s: %w", binding.Name, err)
	}
	return nil
}

// prepareOperator writes the operator's kubeconfig and webhook certificate and picks its ports.
func prepareOperator(env *environment) (*operatorProcess, error) {
	user, err := env.kube.AddUser(envtest.User{Name: operatorUser}, nil)
	if err != nil {
		return nil, fmt.Errorf("creating the operator's kubeconfig: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	op := &operatorProcess{
		logFile:    filepath.Join(env.work, "operator.log"),
		kubeconfig: filepath.Join(env.work, "operator.kubeconfig"),
	}
	if err := os.WriteFile(op.kubeconfig, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	ca, err := testenv.NewCA("dkm-operator demo webhook CA")
	if err != nil {
		return nil, err
	}
	cert, key, err := ca.Issue("dkm-operator-webhook", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		return nil, err
	}
	certDir := filepath.Join(env.work, "webhook-certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.crt"), cert, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.key"), key, 0o600); err != nil {
		return nil, err
	}
	op.webhookCA = ca.CertPEM
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	op.metricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[0])
	op.readyURL = fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])
	op.webhookPort = ports[2]
	op.webhookURL = fmt.Sprintf("https://127.0.0.1:%d%s", ports[2], webhook.Path)
	op.cmd = exec.Command(filepath.Join(env.root, "bin", "manager"),
		"--kubeconfig="+op.kubeconfig,
		"--leader-elect=false",
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[0]),
		// Plain HTTP on loopback, so the demo can show the metrics with a bare GET; the shipped
		// manifests keep the default, HTTPS for authenticated and authorized scrapers only.
		"--metrics-secure=false",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[1]),
		"--webhook-host=127.0.0.1",
		"--webhook-port="+strconv.Itoa(ports[2]),
		"--webhook-cert-dir="+certDir,
		// The apiserver calls the webhook by URL here (there is no Service routing without a
		// cluster network), so the demo brings its own certificate for 127.0.0.1.
		"--webhook-cert-management=external",
	)
	return op, nil
}

// start runs the operator, killed with the demo even if the demo itself is killed.
func (op *operatorProcess) start() error {
	p, err := testenv.StartProcess(op.cmd, op.logFile, false)
	if err != nil {
		return fmt.Errorf("starting bin/manager (run `make build` first): %w", err)
	}
	op.process = p
	return nil
}

// waitReady waits for the operator's readiness probe.
func (op *operatorProcess) waitReady(ctx context.Context) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		if op.process.Exited() {
			return false, fmt.Errorf("bin/manager exited: %v", op.process.Err())
		}
		resp, err := http.Get(op.readyURL)
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, nil
		}
		// The webhook server starts with the manager; the apiserver must find it listening.
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", op.webhookPort), time.Second)
		if err != nil {
			return false, nil
		}
		_ = conn.Close()
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the operator to be ready: %w", err)
	}
	return nil
}

// stop asks the operator to shut down (SIGTERM) and kills it if it does not within 15 s.
func (op *operatorProcess) stop() error { return op.process.Stop(15 * time.Second) }

// registerWebhook creates config/webhook's MutatingWebhookConfiguration with its namespace
// selector, pointed at the operator's loopback URL.
func registerWebhook(ctx context.Context, env *environment, op *operatorProcess) error {
	raw, err := os.ReadFile(filepath.Join(env.root, "config", "webhook", "manifests.yaml"))
	if err != nil {
		return err
	}
	cfg := &admissionv1.MutatingWebhookConfiguration{}
	if err := yaml.Unmarshal(bytes.TrimPrefix(raw, []byte("---\n")), cfg); err != nil {
		return fmt.Errorf("config/webhook/manifests.yaml: %w", err)
	}
	cfg.Name = "dkm-operator-mutating-webhook-configuration"
	for i := range cfg.Webhooks {
		url := op.webhookURL
		cfg.Webhooks[i].ClientConfig = admissionv1.WebhookClientConfig{URL: &url, CABundle: op.webhookCA}
		cfg.Webhooks[i].NamespaceSelector = webhook.NamespaceSelector()
	}
	if err := env.client.Create(ctx, cfg); err != nil {
		return fmt.Errorf("creating MutatingWebhookConfiguration: %w", err)
	}
	return nil
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
