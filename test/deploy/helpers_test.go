package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

const chartDir = "charts/dkm-operator"

// root is the repository root; every path in these tests is relative to it.
func root(t testing.TB) string {
	t.Helper()
	dir, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// pinned reads one version from hack/versions.env.
func pinned(t testing.TB, key string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root(t), "hack", "versions.env"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && k == key {
			return strings.Trim(v, `"' `)
		}
	}
	t.Fatalf("%s is not set in hack/versions.env", key)
	return ""
}

var (
	installTools    sync.Once
	installToolsErr error
)

// tool returns bin/tools/<name>-<version>, running `make tools` once if it is missing.
func tool(t testing.TB, name, versionKey string) string {
	t.Helper()
	dir := root(t)
	path := filepath.Join(dir, "bin", "tools", name+"-"+pinned(t, versionKey))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	installTools.Do(func() {
		t.Logf("%s is missing: running `make tools` (a cold helm build takes a few minutes)", path)
		cmd := exec.Command("make", "--no-print-directory", "tools")
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		installToolsErr = cmd.Run()
	})
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is missing and `make tools` did not provide it (%v); run `make tools` in %s", path, installToolsErr, dir)
	}
	return path
}

func kustomizeBin(t testing.TB) string { return tool(t, "kustomize", "KUSTOMIZE_VERSION") }
func helmBin(t testing.TB) string      { return tool(t, "helm", "HELM_VERSION") }

// run runs a command in the repository root and returns its stdout and stderr.
func run(t testing.TB, env []string, bin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = root(t)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// mustRun is run that fails the test on error, showing stderr.
func mustRun(t testing.TB, env []string, bin string, args ...string) string {
	t.Helper()
	out, errOut, err := run(t, env, bin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, errOut)
	}
	return out
}

// helmEnv keeps helm's cache, config and data out of the user's home.
func helmEnv(t testing.TB) []string {
	dir := t.TempDir()
	return []string{
		"HELM_CACHE_HOME=" + filepath.Join(dir, "cache"),
		"HELM_CONFIG_HOME=" + filepath.Join(dir, "config"),
		"HELM_DATA_HOME=" + filepath.Join(dir, "data"),
	}
}

// kustomizeBuild renders a kustomization directory (relative to the repository root).
func kustomizeBuild(t testing.TB, dir string) objects {
	t.Helper()
	return decode(t, mustRun(t, nil, kustomizeBin(t), "build", dir))
}

// helmTemplate renders the chart as release dkm-operator in dkm-system with extra flags.
func helmTemplate(t testing.TB, flags ...string) objects {
	t.Helper()
	args := append([]string{"template", "dkm-operator", chartDir, "--namespace", "dkm-system"}, flags...)
	return decode(t, mustRun(t, helmEnv(t), helmBin(t), args...))
}

// objects is a rendered manifest stream.
type objects []*unstructured.Unstructured

// decode splits a multi-document YAML stream into objects, skipping empty documents.
func decode(t testing.TB, stream string) objects {
	t.Helper()
	var out objects
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(stream)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading YAML stream: %v", err)
		}
		js, err := utilyaml.ToJSON(doc)
		if err != nil {
			t.Fatalf("YAML document: %v\n%s", err, doc)
		}
		if s := strings.TrimSpace(string(js)); s == "null" || s == "" || s == "{}" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			t.Fatalf("decoding object: %v\n%s", err, doc)
		}
		out = append(out, u)
	}
}

// readObjects decodes a YAML file (relative to the repository root).
func readObjects(t testing.TB, path string) objects {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root(t), path))
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, string(data))
}

// ofKind returns the objects of a kind, in order.
func (o objects) ofKind(kind string) objects {
	var out objects
	for _, u := range o {
		if u.GetKind() == kind {
			out = append(out, u)
		}
	}
	return out
}

