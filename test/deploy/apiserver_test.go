package deploy

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

const fieldOwner = client.FieldOwner("dkm-deploy-test")

var crdGVK = schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}

// kube starts a real kube-apiserver and etcd (envtest) for one test.
func kube(t *testing.T) (*envtest.Environment, client.Client) {
	t.Helper()
	env, err := testenv.NewKube(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})
	t.Logf("kube-apiserver up in %v", time.Since(start).Round(time.Millisecond))
	c, err := client.New(cfg, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return env, c
}

// apply server-side-applies an object, for real or as a dry run.
func apply(ctx context.Context, c client.Client, u *unstructured.Unstructured, dryRun bool) error {
	opts := []client.ApplyOption{fieldOwner, client.ForceOwnership}
	if dryRun {
		opts = append(opts, client.DryRunAll)
	}
	return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u.DeepCopy()), opts...)
}

// dryRunAll submits every object as a server-side-apply dry run and fails for each refusal.
func dryRunAll(t *testing.T, c client.Client, objs objects) {
	t.Helper()
	if len(objs) == 0 {
		t.Fatal("nothing to apply")
	}
	for _, u := range objs {
		if err := apply(t.Context(), c, u, true); err != nil {
			t.Errorf("the API server refuses %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
}

// install applies Namespaces and CRDs for real (the rest is dry-run against them) and waits
// for the CRDs to be served.
func install(t *testing.T, c client.Client, objs objects) {
	t.Helper()
	for _, u := range append(objs.ofKind("Namespace"), objs.ofKind("CustomResourceDefinition")...) {
		if err := apply(t.Context(), c, u, false); err != nil {
			t.Fatalf("installing %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
	for _, u := range objs.ofKind("CustomResourceDefinition") {
		waitEstablished(t, c, u.GetName())
	}
}

func waitEstablished(t *testing.T, c client.Client, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		crd := &unstructured.Unstructured{}
		crd.SetGroupVersionKind(crdGVK)
		if err := c.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		conditions, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		return slices.ContainsFunc(conditions, func(c any) bool {
			m := c.(map[string]any)
			return m["type"] == "Established" && m["status"] == "True"
		}), nil
	})
	if err != nil {
		t.Fatalf("CRD %s not established: %v", name, err)
	}
}

func createNamespaces(t *testing.T, c client.Client, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := c.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

func inNamespace(objs objects, ns string) objects {
	var out objects
	for _, u := range objs {
		u = u.DeepCopy()
		u.SetNamespace(ns)
		out = append(out, u)
	}
	return out
}

// Every kustomize output is accepted by a real kube-apiserver: the CRD and namespaces are
// installed, everything else is submitted as a server-side-apply dry run.
func TestKustomizeAcceptedByAPIServer(t *testing.T) {
	defaults := kustomizeBuild(t, "config/default")
	namespaced := kustomizeBuild(t, "config/namespaced")
	optOut := webhookOptOut(t)
	samples := inNamespace(kustomizeBuild(t, "config/samples"), "vmm")

	_, c := kube(t)
	ctx := t.Context()
	install(t, c, defaults)
	createNamespaces(t, c, "vmm")

	t.Run("default", func(t *testing.T) { dryRunAll(t, c, defaults) })
	t.Run("namespaced", func(t *testing.T) { dryRunAll(t, c, namespaced) })
	t.Run("webhook opt-out", func(t *testing.T) { dryRunAll(t, c, optOut) })
	t.Run("samples", func(t *testing.T) { dryRunAll(t, c, samples) })

	t.Run("dry runs leave nothing behind", func(t *testing.T) {
		if err := c.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: "dkm-operator-controller-manager"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
			t.Errorf("Deployment after a dry run: %v, want NotFound", err)
		}
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(schema.GroupVersionKind{Group: "dkm.io", Version: "v1alpha1", Kind: "DKMContainerList"})
		if err := c.List(ctx, list, client.InNamespace("vmm")); err != nil || len(list.Items) != 0 {
			t.Errorf("DKMContainers after a dry run: %d (%v), want none", len(list.Items), err)
		}
	})

	// The checks above mean something only if the server validates: these must be refused.
	t.Run("invalid objects are refused", func(t *testing.T) {
		create := samples.ofKind("DKMContainer")[0]
		refused := map[string]*unstructured.Unstructured{}
		bogus := create.DeepCopy()
		_ = unstructured.SetNestedField(bogus.Object, "Bogus", "spec", "provisioning")
		refused["provisioning Bogus"] = bogus
		noKEK := create.DeepCopy()
		unstructured.RemoveNestedField(noKEK.Object, "spec", "keyProtection", "kekSecretRef")
		refused["Wrapped without kekSecretRef (CEL)"] = noKEK
		deploy := defaults.one(t, "Deployment").DeepCopy()
		_ = unstructured.SetNestedField(deploy.Object, int64(-1), "spec", "replicas")
		refused["Deployment with -1 replicas"] = deploy
		for what, u := range refused {
			if err := apply(ctx, c, u, true); !apierrors.IsInvalid(err) {
				t.Errorf("%s: %v, want Invalid", what, err)
			}
		}
	})
}

// assertWebhookInstalled checks a real install left the webhook objects as the operator needs
// them: the configuration pointing at the Service, and the certificate Secret waiting empty.
func assertWebhookInstalled(t *testing.T, c client.Client) {
	t.Helper()
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if !exists(t, c, mwc, "", "dkm-operator-mutating-webhook-configuration") {
		t.Fatal("no MutatingWebhookConfiguration dkm-operator-mutating-webhook-configuration after install")
	}
	if len(mwc.Webhooks) != 1 || mwc.Webhooks[0].ClientConfig.Service == nil ||
		mwc.Webhooks[0].ClientConfig.Service.Name != "dkm-operator-webhook-service" || len(mwc.Webhooks[0].ClientConfig.CABundle) != 0 {
		t.Errorf("installed webhook configuration: %+v", mwc.Webhooks)
	}
	svc, secret := &corev1.Service{}, &corev1.Secret{}
	if !exists(t, c, svc, operatorNS, "dkm-operator-webhook-service") || svc.Spec.ClusterIP == "" {
		t.Errorf("webhook Service missing or without a cluster IP: %+v", svc.Spec)
	}
	if !exists(t, c, secret, operatorNS, "dkm-operator-webhook-server-cert") || len(secret.Data) != 0 {
		t.Errorf("certificate Secret missing or not empty (%d keys)", len(secret.Data))
	}
}

// helmOn runs helm against the envtest API server with an admin kubeconfig.
func helmOn(t *testing.T, env *envtest.Environment) func(args ...string) string {
	t.Helper()
	user, err := env.AddUser(envtest.User{Name: "helm-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	henv := helmEnv(t)
	return func(args ...string) string {
		t.Helper()
		start := time.Now()
		out := mustRun(t, henv, helmBin(t), append(args, "--kubeconfig", path)...)
		t.Logf("helm %s: %v", args[0], time.Since(start).Round(time.Millisecond))
		return out
	}
}

// can asks the API server's RBAC authorizer whether the operator's ServiceAccount may do
// something (namespace "" asks about all namespaces at once).
func can(t *testing.T, c client.Client, verb, group, resource, namespace string) bool {
	t.Helper()
	return canName(t, c, verb, group, resource, namespace, "")
}

// canName is can for one object by name ("" for none, as in list, watch and create).
func canName(t *testing.T, c client.Client, verb, group, resource, namespace, name string) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   "system:serviceaccount:" + operatorNS + ":dkm-operator-controller-manager",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + operatorNS, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: verb, Group: group, Resource: resource, Namespace: namespace, Name: name,
		},
	}}
	if err := c.Create(t.Context(), sar); err != nil {
		t.Fatal(err)
	}
	return sar.Status.Allowed
}

func assertAccess(t *testing.T, c client.Client, want bool, verb, group, resource string, namespaces ...string) {
	t.Helper()
	for _, ns := range namespaces {
		if got := can(t, c, verb, group, resource, ns); got != want {
			where := ns
			if where == "" {
				where = "all namespaces"
			}
			t.Errorf("operator may %s %s in %s: %v, want %v", verb, resource, where, got, want)
		}
	}
}

// assertWebhookAccess asks the API server's authorizer what self-managed webhook certificates
// need: watch every MutatingWebhookConfiguration but write only the operator's own, and the
// certificate Secret in the operator's namespace.
func assertWebhookAccess(t *testing.T, c client.Client) {
	t.Helper()
	const config, secret = "dkm-operator-mutating-webhook-configuration", "dkm-operator-webhook-server-cert"
	for verb, want := range map[string]bool{"list": true, "watch": true, "create": false, "deletecollection": false} {
		if got := canName(t, c, verb, admissionGroup, webhookConfigs, "", ""); got != want {
			t.Errorf("operator may %s MutatingWebhookConfigurations: %v, want %v", verb, got, want)
		}
	}
	for _, verb := range []string{"get", "update", "patch"} {
		if !canName(t, c, verb, admissionGroup, webhookConfigs, "", config) {
			t.Errorf("operator may not %s its own MutatingWebhookConfiguration %s", verb, config)
		}
		if canName(t, c, verb, admissionGroup, webhookConfigs, "", "someone-elses-webhook") {
			t.Errorf("operator may %s someone else's MutatingWebhookConfiguration", verb)
		}
	}
	if canName(t, c, "delete", admissionGroup, webhookConfigs, "", config) {
		t.Errorf("operator may delete its MutatingWebhookConfiguration")
	}
	for _, verb := range []string{"list", "watch"} {
		if !canName(t, c, verb, "", "secrets", operatorNS, "") {
			t.Errorf("operator may not %s Secrets in %s (the certificate rotator's cache)", verb, operatorNS)
		}
	}
	for _, verb := range []string{"get", "update"} {
		if !canName(t, c, verb, "", "secrets", operatorNS, secret) {
			t.Errorf("operator may not %s the certificate Secret %s/%s", verb, operatorNS, secret)
		}
	}
}

// assertMetricsAccess asks the API server's authorizer what the secure metrics endpoint needs:
// the operator may create TokenReviews and SubjectAccessReviews (cluster-scoped whatever the
// mode), and the metrics-reader ClusterRole is installed.
func assertMetricsAccess(t *testing.T, c client.Client) {
	t.Helper()
	assertAccess(t, c, true, "create", authnGroup, "tokenreviews", "")
	assertAccess(t, c, true, "create", authzGroup, "subjectaccessreviews", "")
	if !exists(t, c, &rbacv1.ClusterRole{}, "", "dkm-operator-metrics-reader") {
		t.Error("no ClusterRole dkm-operator-metrics-reader installed")
	}
}

func exists(t *testing.T, c client.Client, obj client.Object, namespace, name string) bool {
	t.Helper()
	err := c.Get(t.Context(), client.ObjectKey{Namespace: namespace, Name: name}, obj)
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

func dkmContainers(t *testing.T, c client.Client, namespace string) int {
	t.Helper()
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(schema.GroupVersionKind{Group: "dkm.io", Version: "v1alpha1", Kind: "DKMContainerList"})
	if err := c.List(t.Context(), list, client.InNamespace(namespace)); err != nil {
		t.Fatal(err)
	}
	return len(list.Items)
}

// A real `helm install` on a real API server, cluster-wide then namespaced, with the RBAC it
// grants checked by the server's own authorizer, and crds.keep checked by `helm uninstall`.
func TestHelmInstallOnAPIServer(t *testing.T) {
	env, c := kube(t)
	helm := helmOn(t, env)
	crd := func() *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(crdGVK)
		return u
	}
	const role = "dkm-operator-manager-role"

	// Cluster-wide, default values.
	helm("install", "dkm-operator", chartDir, "--namespace", operatorNS, "--create-namespace", "--timeout", "2m")
	d := &appsv1.Deployment{}
	if !exists(t, c, d, operatorNS, "dkm-operator-controller-manager") {
		t.Fatal("helm install created no Deployment dkm-operator-controller-manager")
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(d)
	if err != nil {
		t.Fatal(err)
	}
	assertManager(t, &unstructured.Unstructured{Object: u}, chartImage)
	if !exists(t, c, &policyv1.PodDisruptionBudget{}, operatorNS, "dkm-operator-controller-manager") {
		t.Error("helm install created no PodDisruptionBudget")
	}
	if kept := crd(); !exists(t, c, kept, "", "dkmcontainers.dkm.io") || kept.GetAnnotations()[keepAnnotation] != "keep" {
		t.Errorf("CRD after install: annotations %v, want %s: keep", kept.GetAnnotations(), keepAnnotation)
	}
	assertAccess(t, c, true, "list", "", "secrets", "", "vmm")
	assertAccess(t, c, true, "update", "dkm.io", "dkmcontainers/status", "")
	assertAccess(t, c, true, "update", "coordination.k8s.io", "leases", operatorNS)
	assertAccess(t, c, false, "create", "apps", "deployments", "", operatorNS)
	assertWebhookInstalled(t, c)
	assertWebhookAccess(t, c)
	assertMetricsAccess(t, c)

	// DKMContainers outlive the release: crds.keep.
	waitEstablished(t, c, "dkmcontainers.dkm.io")
	createNamespaces(t, c, "vmm")
	for _, s := range inNamespace(kustomizeBuild(t, "config/samples"), "vmm") {
		if err := apply(t.Context(), c, s, false); err != nil {
			t.Fatalf("creating sample %s %s: %v", s.GetKind(), s.GetName(), err)
		}
	}
	helm("uninstall", "dkm-operator", "--namespace", operatorNS, "--timeout", "2m")
	if exists(t, c, &appsv1.Deployment{}, operatorNS, "dkm-operator-controller-manager") ||
		exists(t, c, &rbacv1.ClusterRole{}, "", role) {
		t.Error("helm uninstall left the Deployment or the ClusterRole")
	}
	// No resource-policy keep on the webhook: its configuration (which fails closed) and the
	// certificate Secret with the CA key leave with the release.
	if exists(t, c, &admissionregistrationv1.MutatingWebhookConfiguration{}, "", "dkm-operator-mutating-webhook-configuration") ||
		exists(t, c, &corev1.Secret{}, operatorNS, "dkm-operator-webhook-server-cert") {
		t.Error("helm uninstall left the webhook configuration or its certificate Secret")
	}
	if !exists(t, c, crd(), "", "dkmcontainers.dkm.io") {
		t.Fatal("helm uninstall deleted the CRD despite crds.keep=true")
	}
	if n := dkmContainers(t, c, "vmm"); n != 2 {
		t.Errorf("%d DKMContainers after uninstall, want the 2 samples", n)
	}

	// Namespaced, adopting the kept CRD, this time without keep.
	createNamespaces(t, c, "team-a", "team-b")
	helm("install", "dkm-operator", chartDir, "--namespace", operatorNS, "--timeout", "2m",
		"--set", "watchNamespaces={team-a,team-b}", "--set", "crds.keep=false")
	if exists(t, c, &rbacv1.ClusterRole{}, "", role) || exists(t, c, &rbacv1.ClusterRoleBinding{}, "", "dkm-operator-manager-rolebinding") {
		t.Error("namespaced install created the ClusterRole or its binding")
	}
	for _, ns := range []string{"team-a", "team-b"} {
		if !exists(t, c, &rbacv1.Role{}, ns, role) || !exists(t, c, &rbacv1.RoleBinding{}, ns, "dkm-operator-manager-rolebinding") {
			t.Errorf("namespaced install created no Role/RoleBinding in %s", ns)
		}
	}
	if !exists(t, c, d, operatorNS, "dkm-operator-controller-manager") ||
		!slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--namespaces=team-a,team-b") {
		t.Errorf("namespaced Deployment args %v lack --namespaces=team-a,team-b", d.Spec.Template.Spec.Containers[0].Args)
	}
	assertAccess(t, c, true, "list", "", "secrets", "team-a", "team-b")
	assertAccess(t, c, true, "patch", "dkm.io", "dkmcontainers/status", "team-a", "team-b")
	assertAccess(t, c, false, "get", "", "secrets", "", "vmm", operatorNS, "default")
	assertAccess(t, c, false, "list", "dkm.io", "dkmcontainers", "", "vmm")
	assertAccess(t, c, true, "update", "coordination.k8s.io", "leases", operatorNS)
	assertAccess(t, c, false, "update", "coordination.k8s.io", "leases", "team-a", "")
	assertWebhookInstalled(t, c)
	assertWebhookAccess(t, c)
	assertMetricsAccess(t, c)
	if canName(t, c, "get", "", "secrets", operatorNS, "sh.helm.release.v1.dkm-operator.v1") {
		t.Error("namespaced mode: the operator may read other Secrets of its namespace by name")
	}
	if canName(t, c, "get", "", "secrets", "default", "dkm-operator-webhook-server-cert") {
		t.Error("namespaced mode: the certificate Secret rule reaches beyond the operator's namespace")
	}

	// Without keep, uninstalling removes the CRD (and, with it, the DKMContainers).
	helm("uninstall", "dkm-operator", "--namespace", operatorNS, "--timeout", "2m")
	err = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return !exists(t, c, crd(), "", "dkmcontainers.dkm.io"), nil
	})
	if err != nil {
		t.Errorf("CRD still present after uninstalling a release with crds.keep=false: %v", err)
	}
}
