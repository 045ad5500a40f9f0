package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/dkm-operator/dkm-operator/internal/webhook"
)

const (
	admissionGroup = "admissionregistration.k8s.io"
	webhookConfigs = "mutatingwebhookconfigurations"
	// fluxSSA is the annotation that keeps Flux from re-applying the certificate Secret.
	fluxSSA = "kustomize.toolkit.fluxcd.io/ssa"
)

// mainFlagDefault reads the default of one of main.go's flags: the webhook objects must carry
// the names the operator looks for.
func mainFlagDefault(t testing.TB, name string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root(t), "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`flag\.\w+Var\([^,]+,\s*"` + regexp.QuoteMeta(name) + `",\s*("[^"]*"|[0-9]+|true|false)`)
	m := re.FindSubmatch(src)
	if m == nil {
		t.Fatalf("main.go defines no flag --%s with a literal default; update test/deploy if the flag moved", name)
	}
	return strings.Trim(string(m[1]), `"`)
}

// flagValue is the value the operator sees for --name given these args: the last one set, or
// main.go's default.
func flagValue(t testing.TB, args []string, name string) string {
	t.Helper()
	value, set := "", false
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			value, set = v, true
		} else if a == "--"+name {
			value, set = "true", true // a bare boolean flag
		}
	}
	if !set {
		return mainFlagDefault(t, name)
	}
	return value
}

// webhookNames are the names the operator uses for its webhook objects, given its args.
type webhookNames struct{ config, service, secret string }

func namesFromArgs(t testing.TB, manager *appsv1.Deployment) webhookNames {
	t.Helper()
	args := manager.Spec.Template.Spec.Containers[0].Args
	return webhookNames{
		config:  flagValue(t, args, "webhook-config-name"),
		service: flagValue(t, args, "webhook-service-name"),
		secret:  flagValue(t, args, "webhook-secret-name"),
	}
}

// generatedWebhook is the MutatingWebhookConfiguration controller-gen generates.
func generatedWebhook(t testing.TB) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	return typed[admissionregistrationv1.MutatingWebhookConfiguration](t,
		readObjects(t, "config/webhook/manifests.yaml").one(t, "MutatingWebhookConfiguration"))
}