// get returns the object of a kind, namespace and name, or nil.
func (o objects) get(kind, namespace, name string) *unstructured.Unstructured {
	for _, u := range o {
		if u.GetKind() == kind && u.GetNamespace() == namespace && u.GetName() == name {
			return u
		}
	}
	return nil
}

// one returns the single object of a kind, failing otherwise.
func (o objects) one(t testing.TB, kind string) *unstructured.Unstructured {
	t.Helper()
	all := o.ofKind(kind)
	if len(all) != 1 {
		t.Fatalf("want exactly one %s, got %d: %v", kind, len(all), all.names())
	}
	return all[0]
}

func (o objects) names() []string {
	var out []string
	for _, u := range o {
		out = append(out, u.GetKind()+" "+u.GetNamespace()+"/"+u.GetName())
	}
	return out
}

// typed converts an object to its Go type.
func typed[T any](t testing.TB, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatalf("converting %s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}

// generatedRules are the rules of the ClusterRole `make manifests` generates.
func generatedRules(t testing.TB) []rbacv1.PolicyRule {
	t.Helper()
	return typed[rbacv1.ClusterRole](t, readObjects(t, "config/rbac/role.yaml").one(t, "ClusterRole")).Rules
}

// namespaceRules are what a watched namespace needs: the generated rules less the Lease rule
// (leader election has its own Role) and less the rules on cluster-scoped objects, which a Role
// cannot grant: admission objects, TokenReviews and SubjectAccessReviews, and the kube-system
// namespace (the cluster's identity).
func namespaceRules(t testing.TB) []rbacv1.PolicyRule {
	t.Helper()
	return slices.DeleteFunc(generatedRules(t), func(r rbacv1.PolicyRule) bool {
		return slices.Contains(r.APIGroups, "coordination.k8s.io") || slices.Contains(r.APIGroups, "admissionregistration.k8s.io") ||
			isMetricsAuthRule(r) || isClusterIdentityRule(r)
	})
}

// isClusterIdentityRule: get on the kube-system namespace, whose UID names this cluster in the
// ownership records the operator writes to AD.
func isClusterIdentityRule(r rbacv1.PolicyRule) bool {
	return slices.Contains(r.APIGroups, "") && slices.Contains(r.Resources, "namespaces")
}

// assertNamespacedClusterRoles: in namespaced mode the cluster-wide rights left are the
// webhook's, the secure metrics endpoint's and the cluster identity's, the last in a ClusterRole
// of its own holding exactly the generated rule.
func assertNamespacedClusterRoles(t *testing.T, objs objects) {
	t.Helper()
	for _, u := range objs.ofKind("ClusterRole") {
		for _, r := range typed[rbacv1.ClusterRole](t, u).Rules {
			if !slices.Equal(r.APIGroups, []string{admissionGroup}) && !isMetricsAuthRule(r) && !allowsURL([]rbacv1.PolicyRule{r}, "get", "/metrics") &&
				!isClusterIdentityRule(r) {
				t.Errorf("namespaced mode: ClusterRole %s grants %v beyond the webhook's, the metrics endpoint's and the cluster identity's rules", u.GetName(), r)
			}
		}
	}
	identity := objs.get("ClusterRole", "", "dkm-operator-cluster-identity-role")
	if identity == nil {
		t.Fatalf("namespaced mode: no ClusterRole dkm-operator-cluster-identity-role: %v", objs.ofKind("ClusterRole").names())
	}
	assertRules(t, "ClusterRole dkm-operator-cluster-identity-role", typed[rbacv1.ClusterRole](t, identity).Rules, clusterIdentityRules(t))
}

// clusterIdentityRules are the generated rules for the cluster's identity: what namespaced mode
// must still grant cluster-wide.
func clusterIdentityRules(t testing.TB) []rbacv1.PolicyRule {
	t.Helper()
	return slices.DeleteFunc(generatedRules(t), func(r rbacv1.PolicyRule) bool { return !isClusterIdentityRule(r) })
}

func assertRules(t testing.TB, what string, got, want []rbacv1.PolicyRule) {
	t.Helper()
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("%s rules differ from config/rbac/role.yaml (run `make chart-crds`, and update "+
			"config/namespaced/watched/role.yaml by hand):\n got: %+v\nwant: %+v", what, got, want)
	}
}

// webhookRules are the generated rules on admission objects: what self-managed webhook
// certificates need cluster-wide.
func webhookRules(t testing.TB) []rbacv1.PolicyRule {
	t.Helper()
	return slices.DeleteFunc(generatedRules(t), func(r rbacv1.PolicyRule) bool {
		return !slices.Contains(r.APIGroups, "admissionregistration.k8s.io")
	})
}

// grantsSecrets reports whether any rule reaches core Secrets.
func grantsSecrets(rules []rbacv1.PolicyRule) bool {
	for _, r := range rules {
		if (slices.Contains(r.APIGroups, "") || slices.Contains(r.APIGroups, "*")) &&
			(slices.Contains(r.Resources, "secrets") || slices.Contains(r.Resources, "*")) {
			return true
		}
	}
	return false
}

// generatedCRDs are the CRDs under config/crd/bases.
func generatedCRDs(t testing.TB) objects {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(root(t), "config", "crd", "bases", "*.yaml"))
	if err != nil || len(matches) == 0 {
		t.Fatalf("no CRDs in config/crd/bases (%v)", err)
	}
	var out objects
	for _, m := range matches {
		rel, _ := filepath.Rel(root(t), m)
		out = append(out, readObjects(t, rel)...)
	}
	return out
}

