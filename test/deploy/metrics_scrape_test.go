//go:build linux

package deploy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestSecureMetrics runs the real operator binary as the installed Deployment says (with
// --metrics-secure as the shipped manifests leave it) against a real kube-apiserver, with the
// RBAC the manifests grant its ServiceAccount, and scrapes its metrics endpoint as Prometheus
// would, with ServiceAccount tokens from the TokenRequest API:
//   - without a token: 401 (with a token that is none: refused too);
//   - with the token of a ServiceAccount that lacks the metrics-reader ClusterRole: 403;
//   - with the token of one bound to the installed metrics-reader: 200 and the metrics;
//   - plain HTTP: no metrics.
//
// The 200 needs the operator's own rights to create TokenReviews and SubjectAccessReviews, from
// the generated ClusterRole (Helm, cluster-wide) or from namespaced mode's metrics ClusterRole
// (kustomize): without them the endpoint answers 500. The operator listens on 127.0.0.1 only.
func TestSecureMetrics(t *testing.T) {
	manager := buildOperator(t)
	t.Run("kustomize namespaced", func(t *testing.T) {
		t.Parallel()
		k := startKubeWithNamespacedInstall(t)
		checkSecureMetrics(t, k, manager, operatorNS, "dkm-operator-controller-manager", "dkm-operator-metrics-reader")
	})
	t.Run("helm cluster-wide, another release name", func(t *testing.T) {
		t.Parallel()
		k := startKubeWithEgress(t)
		createNamespaces(t, k.c, "vmm")
		helmOn(t, k.env)("install", "dkm", chartDir, "--namespace", "ops", "--create-namespace", "--timeout", "2m")
		checkSecureMetrics(t, k, manager, "ops", "dkm-dkm-operator-controller-manager", "dkm-dkm-operator-metrics-reader")
	})
}

// checkSecureMetrics runs the operator of the installed Deployment and scrapes it.
func checkSecureMetrics(t *testing.T, k *kubeWithEgress, binary, namespace, deployment, readerRole string) {
	ctx := t.Context()
	c := k.c
	d := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: deployment}, d); err != nil {
		t.Fatal(err)
	}
	args := d.Spec.Template.Spec.Containers[0].Args
	if v := flagValue(t, args, "metrics-secure"); v != "true" {
		t.Fatalf("the installed Deployment runs --metrics-secure=%s (args %v)", v, args)
	}
	assertInstalledMetricsService(t, c, d)

	// Two would-be scrapers: one bound to the installed metrics-reader, one not.
	createNamespaces(t, c, "monitoring")
	reader := serviceAccountToken(t, c, "monitoring", "prometheus")
	nosy := serviceAccountToken(t, c, "monitoring", "nosy")
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "prometheus-dkm-metrics"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: readerRole},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "monitoring", Name: "prometheus"}},
	}
	if err := c.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	// The operator caches a denial for 30 s: scrape only once the API server's authorizer knows
	// the binding.
	poll(t, "the binding to "+readerRole+" takes effect", 10*time.Second, func() (bool, error) {
		return mayGetMetrics(ctx, c, "system:serviceaccount:monitoring:prometheus")
	})

	op := startOperator(t, k, binary, d)
	waitListening(t, op.metricsAddr)
	url := "https://" + op.metricsAddr + "/metrics"

	if code, body, err := scrape(t, url, ""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("anonymous scrape: %d %q (%v), want 401", code, firstLine(body), err)
	}
	// A token the API server cannot make sense of fails the TokenReview itself, which
	// controller-runtime's filter answers with 500.
	if code, body, err := scrape(t, url, "not-a-token"); err != nil || (code != http.StatusUnauthorized && code != http.StatusInternalServerError) ||
		hasMetrics(body) {
		t.Errorf("scrape with a bogus token: %d %q (%v), want it refused (401, or 500 for a malformed token)", code, firstLine(body), err)
	}
	if code, body, err := scrape(t, url, nosy); err != nil || code != http.StatusForbidden {
		t.Errorf("scrape as monitoring/nosy (no %s): %d %q (%v), want 403", readerRole, code, firstLine(body), err)
	}
	// The controllers' metrics appear once they start, a moment after the endpoint listens.
	var code int
	var body string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		var serr error
		code, body, serr = scrape(t, url, reader)
		return serr == nil && code == http.StatusOK && hasMetrics(body), nil
	})
	if err != nil {
		t.Errorf("scrape as monitoring/prometheus (bound to %s): %d, want 200 and the metrics; body:\n%s", readerRole, code, firstLines(body, 10))
	}
	if code, body, err := scrape(t, "http://"+op.metricsAddr+"/metrics", ""); err == nil && (code == http.StatusOK || hasMetrics(body)) {
		t.Errorf("anonymous plain HTTP scrape: %d with metrics; the endpoint must speak only HTTPS, to authorized clients", code)
	}

	op.stop(t)
	if logs := op.output(); strings.Contains(logs, "forbidden") {
		t.Errorf("the operator was refused something with the shipped RBAC:\n%s", grepLines(logs, "forbidden"))
	}
}

