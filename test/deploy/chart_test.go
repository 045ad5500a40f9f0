package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const (
	keepAnnotation = "helm.sh/resource-policy"
	chartImage     = "dkm-operator:0.1.0" // image.repository:appVersion
)

// The chart renders its CRDs and RBAC from copies of the generated files; `make chart-crds`
// refreshes them. A byte-for-byte comparison is the whole contract.
func TestChartCopiesOfGeneratedFiles(t *testing.T) {
	dir := root(t)
	pairs := map[string]string{
		filepath.Join(chartDir, "files", "rbac", "role.yaml"): filepath.Join("config", "rbac", "role.yaml"),
	}
	generated, _ := filepath.Glob(filepath.Join(dir, "config", "crd", "bases", "*.yaml"))
	for _, g := range generated {
		pairs[filepath.Join(chartDir, "files", "crds", filepath.Base(g))] = filepath.Join("config", "crd", "bases", filepath.Base(g))
	}
	copies, _ := filepath.Glob(filepath.Join(dir, chartDir, "files", "crds", "*.yaml"))
	for _, c := range copies {
		if _, ok := pairs[filepath.Join(chartDir, "files", "crds", filepath.Base(c))]; !ok {
			t.Errorf("%s has no counterpart in config/crd/bases: run `make chart-crds`", c)
		}
	}
	for copied, source := range pairs {
		want, err := os.ReadFile(filepath.Join(dir, source))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, copied))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not an exact copy of %s: run `make chart-crds` (%v)", copied, source, err)
		}
	}
}

func TestHelmLint(t *testing.T) {
	for name, flags := range map[string][]string{
		"default":        nil,
		"namespaced":     {"--set", "watchNamespaces={team-a,team-b}"},
		"serviceMonitor": {"--set", "metrics.serviceMonitor.enabled=true"},
		"insecure metrics serviceMonitor": {"--set", "metrics.secure=false", "--set", "metrics.serviceMonitor.enabled=true",
			"--set", "watchNamespaces={team-a}"},
		"single":       {"--set", "replicaCount=1", "--set", "crds.keep=false"},
		"no webhook":   {"--set", "webhook.enabled=false"},
		"cert-manager": {"--set", "webhook.certManagement=external", "--set", "webhook.certManager.enabled=true"},
		"namespaced cert-manager": {"--set", "watchNamespaces={team-a}", "--set", "webhook.certManagement=external",
			"--set", "webhook.certManager.enabled=true", "--set", "webhook.certManager.issuerRef.name=corp-ca",
			"--set", "webhook.certManager.issuerRef.kind=ClusterIssuer"},
	} {
		t.Run(name, func(t *testing.T) {
			mustRun(t, helmEnv(t), helmBin(t), append([]string{"lint", "--strict", chartDir}, flags...)...)
		})
	}
}