// assertWebhook checks what both install paths promise about the pod webhook: a configuration
// that is the generated one plus the namespace selector, pointing at a Service that reaches the
// operator's webhook port, the names the operator's flags give, the certificate directory
// mounted from the certificate Secret, and (self-managed certificates) POD_NAMESPACE and an
// empty certificate Secret that GitOps tools leave alone.
//
// caBundle is the bundle the configuration must carry: none, unless certificates are external
// and provided by hand.
func assertWebhook(t testing.TB, objs objects, manager *appsv1.Deployment, certManagement string, caBundle []byte) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	c := manager.Spec.Template.Spec.Containers[0]
	ns := manager.Namespace
	if v := flagValue(t, c.Args, "enable-webhook"); v != "true" {
		t.Errorf("args %v: --enable-webhook is %s", c.Args, v)
	}
	if v := flagValue(t, c.Args, "webhook-cert-management"); v != certManagement {
		t.Errorf("args %v: --webhook-cert-management is %s, want %s", c.Args, v, certManagement)
	}
	names := namesFromArgs(t, manager)

	u := objs.get("MutatingWebhookConfiguration", "", names.config)
	if u == nil {
		t.Fatalf("no MutatingWebhookConfiguration %q (the operator's --webhook-config-name): %v", names.config,
			objs.ofKind("MutatingWebhookConfiguration").names())
	}
	mwc := typed[admissionregistrationv1.MutatingWebhookConfiguration](t, u)
	gen := generatedWebhook(t)
	if len(mwc.Webhooks) != len(gen.Webhooks) {
		t.Fatalf("%d webhooks rendered, config/webhook/manifests.yaml has %d", len(mwc.Webhooks), len(gen.Webhooks))
	}
	for i, w := range mwc.Webhooks {
		g := gen.Webhooks[i]
		ref := w.ClientConfig.Service
		if ref == nil || ref.Name != names.service || ref.Namespace != ns || ref.Path == nil || *ref.Path != *g.ClientConfig.Service.Path ||
			(ref.Port != nil && *ref.Port != 443) {
			t.Errorf("webhook %s clientConfig.service = %+v, want %s/%s port 443 at %s", w.Name, ref, ns, names.service, *g.ClientConfig.Service.Path)
		}
		if w.ClientConfig.URL != nil {
			t.Errorf("webhook %s has a clientConfig.url", w.Name)
		}
		if caBundle == nil && len(w.ClientConfig.CABundle) != 0 {
			t.Errorf("webhook %s ships a caBundle: the operator or cert-manager injects it, and GitOps tools would fight over it", w.Name)
		} else if string(w.ClientConfig.CABundle) != string(caBundle) {
			t.Errorf("webhook %s caBundle = %q, want %q", w.Name, w.ClientConfig.CABundle, caBundle)
		}
		if !equality.Semantic.DeepEqual(w.NamespaceSelector, webhook.NamespaceSelector()) {
			t.Errorf("webhook %s namespaceSelector = %v, want %v", w.Name, w.NamespaceSelector, webhook.NamespaceSelector())
		}
		if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Fail ||
			w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNone {
			t.Errorf("webhook %s: failurePolicy %v, sideEffects %v; want Fail and None", w.Name, w.FailurePolicy, w.SideEffects)
		}
		// Everything else is exactly what controller-gen generates from the webhook marker.
		got, want := w.DeepCopy(), g.DeepCopy()
		got.ClientConfig, want.ClientConfig = admissionregistrationv1.WebhookClientConfig{}, admissionregistrationv1.WebhookClientConfig{}
		got.NamespaceSelector, want.NamespaceSelector = nil, nil
		if !equality.Semantic.DeepEqual(got, want) {
			t.Errorf("webhook differs from config/webhook/manifests.yaml:\n got: %+v\nwant: %+v", got, want)
		}
	}

	port, err := strconv.Atoi(flagValue(t, c.Args, "webhook-port"))
	if err != nil {
		t.Fatal(err)
	}
	cport := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == int32(port) })
	if cport < 0 {
		t.Errorf("container ports %v lack the webhook port %d", c.Ports, port)
	}
	su := objs.get("Service", ns, names.service)
	if su == nil {
		t.Fatalf("no Service %s/%s (the operator's --webhook-service-name)", ns, names.service)
	}
	svc := typed[corev1.Service](t, su)
	if !selects(svc.Spec.Selector, manager) {
		t.Errorf("webhook Service selector %v does not select the operator pods %v", svc.Spec.Selector, manager.Spec.Template.Labels)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 443 {
		t.Errorf("webhook Service ports = %+v, want one, 443", svc.Spec.Ports)
	} else if tp := svc.Spec.Ports[0].TargetPort; tp.IntValue() != port && (cport < 0 || tp.String() != c.Ports[cport].Name) {
		t.Errorf("webhook Service targetPort %s does not reach the webhook port %d", tp.String(), port)
	}

	certDir := flagValue(t, c.Args, "webhook-cert-dir")
	mount := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == certDir })
	if mount < 0 {
		t.Fatalf("no volume mounted at %s (the operator's --webhook-cert-dir)", certDir)
	}
	vols := manager.Spec.Template.Spec.Volumes
	vol := slices.IndexFunc(vols, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[mount].Name })
	// The operator writes the certificate into the Secret, never into files: the kubelet puts it
	// into the certificate directory. An emptyDir would stay empty and the webhook never start.
	if vol < 0 || vols[vol].Secret == nil || vols[vol].Secret.SecretName != names.secret ||
		(vols[vol].Secret.Optional != nil && *vols[vol].Secret.Optional) {
		t.Errorf("the certificate directory %s is not the Secret %s mounted (volume %q: %s)", certDir, names.secret,
			c.VolumeMounts[mount].Name, describeVolume(vols, c.VolumeMounts[mount].Name))
	}
	if !c.VolumeMounts[mount].ReadOnly {
		t.Errorf("the certificate directory is mounted read-write")
	}

	secret := objs.get("Secret", ns, names.secret)
	if certManagement != "self" {
		if secret != nil {
			t.Errorf("external certificates, yet the Secret %s is rendered: its owner (cert-manager or you) creates it", names.secret)
		}
		return mwc
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace"
	}) {
		t.Errorf("env %v lacks POD_NAMESPACE from metadata.namespace (needed by self-managed certificates)", c.Env)
	}
	if secret == nil {
		t.Fatalf("no Secret %s/%s (the operator's --webhook-secret-name): cert-controller fills it but never creates it", ns, names.secret)
	}
	s := typed[corev1.Secret](t, secret)
	if len(s.Data)+len(s.StringData) != 0 || (s.Type != "" && s.Type != corev1.SecretTypeOpaque) {
		t.Errorf("certificate Secret: type %q with %d keys; want Opaque and empty (empty keys become empty files the operator would take for its certificate)",
			s.Type, len(s.Data)+len(s.StringData))
	}
	if s.Annotations[fluxSSA] != "IfNotPresent" {
		t.Errorf("certificate Secret lacks %s: IfNotPresent; Flux would re-apply it over the operator's certificate", fluxSSA)
	}
	return mwc
}