// assertInstalledMetricsService checks the installed metrics Service reaches the port the
// operator's --metrics-bind-address binds, on 8443 named https.
func assertInstalledMetricsService(t *testing.T, c client.Client, d *appsv1.Deployment) {
	t.Helper()
	svc := &corev1.Service{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: d.Namespace, Name: d.Name + "-metrics-service"}, svc); err != nil {
		t.Fatalf("the installed metrics Service: %v", err)
	}
	container := d.Spec.Template.Spec.Containers[0]
	_, bindPort, err := net.SplitHostPort(flagValue(t, container.Args, "metrics-bind-address"))
	if err != nil {
		t.Fatal(err)
	}
	var target int32
	for _, p := range container.Ports {
		if p.Name == svc.Spec.Ports[0].TargetPort.String() || p.ContainerPort == svc.Spec.Ports[0].TargetPort.IntVal {
			target = p.ContainerPort
		}
	}
	if p := svc.Spec.Ports[0]; len(svc.Spec.Ports) != 1 || p.Name != "https" || p.Port != 8443 || strconv.Itoa(int(target)) != bindPort {
		t.Errorf("metrics Service ports %+v: want one, https 8443, to the container port of --metrics-bind-address (%s)", svc.Spec.Ports, bindPort)
	}
}

// serviceAccountToken creates a ServiceAccount and returns a token for it from the TokenRequest
// API, as a projected ServiceAccount token in a Prometheus pod would be.
func serviceAccountToken(t *testing.T, c client.Client, namespace, name string) string {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if err := c.Create(t.Context(), sa); err != nil {
		t.Fatal(err)
	}
	expiry := int64(600)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}
	if err := c.SubResource("token").Create(t.Context(), sa, req); err != nil {
		t.Fatalf("requesting a token for %s/%s: %v", namespace, name, err)
	}
	if req.Status.Token == "" {
		t.Fatalf("the TokenRequest for %s/%s returned no token", namespace, name)
	}
	return req.Status.Token
}

// mayGetMetrics asks the API server's authorizer whether user may GET /metrics.
func mayGetMetrics(ctx context.Context, c client.Client, user string) (bool, error) {
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:                  user,
		Groups:                []string{"system:serviceaccounts", "system:authenticated"},
		NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: "/metrics", Verb: "get"},
	}}
	if err := c.Create(ctx, sar); err != nil {
		return false, err
	}
	return sar.Status.Allowed, nil
}

// metricsClient scrapes as the shipped ServiceMonitor does: HTTPS without verifying the
// operator's self-signed certificate.
var metricsClient = &http.Client{
	Timeout:   15 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}},
}

// scrape GETs a metrics URL, with a bearer token unless token is empty.
func scrape(t *testing.T, url, token string) (int, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// hasMetrics reports whether a response body is the operator's metrics.
func hasMetrics(body string) bool {
	return strings.Contains(body, "# TYPE controller_runtime_reconcile_total counter")
}

// waitListening waits until the metrics endpoint accepts connections.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		conn, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", addr)
		if last = err; err != nil {
			return false, nil
		}
		_ = conn.Close()
		return true, nil
	})
	if err != nil {
		t.Fatalf("nothing listens on the metrics address %s: %v", addr, last)
	}
}

func firstLine(s string) string { return firstLines(s, 1) }

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
