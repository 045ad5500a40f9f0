package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const operatorNS = "dkm-system"

func TestKustomizeDefault(t *testing.T) {
	objs := kustomizeBuild(t, "config/default")

	kinds := map[string]int{}
	for _, u := range objs {
		kinds[u.GetKind()]++
		switch u.GetKind() {
		case "Namespace":
			if u.GetName() != operatorNS {
				t.Errorf("Namespace %q, want %s", u.GetName(), operatorNS)
			}
		case "CustomResourceDefinition":
		default:
			if !strings.HasPrefix(u.GetName(), "dkm-operator-") {
				t.Errorf("%s %s lacks the dkm-operator- prefix", u.GetKind(), u.GetName())
			}
			if !slices.Contains([]string{"ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}, u.GetKind()) && u.GetNamespace() != operatorNS {
				t.Errorf("%s %s is in namespace %q, want %s", u.GetKind(), u.GetName(), u.GetNamespace(), operatorNS)
			}
		}
	}
	for _, k := range []string{"Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole",
		"ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service", "Secret", "MutatingWebhookConfiguration"} {
		if kinds[k] == 0 {
			t.Errorf("no %s rendered", k)
		}
	}

	assertCRDsMatch(t, objs)
	manager := assertManager(t, objs.get("Deployment", operatorNS, "dkm-operator-controller-manager"), "dkm-operator:latest")
	assertBindings(t, objs, manager)
	assertMetricsService(t, objs, manager)

	role := typed[rbacv1.ClusterRole](t, objs.get("ClusterRole", "", "dkm-operator-manager-role"))
	assertRules(t, "ClusterRole "+role.Name, role.Rules, generatedRules(t))
	if n := len(objs.ofKind("ClusterRole")); n != 2 {
		t.Errorf("%d ClusterRoles rendered, want the manager's and the metrics reader: %v", n, objs.ofKind("ClusterRole").names())
	}

	le := typed[rbacv1.Role](t, objs.get("Role", operatorNS, "dkm-operator-leader-election-role"))
	if !grantsLeases(le.Rules) || grantsSecrets(le.Rules) {
		t.Errorf("leader-election Role rules = %+v, want leases and no Secrets", le.Rules)
	}
}

func grantsLeases(rules []rbacv1.PolicyRule) bool {
	return slices.ContainsFunc(rules, func(r rbacv1.PolicyRule) bool {
		return slices.Contains(r.APIGroups, "coordination.k8s.io") && slices.Contains(r.Resources, "leases") &&
			slices.Contains(r.Verbs, "update") && slices.Contains(r.Verbs, "create")
	})
}

func TestKustomizeNamespaced(t *testing.T) {
	objs := kustomizeBuild(t, "config/namespaced")
	// The cluster-wide rights left are the webhook's (TestKustomizeNamespacedWebhookRBAC) and the
	// secure metrics endpoint's (TestKustomizeSecureMetrics).
	assertNamespacedClusterRoles(t, objs)
	manager := assertManager(t, objs.get("Deployment", operatorNS, "dkm-operator-controller-manager"), "dkm-operator:latest")
	if !slices.Contains(manager.Spec.Template.Spec.Containers[0].Args, "--namespaces=vmm") {
		t.Errorf("args %v lack --namespaces=vmm", manager.Spec.Template.Spec.Containers[0].Args)
	}
	assertBindings(t, objs, manager)

	u := objs.get("Role", "vmm", "dkm-operator-manager-role")
	if u == nil {
		t.Fatalf("no Role dkm-operator-manager-role in vmm: %v", objs.names())
	}
	role := typed[rbacv1.Role](t, u)
	assertRules(t, "Role vmm/"+role.Name, role.Rules, namespaceRules(t))
	if objs.get("RoleBinding", "vmm", "dkm-operator-manager-rolebinding") == nil {
		t.Error("no RoleBinding in vmm")
	}
	for _, r := range objs.ofKind("Role") {
		rules := typed[rbacv1.Role](t, r).Rules
		if !grantsSecrets(rules) || r.GetNamespace() == "vmm" {
			continue
		}
		// Outside the watched namespace, only the webhook certificate Secret may be written.
		if r.GetNamespace() != operatorNS || allows(rules, "get", "", "secrets", "any-other-secret") {
			t.Errorf("Role %s/%s grants Secrets outside the watched namespace", r.GetNamespace(), r.GetName())
		}
	}
}

func TestKustomizeSamples(t *testing.T) {
	objs := kustomizeBuild(t, "config/samples")
	secrets := map[string]*corev1.Secret{}
	for _, u := range objs.ofKind("Secret") {
		s := typed[corev1.Secret](t, u)
		secrets[s.Name] = s
		for k, v := range s.StringData {
			if !strings.Contains(v, "REPLACE-ME") {
				t.Errorf("Secret %s key %s holds %q: sample values must be obvious placeholders", s.Name, k, v)
			}
		}
	}
	needs := func(dkm, ref string, keys ...string) {
		s := secrets[ref]
		if s == nil {
			t.Errorf("%s refers to Secret %q, which the samples lack", dkm, ref)
			return
		}
		for _, k := range keys {
			if _, ok := s.StringData[k]; !ok {
				t.Errorf("%s needs key %q in Secret %s", dkm, k, ref)
			}
		}
	}

	modes := map[string]string{}
	for _, u := range objs.ofKind("DKMContainer") {
		name := u.GetName()
		mode, _, _ := unstructured.NestedString(u.Object, "spec", "provisioning")
		modes[mode] = name
		bind, _, _ := unstructured.NestedString(u.Object, "spec", "directory", "bindSecretRef", "name")
		needs(name, bind, "username", "password")
		if ca, ok, _ := unstructured.NestedString(u.Object, "spec", "directory", "caBundleSecretRef", "name"); ok {
			key, ok, _ := unstructured.NestedString(u.Object, "spec", "directory", "caBundleSecretRef", "key")
			if !ok {
				key = "ca.crt"
			}
			needs(name, ca, key)
		}
		if kek, ok, _ := unstructured.NestedString(u.Object, "spec", "keyProtection", "kekSecretRef", "name"); ok {
			needs(name, kek, "kek")
			// A placeholder KEK of the right length would be accepted and wrap real keys under a
			// value published in this repository.
			if s := secrets[kek]; s != nil && len(s.StringData["kek"]) == 32 {
				t.Errorf("the sample KEK is 32 bytes: the operator would accept it")
			}
		}
	}
	for _, mode := range []string{"Create", "Adopt"} {
		if modes[mode] == "" {
			t.Errorf("no sample DKMContainer with provisioning %s", mode)
		}
	}

	data, err := os.ReadFile(filepath.Join(root(t), "config", "samples", "secrets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "head -c 32 /dev/urandom") {
		t.Error("config/samples/secrets.yaml does not say how to generate a KEK (head -c 32 /dev/urandom)")
	}
}