func describeVolume(vols []corev1.Volume, name string) string {
	i := slices.IndexFunc(vols, func(v corev1.Volume) bool { return v.Name == name })
	switch {
	case i < 0:
		return "missing"
	case vols[i].Secret != nil:
		return fmt.Sprintf("Secret %s, optional %v", vols[i].Secret.SecretName, vols[i].Secret.Optional)
	case vols[i].EmptyDir != nil:
		return "emptyDir"
	}
	return "neither Secret nor emptyDir"
}

// allows is a small RBAC evaluator over rendered rules: does any rule grant verb on
// group/resource (name "" for list/watch or create, which resourceNames cannot match)?
func allows(rules []rbacv1.PolicyRule, verb, group, resource, name string) bool {
	in := func(list []string, v string) bool { return slices.Contains(list, v) || slices.Contains(list, "*") }
	return slices.ContainsFunc(rules, func(r rbacv1.PolicyRule) bool {
		return in(r.APIGroups, group) && in(r.Resources, resource) && in(r.Verbs, verb) &&
			(len(r.ResourceNames) == 0 || (name != "" && slices.Contains(r.ResourceNames, name)))
	})
}

// boundRules are the rules the operator's ServiceAccount holds in a namespace ("": cluster-wide
// only) through the rendered roles and bindings.
func boundRules(t testing.TB, objs objects, manager *appsv1.Deployment, namespace string) []rbacv1.PolicyRule {
	t.Helper()
	var out []rbacv1.PolicyRule
	sa := manager.Spec.Template.Spec.ServiceAccountName
	bindings := objs.ofKind("ClusterRoleBinding")
	if namespace != "" {
		for _, b := range objs.ofKind("RoleBinding") {
			if b.GetNamespace() == namespace {
				bindings = append(bindings, b)
			}
		}
	}
	for _, u := range bindings {
		b := typed[rbacv1.RoleBinding](t, u)
		if !slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool {
			return s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == manager.Namespace
		}) {
			continue
		}
		refNS := u.GetNamespace()
		if b.RoleRef.Kind == "ClusterRole" {
			refNS = ""
		}
		if role := objs.get(b.RoleRef.Kind, refNS, b.RoleRef.Name); role != nil {
			out = append(out, typed[rbacv1.Role](t, role).Rules...) // ClusterRole has the same rules shape
		}
	}
	return out
}

