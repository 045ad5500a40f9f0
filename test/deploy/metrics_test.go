package deploy

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const (
	authnGroup = "authentication.k8s.io"
	authzGroup = "authorization.k8s.io"
	// saTokenPath is where a pod's ServiceAccount token is mounted: what a ServiceMonitor's
	// bearerTokenFile names so that Prometheus scrapes with its own token.
	saTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount/token"
)

// isMetricsAuthRule reports whether a rule is one of the secure metrics endpoint's: creating
// TokenReviews or SubjectAccessReviews.
func isMetricsAuthRule(r rbacv1.PolicyRule) bool {
	return slices.Contains(r.APIGroups, authnGroup) || slices.Contains(r.APIGroups, authzGroup)
}

// metricsAuthRules are the generated rules the secure metrics endpoint needs, both on
// cluster-scoped resources: what namespaced mode must still grant cluster-wide.
func metricsAuthRules(t testing.TB) []rbacv1.PolicyRule {
	t.Helper()
	return slices.DeleteFunc(generatedRules(t), func(r rbacv1.PolicyRule) bool { return !isMetricsAuthRule(r) })
}

// mayReview reports whether rules let the operator check a scraper: create TokenReviews (who is
// it?) and SubjectAccessReviews (may it get /metrics?).
func mayReview(rules []rbacv1.PolicyRule) bool {
	return allows(rules, "create", authnGroup, "tokenreviews", "") && allows(rules, "create", authzGroup, "subjectaccessreviews", "")
}

// allowsURL is allows for non-resource URLs.
func allowsURL(rules []rbacv1.PolicyRule, verb, url string) bool {
	return slices.ContainsFunc(rules, func(r rbacv1.PolicyRule) bool {
		return (slices.Contains(r.Verbs, verb) || slices.Contains(r.Verbs, "*")) &&
			(slices.Contains(r.NonResourceURLs, url) || slices.Contains(r.NonResourceURLs, "*"))
	})
}

// assertSecureMetrics checks what both install paths promise about the metrics endpoint by
// default: the operator runs with --metrics-secure, its bind port is the container port the
// metrics Service targets (8443, named https), its ServiceAccount may create TokenReviews and
// SubjectAccessReviews cluster-wide (whatever the mode: both are cluster-scoped), and the
// ClusterRole reader grants GET /metrics and nothing else, bound to nobody.
func assertSecureMetrics(t testing.TB, objs objects, manager *appsv1.Deployment, reader string) {
	t.Helper()
	c := manager.Spec.Template.Spec.Containers[0]
	if v := flagValue(t, c.Args, "metrics-secure"); v != "true" {
		t.Errorf("args %v: --metrics-secure is %s, want true", c.Args, v)
	}
	_, port, err := net.SplitHostPort(flagValue(t, c.Args, "metrics-bind-address"))
	if err != nil {
		t.Fatalf("--metrics-bind-address: %v", err)
	}
	if i := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "metrics" }); i < 0 ||
		strconv.Itoa(int(c.Ports[i].ContainerPort)) != port {
		t.Errorf("container ports %v: the metrics port is not --metrics-bind-address's %s", c.Ports, port)
	}
	assertMetricsService(t, objs, manager)
	if !mayReview(boundRules(t, objs, manager, "")) {
		t.Error("the operator's ServiceAccount may not create TokenReviews and SubjectAccessReviews cluster-wide: every scrape would fail")
	}
	u := objs.get("ClusterRole", "", reader)
	if u == nil {
		t.Fatalf("no ClusterRole %s: %v", reader, objs.ofKind("ClusterRole").names())
	}
	role := typed[rbacv1.ClusterRole](t, u)
	want := []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}
	assertRules(t, "ClusterRole "+reader, role.Rules, want)
	for _, b := range append(objs.ofKind("ClusterRoleBinding"), objs.ofKind("RoleBinding")...) {
		if ref, _, _ := unstructured.NestedString(b.Object, "roleRef", "name"); ref == reader {
			t.Errorf("%s %s binds %s: it is shipped bound to nobody, for the admin to bind to the scraper", b.GetKind(), b.GetName(), reader)
		}
	}
}