func TestHelmDefault(t *testing.T) {
	objs := helmTemplate(t)
	manager := assertManager(t, objs.get("Deployment", operatorNS, "dkm-operator-controller-manager"), chartImage)
	assertBindings(t, objs, manager)
	assertMetricsService(t, objs, manager)
	assertCRDsMatch(t, objs)

	for _, crd := range objs.ofKind("CustomResourceDefinition") {
		if crd.GetAnnotations()[keepAnnotation] != "keep" {
			t.Errorf("CRD %s lacks %s: keep with crds.keep=true", crd.GetName(), keepAnnotation)
		}
	}
	role := typed[rbacv1.ClusterRole](t, objs.get("ClusterRole", "", "dkm-operator-manager-role"))
	assertRules(t, "chart ClusterRole", role.Rules, generatedRules(t))
	objs.one(t, "ClusterRoleBinding")
	assertSecureMetrics(t, objs, manager, "dkm-operator-metrics-reader")
	le := typed[rbacv1.Role](t, objs.get("Role", operatorNS, "dkm-operator-leader-election-role"))
	if !grantsLeases(le.Rules) || grantsSecrets(le.Rules) {
		t.Errorf("leader-election Role rules = %+v, want leases and no Secrets", le.Rules)
	}
	if n := len(objs.ofKind("Role")); n != 1 {
		t.Errorf("cluster-wide mode renders %d Roles, want only the leader-election one", n)
	}

	pdb := typed[policyv1.PodDisruptionBudget](t, objs.one(t, "PodDisruptionBudget"))
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 || pdb.Spec.MaxUnavailable != nil {
		t.Errorf("PDB minAvailable = %v, want 1", pdb.Spec.MinAvailable)
	}
	if pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels, manager) {
		t.Errorf("PDB selector %v does not select the operator pods", pdb.Spec.Selector)
	}
	if !selects(manager.Spec.Selector.MatchLabels, manager) {
		t.Error("the Deployment's selector does not select its own pods")
	}
	if n := len(objs.ofKind("ServiceMonitor")); n != 0 {
		t.Errorf("ServiceMonitor rendered by default (%d); it must be opt-in", n)
	}
	args := manager.Spec.Template.Spec.Containers[0].Args
	for _, want := range []string{"--leader-elect=true", "--metrics-bind-address=:8443", "--metrics-secure=true", "--health-probe-bind-address=:8081",
		"--enable-webhook=true", "--webhook-cert-management=self"} {
		if !slices.Contains(args, want) {
			t.Errorf("args %v lack %s", args, want)
		}
	}
	if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--namespaces") }) {
		t.Errorf("cluster-wide mode passes --namespaces: %v", args)
	}
	// The webhook is on, with the names config/default uses (main.go's defaults).
	mwc := assertWebhook(t, objs, manager, "self", nil)
	names := namesFromArgs(t, manager)
	for flag, got := range map[string]string{
		"webhook-config-name": mwc.Name, "webhook-service-name": names.service, "webhook-secret-name": names.secret,
	} {
		if want := mainFlagDefault(t, flag); got != want {
			t.Errorf("release dkm-operator: %s is %s, main.go's default is %s", flag, got, want)
		}
	}
	assertWebhookRBAC(t, objs, manager, true)
}

func TestHelmCRDs(t *testing.T) {
	for _, tc := range []struct {
		flags      []string
		crds, keep bool
	}{
		{flags: nil, crds: true, keep: true},
		{flags: []string{"--set", "crds.keep=false"}, crds: true, keep: false},
		{flags: []string{"--set", "crds.install=false"}, crds: false},
	} {
		t.Run(strings.Join(tc.flags, " "), func(t *testing.T) {
			crds := helmTemplate(t, tc.flags...).ofKind("CustomResourceDefinition")
			if got := len(crds) > 0; got != tc.crds {
				t.Fatalf("CRDs rendered: %v, want %v", got, tc.crds)
			}
			for _, crd := range crds {
				if _, got := crd.GetAnnotations()[keepAnnotation]; got != tc.keep {
					t.Errorf("CRD %s has %s: %v, want %v", crd.GetName(), keepAnnotation, got, tc.keep)
				}
				if crd.GetAnnotations()["controller-gen.kubebuilder.io/version"] == "" {
					t.Errorf("CRD %s lost its generated annotations", crd.GetName())
				}
			}
		})
	}
}