// assertWebhookRBAC checks the rights self-managed certificates need, and that the writes are
// confined to the operator's own configuration: watch every MutatingWebhookConfiguration, update
// only its own; watch the Secrets of its namespace, update the certificate Secret.
// External certificates need no admission rights at all.
func assertWebhookRBAC(t testing.TB, objs objects, manager *appsv1.Deployment, selfManaged bool) {
	t.Helper()
	names := namesFromArgs(t, manager)
	cluster := boundRules(t, objs, manager, "")
	local := boundRules(t, objs, manager, manager.Namespace)
	check := func(rules []rbacv1.PolicyRule, want bool, verb, group, resource, name string) {
		t.Helper()
		if got := allows(rules, verb, group, resource, name); got != want {
			t.Errorf("operator may %s %s %q: %v, want %v", verb, resource, name, got, want)
		}
	}
	for _, verb := range []string{"list", "watch"} {
		check(cluster, selfManaged, verb, admissionGroup, webhookConfigs, "")
		if selfManaged { // without, the operator may still hold Secrets cluster-wide for its controllers
			check(local, true, verb, "", "secrets", "")
		}
	}
	for _, verb := range []string{"get", "update"} {
		check(cluster, selfManaged, verb, admissionGroup, webhookConfigs, names.config)
		if selfManaged {
			check(local, true, verb, "", "secrets", names.secret)
		}
	}
	for _, verb := range []string{"update", "patch", "delete"} {
		check(cluster, false, verb, admissionGroup, webhookConfigs, "someone-elses-webhook")
	}
	check(cluster, false, "create", admissionGroup, webhookConfigs, "")
	check(cluster, false, "delete", admissionGroup, webhookConfigs, names.config)
	check(cluster, false, "update", admissionGroup, "validatingwebhookconfigurations", names.config)
}

// webhookOptOut renders config/default with its documented opt-out applied: ../webhook dropped
// and manager_webhook_disabled_patch.yaml in place of manager_webhook_patch.yaml. The copy lives
// in a temporary directory, so paths are rewritten relative to it.
func webhookOptOut(t testing.TB) objects {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root(t), "config", "default", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, filepath.Join(root(t), "config"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	lines := strings.Split(string(src), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		switch {
		case line == "- ../webhook":
			continue
		case line == "- path: manager_webhook_patch.yaml":
			for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "  ") {
				i++ // drop the patch and its target
			}
			continue
		case line == "#- path: manager_webhook_disabled_patch.yaml":
			out = append(out, "- path: "+rel+"/default/manager_webhook_disabled_patch.yaml")
			for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "#  ") {
				i++
				out = append(out, strings.TrimPrefix(lines[i], "#"))
			}
			continue
		}
		out = append(out, strings.ReplaceAll(line, "../", rel+"/"))
	}
	optOut := strings.Join(out, "\n")
	if strings.Contains(optOut, "- "+rel+"/webhook") || strings.Contains(optOut, "manager_webhook_patch.yaml") ||
		!strings.Contains(optOut, "- path: "+rel+"/default/manager_webhook_disabled_patch.yaml") {
		t.Fatalf("config/default/kustomization.yaml no longer has the expected [WEBHOOK] lines:\n%s", src)
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(optOut), 0o600); err != nil {
		t.Fatal(err)
	}
	return decode(t, mustRun(t, nil, kustomizeBin(t), "build", "--load-restrictor", "LoadRestrictionsNone", dir))
}