// assertCRDsMatch checks that the rendered CRDs are exactly the generated ones (spec-wise).
func assertCRDsMatch(t testing.TB, rendered objects) {
	t.Helper()
	want := generatedCRDs(t)
	got := rendered.ofKind("CustomResourceDefinition")
	if len(got) != len(want) {
		t.Fatalf("rendered %d CRDs, config/crd/bases holds %d", len(got), len(want))
	}
	for _, w := range want {
		g := rendered.get("CustomResourceDefinition", "", w.GetName())
		if g == nil {
			t.Errorf("CRD %s is not rendered", w.GetName())
			continue
		}
		if !equality.Semantic.DeepEqual(g.Object["spec"], w.Object["spec"]) {
			t.Errorf("rendered CRD %s differs from config/crd/bases", w.GetName())
		}
	}
}

// assertManager checks what both install paths promise about the operator's Deployment.
func assertManager(t testing.TB, u *unstructured.Unstructured, wantImage string) *appsv1.Deployment {
	t.Helper()
	d := typed[appsv1.Deployment](t, u)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 || pod.Containers[0].Name != "manager" {
		t.Fatalf("want one container named manager, got %+v", pod.Containers)
	}
	c := pod.Containers[0]
	if c.Image != wantImage {
		t.Errorf("image = %q, want %q", c.Image, wantImage)
	}
	if !slices.ContainsFunc(c.Args, func(a string) bool { return a == "--leader-elect" || a == "--leader-elect=true" }) {
		t.Errorf("args %v lack --leader-elect", c.Args)
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("pod securityContext = %+v, want runAsNonRoot, runAsUser 65532, seccomp RuntimeDefault", psc)
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("the manager container has no securityContext")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("container securityContext: runAsNonRoot is not true")
	case sc.RunAsUser == nil || *sc.RunAsUser != 65532:
		t.Errorf("container securityContext: runAsUser = %v, want 65532", sc.RunAsUser)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("container securityContext: readOnlyRootFilesystem is not true")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("container securityContext: allowPrivilegeEscalation is not false")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("container securityContext: capabilities = %+v, want drop [ALL]", sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != "RuntimeDefault":
		t.Error("container securityContext: seccompProfile is not RuntimeDefault")
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["health"] != 8081 || ports["metrics"] != 8443 {
		t.Errorf("container ports = %v, want health 8081 and metrics 8443", ports)
	}
	for probe, want := range map[string]string{"liveness": "/healthz", "readiness": "/readyz"} {
		p := c.LivenessProbe
		if probe == "readiness" {
			p = c.ReadinessProbe
		}
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "health" {
			t.Errorf("%s probe = %+v, want GET %s on port health (8081)", probe, p, want)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() ||
		c.Resources.Limits.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources = %+v, want cpu and memory requests and limits", c.Resources)
	}
	return d
}

// assertBindings checks that every binding points at a role and ServiceAccount rendered with
// it, and that the operator's pods run as that ServiceAccount.
func assertBindings(t testing.TB, objs objects, manager *appsv1.Deployment) {
	t.Helper()
	bindings := append(objs.ofKind("RoleBinding"), objs.ofKind("ClusterRoleBinding")...)
	if len(bindings) == 0 {
		t.Fatal("no bindings rendered")
	}
	for _, u := range bindings {
		b := typed[rbacv1.RoleBinding](t, u) // ClusterRoleBinding has the same shape
		refNS := u.GetNamespace()
		if b.RoleRef.Kind == "ClusterRole" {
			refNS = ""
		}
		if objs.get(b.RoleRef.Kind, refNS, b.RoleRef.Name) == nil {
			t.Errorf("%s %s/%s refers to %s %q, which is not rendered", u.GetKind(), u.GetNamespace(), u.GetName(), b.RoleRef.Kind, b.RoleRef.Name)
		}
		if len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" {
			t.Errorf("%s %s: want one ServiceAccount subject, got %+v", u.GetKind(), u.GetName(), b.Subjects)
			continue
		}
		s := b.Subjects[0]
		if objs.get("ServiceAccount", s.Namespace, s.Name) == nil {
			t.Errorf("%s %s binds ServiceAccount %s/%s, which is not rendered", u.GetKind(), u.GetName(), s.Namespace, s.Name)
		}
		if s.Namespace != manager.Namespace || s.Name != manager.Spec.Template.Spec.ServiceAccountName {
			t.Errorf("%s %s binds %s/%s, but the operator runs as %s/%s", u.GetKind(), u.GetName(),
				s.Namespace, s.Name, manager.Namespace, manager.Spec.Template.Spec.ServiceAccountName)
		}
	}
}

// selects reports whether a selector's labels are all on the operator's pods.
func selects(selector map[string]string, manager *appsv1.Deployment) bool {
	return selectsLabels(selector, manager.Spec.Template.Labels)
}

// selectsLabels reports whether a non-empty selector's labels are all in labels.
func selectsLabels(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// metricsServices are the rendered Services named *-metrics-service.
func (o objects) metricsServices() objects {
	var out objects
	for _, u := range o.ofKind("Service") {
		if strings.HasSuffix(u.GetName(), "-metrics-service") {
			out = append(out, u)
		}
	}
	return out
}

// assertMetricsService checks the metrics Service reaches the operator's metrics port: 8443,
// named https as kubebuilder's scaffold does (the endpoint is secure by default).
func assertMetricsService(t testing.TB, objs objects, manager *appsv1.Deployment) *corev1.Service {
	t.Helper()
	all := objs.metricsServices()
	if len(all) != 1 {
		t.Fatalf("want exactly one metrics Service, got %d: %v", len(all), objs.ofKind("Service").names())
	}
	svc := typed[corev1.Service](t, all[0])
	if !selects(svc.Spec.Selector, manager) {
		t.Errorf("metrics Service selector %v does not select the operator pods %v", svc.Spec.Selector, manager.Spec.Template.Labels)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8443 || svc.Spec.Ports[0].TargetPort.String() != "metrics" ||
		svc.Spec.Ports[0].Name != "https" {
		t.Errorf("metrics Service ports = %+v, want https 8443 -> metrics", svc.Spec.Ports)
	}
	return svc
}