func TestHelmNamespaced(t *testing.T) {
	objs := helmTemplate(t, "--set", "watchNamespaces={team-a,team-b}")
	// The cluster-wide rights left: the webhook's, the generated admission rules exactly, and
	// the secure metrics endpoint's (TestHelmMetricsModes).
	role := typed[rbacv1.ClusterRole](t, objs.get("ClusterRole", "", "dkm-operator-webhook-role"))
	assertRules(t, "webhook ClusterRole "+role.Name, role.Rules, webhookRules(t))
	if b := objs.get("ClusterRoleBinding", "", "dkm-operator-webhook-rolebinding"); b == nil ||
		typed[rbacv1.ClusterRoleBinding](t, b).RoleRef.Name != role.Name {
		t.Errorf("no ClusterRoleBinding dkm-operator-webhook-rolebinding of %s: %v", role.Name, objs.ofKind("ClusterRoleBinding").names())
	}
	assertNamespacedClusterRoles(t, objs)
	if b := objs.get("ClusterRoleBinding", "", "dkm-operator-cluster-identity-rolebinding"); b == nil ||
		typed[rbacv1.ClusterRoleBinding](t, b).RoleRef.Name != "dkm-operator-cluster-identity-role" {
		t.Errorf("no ClusterRoleBinding of the cluster identity role: %v", objs.ofKind("ClusterRoleBinding").names())
	}
	manager := assertManager(t, objs.get("Deployment", operatorNS, "dkm-operator-controller-manager"), chartImage)
	assertSecureMetrics(t, objs, manager, "dkm-operator-metrics-reader")
	assertWebhook(t, objs, manager, "self", nil)
	assertWebhookRBAC(t, objs, manager, true)
	assertBindings(t, objs, manager)
	if args := manager.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--namespaces=team-a,team-b") {
		t.Errorf("args %v lack --namespaces=team-a,team-b", args)
	}
	for _, ns := range []string{"team-a", "team-b"} {
		u := objs.get("Role", ns, "dkm-operator-manager-role")
		if u == nil {
			t.Errorf("no Role in %s: %v", ns, objs.ofKind("Role").names())
			continue
		}
		role := typed[rbacv1.Role](t, u)
		assertRules(t, "Role "+ns, role.Rules, namespaceRules(t))
		if !grantsSecrets(role.Rules) || grantsLeases(role.Rules) {
			t.Errorf("Role %s: want Secrets and no Leases, got %+v", ns, role.Rules)
		}
		if objs.get("RoleBinding", ns, "dkm-operator-manager-rolebinding") == nil {
			t.Errorf("no RoleBinding in %s", ns)
		}
	}
	// The operator namespace is not watched: of its Secrets, only the webhook certificate's is
	// readable and writable (cert-controller's cache lists and watches them all).
	for _, r := range objs.ofKind("Role") {
		if rules := typed[rbacv1.Role](t, r).Rules; r.GetNamespace() == operatorNS && grantsSecrets(rules) &&
			(r.GetName() != "dkm-operator-webhook-cert-role" || allows(rules, "get", "", "secrets", "any-other-secret") ||
				allows(rules, "create", "", "secrets", "")) {
			t.Errorf("Role %s grants Secrets in the operator namespace beyond the webhook certificate", r.GetName())
		}
	}
}

func TestHelmPodDisruptionBudget(t *testing.T) {
	if n := len(helmTemplate(t, "--set", "replicaCount=1").ofKind("PodDisruptionBudget")); n != 0 {
		t.Errorf("replicaCount=1 renders %d PodDisruptionBudgets, want none (it would block every drain)", n)
	}
	if n := len(helmTemplate(t, "--set", "podDisruptionBudget.enabled=false").ofKind("PodDisruptionBudget")); n != 0 {
		t.Errorf("podDisruptionBudget.enabled=false renders %d PodDisruptionBudgets", n)
	}
	pdb := typed[policyv1.PodDisruptionBudget](t, helmTemplate(t, "--set", "replicaCount=3").one(t, "PodDisruptionBudget"))
	if pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("replicaCount=3: minAvailable = %v, want 1", pdb.Spec.MinAvailable)
	}
}

func TestHelmServiceMonitor(t *testing.T) {
	objs := helmTemplate(t, "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.labels.release=prom")
	if sm := objs.one(t, "ServiceMonitor"); sm.GetLabels()["release"] != "prom" {
		t.Errorf("ServiceMonitor labels %v lack release: prom", sm.GetLabels())
	}
	assertServiceMonitor(t, objs, true)
	assertServiceMonitor(t, helmTemplate(t, "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.secure=false"), false)

	off := helmTemplate(t, "--set", "metrics.enabled=false")
	if n := len(off.metricsServices()) + len(off.ofKind("ServiceMonitor")); n != 0 {
		t.Errorf("metrics.enabled=false renders %d Services/ServiceMonitors", n)
	}
	c := typed[appsv1.Deployment](t, off.one(t, "Deployment")).Spec.Template.Spec.Containers[0]
	if !slices.Contains(c.Args, "--metrics-bind-address=0") {
		t.Errorf("metrics.enabled=false: args %v lack --metrics-bind-address=0", c.Args)
	}
}