// The webhook is on by default, cluster-wide and namespaced: names, port, path, certificate
// directory and RBAC are the ones main.go expects.
func TestKustomizeWebhook(t *testing.T) {
	for _, dir := range []string{"config/default", "config/namespaced"} {
		t.Run(dir, func(t *testing.T) {
			objs := kustomizeBuild(t, dir)
			manager := assertManager(t, objs.get("Deployment", operatorNS, "dkm-operator-controller-manager"), "dkm-operator:latest")
			if slices.ContainsFunc(manager.Spec.Template.Spec.Containers[0].Args, func(a string) bool { return strings.HasPrefix(a, "--enable-webhook") }) {
				t.Errorf("args %v set --enable-webhook; the default (true) is the point", manager.Spec.Template.Spec.Containers[0].Args)
			}
			mwc := assertWebhook(t, objs, manager, "self", nil)
			// The kustomize names are main.go's defaults: the Deployment passes no --webhook-*-name.
			for flag, got := range map[string]string{
				"webhook-config-name":  mwc.Name,
				"webhook-service-name": mwc.Webhooks[0].ClientConfig.Service.Name,
				"webhook-secret-name":  namesFromArgs(t, manager).secret,
			} {
				if want := mainFlagDefault(t, flag); got != want {
					t.Errorf("%s: %s, main.go's default is %s", flag, got, want)
				}
			}
			assertWebhookRBAC(t, objs, manager, true)
		})
	}
}

// Namespaced mode keeps one ClusterRole for the webhook: the generated admission rules, nothing
// else; and the certificate Secret is the only Secret it may write in its own namespace.
func TestKustomizeNamespacedWebhookRBAC(t *testing.T) {
	objs := kustomizeBuild(t, "config/namespaced")
	manager := assertManager(t, objs.get("Deployment", operatorNS, "dkm-operator-controller-manager"), "dkm-operator:latest")
	u := objs.get("ClusterRole", "", "dkm-operator-webhook-role")
	if u == nil {
		t.Fatalf("no ClusterRole dkm-operator-webhook-role: %v", objs.ofKind("ClusterRole").names())
	}
	role := typed[rbacv1.ClusterRole](t, u)
	assertRules(t, "ClusterRole "+role.Name, role.Rules, webhookRules(t))
	if b := objs.get("ClusterRoleBinding", "", "dkm-operator-webhook-rolebinding"); b == nil ||
		typed[rbacv1.ClusterRoleBinding](t, b).RoleRef.Name != role.Name {
		t.Errorf("no ClusterRoleBinding dkm-operator-webhook-rolebinding of %s: %v", role.Name, objs.ofKind("ClusterRoleBinding").names())
	}
	local := boundRules(t, objs, manager, operatorNS)
	for _, verb := range []string{"get", "update", "patch", "delete"} {
		if allows(local, verb, "", "secrets", "some-other-secret") {
			t.Errorf("namespaced mode: the operator may %s any Secret in %s", verb, operatorNS)
		}
	}
	if allows(local, "create", "", "secrets", "") {
		t.Errorf("namespaced mode: the operator may create Secrets in %s", operatorNS)
	}
}

// The documented opt-out still renders a manager that serves no webhook.
func TestKustomizeWebhookOptOut(t *testing.T) {
	objs := webhookOptOut(t)
	if n := len(objs.ofKind("MutatingWebhookConfiguration")); n != 0 {
		t.Errorf("the opt-out renders %d webhook configurations", n)
	}
	if s := objs.ofKind("Secret"); len(s) != 0 {
		t.Errorf("the opt-out renders Secrets: %v", s.names())
	}
	manager := assertManager(t, objs.get("Deployment", operatorNS, "dkm-operator-controller-manager"), "dkm-operator:latest")
	assertMetricsService(t, objs, manager)
	c := manager.Spec.Template.Spec.Containers[0]
	if flagValue(t, c.Args, "enable-webhook") != "false" {
		t.Errorf("args %v: the opt-out must pass --enable-webhook=false (main.go serves the webhook by default)", c.Args)
	}
	if len(c.Env) != 0 || len(c.VolumeMounts) != 0 || len(manager.Spec.Template.Spec.Volumes) != 0 {
		t.Errorf("the opt-out keeps webhook env %v / mounts %v / volumes %v", c.Env, c.VolumeMounts, manager.Spec.Template.Spec.Volumes)
	}
}