// assertServiceMonitor checks the one ServiceMonitor scrapes the metrics Service, and only it:
// with secure metrics over HTTPS with Prometheus's own ServiceAccount token, skipping the
// verification of the operator's self-signed certificate; otherwise over plain HTTP.
func assertServiceMonitor(t testing.TB, objs objects, secure bool) {
	t.Helper()
	sm := objs.one(t, "ServiceMonitor")
	if sm.GetAPIVersion() != "monitoring.coreos.com/v1" {
		t.Errorf("ServiceMonitor apiVersion %s", sm.GetAPIVersion())
	}
	svc := typed[corev1.Service](t, objs.metricsServices()[0])
	selector, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	if !selectsLabels(selector, svc.Labels) {
		t.Errorf("ServiceMonitor selector %v does not match the metrics Service labels %v", selector, svc.Labels)
	}
	for _, other := range objs.ofKind("Service") {
		if other.GetName() != svc.Name && selectsLabels(selector, other.GetLabels()) {
			t.Errorf("ServiceMonitor selector %v also selects Service %s", selector, other.GetName())
		}
	}
	if names, ok, _ := unstructured.NestedStringSlice(sm.Object, "spec", "namespaceSelector", "matchNames"); ok {
		if !slices.Contains(names, svc.Namespace) {
			t.Errorf("ServiceMonitor namespaceSelector %v misses the metrics Service's namespace %s", names, svc.Namespace)
		}
	} else if sm.GetNamespace() != svc.Namespace {
		t.Errorf("ServiceMonitor in %q looks for Services in its own namespace, the metrics Service is in %s", sm.GetNamespace(), svc.Namespace)
	}

	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints = %v, want one", endpoints)
	}
	e := endpoints[0].(map[string]any)
	if e["port"] != svc.Spec.Ports[0].Name || e["path"] != "/metrics" {
		t.Errorf("ServiceMonitor endpoint port %v path %v, want the metrics Service's port %s and /metrics", e["port"], e["path"], svc.Spec.Ports[0].Name)
	}
	skipVerify, _, _ := unstructured.NestedBool(e, "tlsConfig", "insecureSkipVerify")
	if secure && (e["scheme"] != "https" || e["bearerTokenFile"] != saTokenPath || !skipVerify) {
		t.Errorf("ServiceMonitor endpoint %v: want scheme https, bearerTokenFile %s and tlsConfig.insecureSkipVerify", e, saTokenPath)
	}
	if !secure && (e["scheme"] != "http" || e["bearerTokenFile"] != nil || e["tlsConfig"] != nil) {
		t.Errorf("ServiceMonitor endpoint %v: want plain http and no token", e)
	}
}

// withPrometheus renders config/default with its documented [PROMETHEUS] line uncommented. The
// copy lives in a temporary directory, so paths are rewritten relative to it.
func withPrometheus(t testing.TB) objects {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root(t), "config", "default", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), "\n#- ../prometheus\n") {
		t.Fatalf("config/default/kustomization.yaml no longer has the commented [PROMETHEUS] line:\n%s", src)
	}
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, filepath.Join(root(t), "config"))
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Replace(string(src), "\n#- ../prometheus\n", "\n- ../prometheus\n", 1)
	out = strings.ReplaceAll(out, "../", rel+"/")
	out = strings.ReplaceAll(out, "- path: manager_", "- path: "+rel+"/default/manager_")
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	return decode(t, mustRun(t, nil, kustomizeBin(t), "build", "--load-restrictor", "LoadRestrictionsNone", dir))
}

// The metrics endpoint is secure by default in both kustomize installs: HTTPS on 8443 named
// https, the review rights (in namespaced mode in a ClusterRole of their own, exactly the
// generated rules) and an unbound metrics-reader.
func TestKustomizeSecureMetrics(t *testing.T) {
	for _, dir := range []string{"config/default", "config/namespaced"} {
		t.Run(dir, func(t *testing.T) {
			objs := kustomizeBuild(t, dir)
			manager := assertManager(t, objs.get("Deployment", operatorNS, "dkm-operator-controller-manager"), "dkm-operator:latest")
			if slices.ContainsFunc(manager.Spec.Template.Spec.Containers[0].Args, func(a string) bool { return strings.HasPrefix(a, "--metrics-secure") }) {
				t.Errorf("args %v set --metrics-secure; the default (true) is the point", manager.Spec.Template.Spec.Containers[0].Args)
			}
			assertSecureMetrics(t, objs, manager, "dkm-operator-metrics-reader")
			if len(objs.ofKind("ServiceMonitor")) != 0 {
				t.Errorf("%s renders a ServiceMonitor: it would fail on clusters without the Prometheus Operator's CRDs", dir)
			}
			if dir != "config/namespaced" {
				return
			}
			u := objs.get("ClusterRole", "", "dkm-operator-metrics-auth-role")
			if u == nil {
				t.Fatalf("namespaced mode: no ClusterRole dkm-operator-metrics-auth-role: %v", objs.ofKind("ClusterRole").names())
			}
			assertRules(t, "ClusterRole "+u.GetName(), typed[rbacv1.ClusterRole](t, u).Rules, metricsAuthRules(t))
		})
	}
}