func TestHelmPodValues(t *testing.T) {
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(`
image: {repository: mirror/dkm-operator, tag: v9.9.9, pullPolicy: Always}
imagePullSecrets: [{name: pull}]
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: infra, effect: NoSchedule}]
affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: kubernetes.io/hostname}]}}
podAnnotations: {example.com/scrape: "yes"}
podLabels: {team: identity}
priorityClassName: system-cluster-critical
resources: {requests: {cpu: 50m, memory: 100Mi}, limits: {cpu: "1", memory: 1Gi}}
resyncPeriod: 15m
retryPeriod: 30s
maxConcurrentReconciles: 8
changeNotification: false
extraArgs: [--zap-log-level=debug]
serviceAccount: {annotations: {example.com/role: dkm}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	objs := helmTemplate(t, "-f", values)
	d := typed[appsv1.Deployment](t, objs.one(t, "Deployment"))
	pod, c := d.Spec.Template.Spec, d.Spec.Template.Spec.Containers[0]
	checks := map[string]bool{
		"image":              c.Image == "mirror/dkm-operator:v9.9.9" && c.ImagePullPolicy == corev1.PullAlways,
		"imagePullSecrets":   len(pod.ImagePullSecrets) == 1 && pod.ImagePullSecrets[0].Name == "pull",
		"nodeSelector":       pod.NodeSelector["kubernetes.io/os"] == "linux",
		"tolerations":        len(pod.Tolerations) == 1 && pod.Tolerations[0].Value == "infra",
		"affinity":           pod.Affinity != nil && pod.Affinity.PodAntiAffinity != nil,
		"podAnnotations":     d.Spec.Template.Annotations["example.com/scrape"] == "yes",
		"podLabels":          d.Spec.Template.Labels["team"] == "identity",
		"priorityClassName":  pod.PriorityClassName == "system-cluster-critical",
		"resources":          c.Resources.Limits.Memory().String() == "1Gi" && c.Resources.Requests.Cpu().String() == "50m",
		"periods":            slices.Contains(c.Args, "--resync-period=15m") && slices.Contains(c.Args, "--retry-period=30s"),
		"workers":            slices.Contains(c.Args, "--max-concurrent-reconciles=8"),
		"changeNotification": slices.Contains(c.Args, "--change-notification=false"),
		"extraArgs":          slices.Contains(c.Args, "--zap-log-level=debug"),
		"serviceAccount":     objs.one(t, "ServiceAccount").GetAnnotations()["example.com/role"] == "dkm",
	}
	for what, ok := range checks {
		if !ok {
			t.Errorf("%s not applied to the rendered Deployment", what)
		}
	}
}

func TestHelmRejectsBadValues(t *testing.T) {
	for name, tc := range map[string]struct {
		set  []string
		want string
	}{
		"bad cert management":    {[]string{"webhook.certManagement=cert-manager"}, "/webhook/certManagement"},
		"cert-manager with self": {[]string{"webhook.certManager.enabled=true"}, "webhook.certManagement: external"},
		"caBundle with self":     {[]string{"webhook.caBundle=Zm9v"}, "webhook.caBundle"},
		"caBundle not base64":    {[]string{"webhook.certManagement=external", "webhook.caBundle=-----BEGIN"}, "/webhook/caBundle"},
		"issuer without name":    {[]string{"webhook.certManagement=external", "webhook.certManager.enabled=true", "webhook.certManager.issuerRef.kind=ClusterIssuer"}, "/webhook/certManager/issuerRef"},
		"unknown key":            {[]string{"replicas=3"}, "additional properties 'replicas'"},
		"no replicas":            {[]string{"replicaCount=0"}, "/replicaCount"},
		"two leaders":            {[]string{"leaderElection.enabled=false"}, "leaderElection.enabled"},
		"bad pull policy":        {[]string{"image.pullPolicy=Sometimes"}, "/image/pullPolicy"},
		"bad namespace":          {[]string{"watchNamespaces={Team_A}"}, "/watchNamespaces/0"},
		"bad duration":           {[]string{"retryPeriod=soon"}, "/retryPeriod"},
		"metrics on probe port":  {[]string{"metrics.port=8081"}, "/metrics/port"},
		"monitor without metric": {[]string{"metrics.enabled=false", "metrics.serviceMonitor.enabled=true"}, "metrics.enabled"},
	} {
		t.Run(name, func(t *testing.T) {
			args := []string{"template", "x", chartDir}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			_, stderr, err := run(t, helmEnv(t), helmBin(t), args...)
			if err == nil {
				t.Fatalf("helm template --set %v succeeded; want it refused", tc.set)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("error does not mention %q:\n%s", tc.want, stderr)
			}
		})
	}
}

// Every value the schema knows is documented in the chart README's table, and every
// documented value exists.
func TestChartREADMEDocumentsEveryValue(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root(t), chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	var leaves []string
	var walk func(prefix string, node map[string]any)
	walk = func(prefix string, node map[string]any) {
		props, ok := node["properties"].(map[string]any)
		if !ok {
			leaves = append(leaves, prefix)
			return
		}
		for k, v := range props {
			if prefix == "" && k == "global" {
				continue
			}
			walk(strings.TrimPrefix(prefix+"."+k, "."), v.(map[string]any))
		}
	}
	walk("", schema)
	sort.Strings(leaves)

	readme, err := os.ReadFile(filepath.Join(root(t), chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Za-z.]+)` \\|").FindAllStringSubmatch(string(readme), -1) {
		documented[m[1]] = true
	}
	for _, leaf := range leaves {
		if !documented[leaf] {
			t.Errorf("value %s is not documented in %s/README.md", leaf, chartDir)
		}
		delete(documented, leaf)
	}
	for key := range documented {
		t.Errorf("README documents %s, which values.schema.json does not know", key)
	}
}

