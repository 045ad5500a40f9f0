package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// mainFlagDefault reads the default of one of main.go's flags: the webhook objects must carry
// the names the operator looks for.
func mainFlagDefault(t testing.TB, name string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root(t), "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`flag\.\w+Var\([^,]+,\s*"` + regexp.QuoteMeta(name) + `",\s*("[^"]*"|[0-9]+)`)
	m := re.FindSubmatch(src)
	if m == nil {
		t.Fatalf("main.go defines no flag --%s with a literal default; update test/deploy if the flag moved", name)
	}
	return strings.Trim(string(m[1]), `"`)
}

// webhookEnabled renders config/default with its [WEBHOOK] lines switched on: ../webhook
// uncommented and manager_webhook_patch.yaml in place of manager_webhook_disabled_patch.yaml.
// The copy lives in a temporary directory, so paths are rewritten relative to it.
func webhookEnabled(t testing.TB) objects {
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
		case line == "#- ../webhook":
			line = "- ../webhook"
		case line == "- path: manager_webhook_disabled_patch.yaml":
			for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "  ") {
				i++ // drop the patch and its target
			}
			continue
		case line == "#- path: manager_webhook_patch.yaml":
			out = append(out, "- path: "+rel+"/default/manager_webhook_patch.yaml")
			for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "#  ") {
				i++
				out = append(out, strings.TrimPrefix(lines[i], "#"))
			}
			continue
		}
		out = append(out, strings.ReplaceAll(line, "../", rel+"/"))
	}
	enabled := strings.Join(out, "\n")
	if strings.Contains(enabled, "disabled_patch") || !strings.Contains(enabled, "- "+rel+"/webhook") ||
		!strings.Contains(enabled, "manager_webhook_patch.yaml") {
		t.Fatalf("config/default/kustomization.yaml no longer has the expected [WEBHOOK] lines:\n%s", src)
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(enabled), 0o600); err != nil {
		t.Fatal(err)
	}
	return decode(t, mustRun(t, nil, kustomizeBin(t), "build", "--load-restrictor", "LoadRestrictionsNone", dir))
}

// Until ../webhook is switched on, the manager must not try to serve the webhook.
func TestKustomizeWebhookDisabled(t *testing.T) {
	objs := kustomizeBuild(t, "config/default")
	if n := len(objs.ofKind("MutatingWebhookConfiguration")); n != 0 {
		t.Errorf("config/default renders %d webhook configurations while ../webhook is commented out", n)
	}
	d := typed[appsv1.Deployment](t, objs.one(t, "Deployment"))
	if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--enable-webhook=false") {
		t.Errorf("args %v lack --enable-webhook=false: main.go serves the webhook by default", d.Spec.Template.Spec.Containers[0].Args)
	}
}

// Switching the [WEBHOOK] lines on gives a webhook whose names, port, path and certificate
// directory are the ones main.go expects.
func TestKustomizeWebhookEnabled(t *testing.T) {
	objs := webhookEnabled(t)
	manager := assertManager(t, objs.get("Deployment", operatorNS, "dkm-operator-controller-manager"), "dkm-operator:latest")
	c := manager.Spec.Template.Spec.Containers[0]
	if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--enable-webhook") }) {
		t.Errorf("webhook enabled, yet args %v still set --enable-webhook", c.Args)
	}

	configName := mainFlagDefault(t, "webhook-config-name")
	wh := objs.get("MutatingWebhookConfiguration", "", configName)
	if wh == nil {
		t.Fatalf("no MutatingWebhookConfiguration %q (main.go's --webhook-config-name): %v", configName, objs.names())
	}
	hooks, _, _ := unstructured.NestedSlice(wh.Object, "webhooks")
	if len(hooks) != 1 {
		t.Fatalf("want one webhook, got %d", len(hooks))
	}
	svcRef, _, _ := unstructured.NestedStringMap(hooks[0].(map[string]any), "clientConfig", "service")
	serviceName := mainFlagDefault(t, "webhook-service-name")
	if svcRef["name"] != serviceName || svcRef["namespace"] != operatorNS || svcRef["path"] != "/mutate-v1-pod" {
		t.Errorf("webhook clientConfig.service = %v, want %s/%s at /mutate-v1-pod", svcRef, operatorNS, serviceName)
	}
	u := objs.get("Service", operatorNS, serviceName)
	if u == nil {
		t.Fatalf("no Service %s (main.go's --webhook-service-name)", serviceName)
	}
	svc := typed[corev1.Service](t, u)
	port := mainFlagDefault(t, "webhook-port")
	ports := map[string]string{}
	for _, p := range c.Ports {
		ports[p.Name] = p.String()
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != port || !selects(svc.Spec.Selector, manager) {
		t.Errorf("webhook Service %+v does not reach the pods' port %s", svc.Spec, port)
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "webhook-server" && p.ContainerPort == 9443 }) ||
		port != "9443" {
		t.Errorf("container ports %v / --webhook-port %s: want webhook-server 9443", c.Ports, port)
	}

	secretName := mainFlagDefault(t, "webhook-secret-name")
	if secretName != "dkm-operator-webhook-server-cert" || objs.get("Secret", operatorNS, secretName) == nil {
		t.Errorf("no Secret %s/%s (main.go's --webhook-secret-name)", operatorNS, secretName)
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace"
	}) {
		t.Errorf("env %v lacks POD_NAMESPACE from metadata.namespace (needed by self-managed certificates)", c.Env)
	}
	certDir := mainFlagDefault(t, "webhook-cert-dir")
	mount := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == certDir })
	if mount < 0 {
		t.Fatalf("no volume mounted at %s (main.go's --webhook-cert-dir); the root filesystem is read-only", certDir)
	}
	vol := slices.IndexFunc(manager.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[mount].Name })
	if vol < 0 || manager.Spec.Template.Spec.Volumes[vol].EmptyDir == nil {
		t.Errorf("the certificate directory is not an emptyDir volume")
	}
}