// config/prometheus, as config/default documents it, scrapes the metrics Service as the
// endpoint requires.
func TestKustomizePrometheus(t *testing.T) {
	objs := withPrometheus(t)
	assertServiceMonitor(t, objs, true)
	if sm := objs.one(t, "ServiceMonitor"); sm.GetNamespace() != operatorNS || !strings.HasPrefix(sm.GetName(), "dkm-operator-") {
		t.Errorf("ServiceMonitor %s/%s, want it in %s with the dkm-operator- prefix", sm.GetNamespace(), sm.GetName(), operatorNS)
	}
}

// Secure metrics by default in the chart, cluster-wide and namespaced; metrics.secure=false and
// metrics.enabled=false drop the review rights and the reader role with the need for them.
func TestHelmMetricsModes(t *testing.T) {
	t.Run("secure, namespaced", func(t *testing.T) {
		objs := helmTemplateAs(t, "dkm", "ops", "--set", "watchNamespaces={team-a}")
		manager := assertManager(t, objs.one(t, "Deployment"), chartImage)
		assertSecureMetrics(t, objs, manager, "dkm-dkm-operator-metrics-reader")
		u := objs.get("ClusterRole", "", "dkm-dkm-operator-metrics-auth-role")
		if u == nil {
			t.Fatalf("namespaced mode: no ClusterRole dkm-dkm-operator-metrics-auth-role: %v", objs.ofKind("ClusterRole").names())
		}
		assertRules(t, "ClusterRole "+u.GetName(), typed[rbacv1.ClusterRole](t, u).Rules, metricsAuthRules(t))
	})

	for name, flags := range map[string][]string{
		"insecure":             {"--set", "metrics.secure=false"},
		"insecure, namespaced": {"--set", "metrics.secure=false", "--set", "watchNamespaces={team-a}"},
		"disabled":             {"--set", "metrics.enabled=false"},
		"disabled, namespaced": {"--set", "metrics.enabled=false", "--set", "watchNamespaces={team-a}"},
	} {
		t.Run(name, func(t *testing.T) {
			objs := helmTemplate(t, flags...)
			manager := typed[appsv1.Deployment](t, objs.one(t, "Deployment"))
			args := manager.Spec.Template.Spec.Containers[0].Args
			if mayReview(boundRules(t, objs, manager, "")) {
				t.Errorf("%v: the operator may still create TokenReviews and SubjectAccessReviews", flags)
			}
			for _, u := range objs.ofKind("ClusterRole") {
				if allowsURL(typed[rbacv1.ClusterRole](t, u).Rules, "get", "/metrics") {
					t.Errorf("%v: ClusterRole %s grants GET /metrics, which nothing checks", flags, u.GetName())
				}
			}
			if strings.HasPrefix(name, "disabled") {
				if !slices.Contains(args, "--metrics-bind-address=0") || len(objs.metricsServices()) != 0 {
					t.Errorf("metrics.enabled=false: args %v, %d metrics Services", args, len(objs.metricsServices()))
				}
				return
			}
			if !slices.Contains(args, "--metrics-secure=false") {
				t.Errorf("metrics.secure=false: args %v lack --metrics-secure=false", args)
			}
			svc := typed[corev1.Service](t, objs.metricsServices()[0])
			if svc.Spec.Ports[0].Name != "http" {
				t.Errorf("metrics.secure=false: the metrics Service port is named %s, want http", svc.Spec.Ports[0].Name)
			}
		})
	}
}