// helmTemplateAs renders the chart as another release in another namespace.
func helmTemplateAs(t testing.TB, release, namespace string, flags ...string) objects {
	t.Helper()
	args := append([]string{"template", release, chartDir, "--namespace", namespace}, flags...)
	return decode(t, mustRun(t, helmEnv(t), helmBin(t), args...))
}

// Every webhook mode renders a consistent set: names the operator is told, RBAC for its own
// objects only, and the right source of certificate and CA bundle.
func TestHelmWebhookModes(t *testing.T) {
	t.Run("another release and namespace", func(t *testing.T) {
		for _, mode := range [][]string{nil, {"--set", "watchNamespaces={team-a}"}} {
			objs := helmTemplateAs(t, "dkm", "ops", mode...)
			u := objs.get("Deployment", "ops", "dkm-dkm-operator-controller-manager")
			if u == nil {
				t.Fatalf("no Deployment dkm-dkm-operator-controller-manager in ops: %v", objs.names())
			}
			manager := assertManager(t, u, chartImage)
			mwc := assertWebhook(t, objs, manager, "self", nil)
			if mwc.Name != "dkm-dkm-operator-mutating-webhook-configuration" {
				t.Errorf("webhook configuration %s, want it named after the release", mwc.Name)
			}
			// The generated rules name config/default's configuration; the chart names its own.
			assertWebhookRBAC(t, objs, manager, true)
			if allows(boundRules(t, objs, manager, ""), "update", admissionGroup, webhookConfigs, mainFlagDefault(t, "webhook-config-name")) {
				t.Errorf("%v: the release dkm may update config/default's webhook configuration", mode)
			}
		}
	})

	t.Run("cert-manager", func(t *testing.T) {
		objs := helmTemplateAs(t, "dkm", "ops", "--set", "webhook.certManagement=external", "--set", "webhook.certManager.enabled=true")
		manager := assertManager(t, objs.one(t, "Deployment"), chartImage)
		mwc := assertWebhook(t, objs, manager, "external", nil)
		assertWebhookRBAC(t, objs, manager, false)
		names := namesFromArgs(t, manager)
		cert := objs.one(t, "Certificate")
		if got := mwc.Annotations["cert-manager.io/inject-ca-from"]; got != "ops/"+cert.GetName() {
			t.Errorf("inject-ca-from = %q, want ops/%s", got, cert.GetName())
		}
		secretName, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
		dnsNames, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
		if secretName != names.secret || !slices.Contains(dnsNames, names.service+".ops.svc") {
			t.Errorf("Certificate writes %s for %v; want %s for %s.ops.svc", secretName, dnsNames, names.secret, names.service)
		}
		issuer, _, _ := unstructured.NestedStringMap(cert.Object, "spec", "issuerRef")
		if objs.get("Issuer", "ops", issuer["name"]) == nil || issuer["kind"] != "Issuer" {
			t.Errorf("Certificate issuerRef %v is not the rendered Issuer", issuer)
		}
		if slices.ContainsFunc(manager.Spec.Template.Spec.Containers[0].Env, func(e corev1.EnvVar) bool { return e.Name == "POD_NAMESPACE" }) {
			t.Error("external certificates, yet POD_NAMESPACE is set")
		}

		own := helmTemplateAs(t, "dkm", "ops", "--set", "webhook.certManagement=external", "--set", "webhook.certManager.enabled=true",
			"--set", "webhook.certManager.issuerRef.name=corp-ca", "--set", "webhook.certManager.issuerRef.kind=ClusterIssuer")
		if n := len(own.ofKind("Issuer")); n != 0 {
			t.Errorf("issuerRef set, yet %d Issuers rendered", n)
		}
		issuer, _, _ = unstructured.NestedStringMap(own.one(t, "Certificate").Object, "spec", "issuerRef")
		if issuer["name"] != "corp-ca" || issuer["kind"] != "ClusterIssuer" {
			t.Errorf("Certificate issuerRef = %v, want ClusterIssuer corp-ca", issuer)
		}
	})

	t.Run("external by hand", func(t *testing.T) {
		const bundle = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="
		objs := helmTemplate(t, "--set", "webhook.certManagement=external", "--set", "webhook.caBundle="+bundle)
		manager := assertManager(t, objs.one(t, "Deployment"), chartImage)
		want := []byte("-----BEGIN CERTIFICATE-----\n")
		mwc := assertWebhook(t, objs, manager, "external", want)
		if _, ok := mwc.Annotations["cert-manager.io/inject-ca-from"]; ok || len(objs.ofKind("Certificate")) != 0 {
			t.Error("no cert-manager, yet its Certificate or annotation is rendered")
		}
		assertWebhookRBAC(t, objs, manager, false)
	})

	t.Run("disabled", func(t *testing.T) {
		for _, mode := range [][]string{nil, {"--set", "watchNamespaces={team-a}"}} {
			objs := helmTemplate(t, append([]string{"--set", "webhook.enabled=false"}, mode...)...)
			for _, kind := range []string{"MutatingWebhookConfiguration", "Secret", "Certificate"} {
				if n := len(objs.ofKind(kind)); n != 0 {
					t.Errorf("%v webhook disabled, yet %d %s rendered", mode, n, kind)
				}
			}
			if n := len(objs.ofKind("Service")) - len(objs.metricsServices()); n != 0 {
				t.Errorf("%v webhook disabled, yet the webhook Service is rendered", mode)
			}
			manager := assertManager(t, objs.one(t, "Deployment"), chartImage)
			c := manager.Spec.Template.Spec.Containers[0]
			if flagValue(t, c.Args, "enable-webhook") != "false" || len(c.Env)+len(c.VolumeMounts) != 0 {
				t.Errorf("%v webhook disabled: args %v, env %v, mounts %v", mode, c.Args, c.Env, c.VolumeMounts)
			}
			assertWebhookRBAC(t, objs, manager, false)
			if mode == nil {
				// Cluster-wide: the generated ClusterRole less its admission rules.
				role := typed[rbacv1.ClusterRole](t, objs.get("ClusterRole", "", "dkm-operator-manager-role"))
				want := slices.DeleteFunc(generatedRules(t), func(r rbacv1.PolicyRule) bool { return slices.Contains(r.APIGroups, admissionGroup) })
				assertRules(t, "ClusterRole without the webhook", role.Rules, want)
			} else if u := objs.get("ClusterRole", "", "dkm-operator-webhook-role"); u != nil {
				t.Errorf("namespaced without the webhook renders the webhook's ClusterRole %s", u.GetName())
			}
		}
	})
}
