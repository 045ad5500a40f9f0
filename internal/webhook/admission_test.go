package webhook

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

// TestAdmission runs the webhook behind a real kube-apiserver with the generated webhook
// configuration (plus the namespace selector config/webhook adds): StatefulSet-style and
// generateName pods get their key volume; pods outside opted-in namespaces are not touched.
func TestAdmission(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err := testenv.NewKube(ctx)
	if err != nil {
		t.Fatal(err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	env.WebhookInstallOptions.Paths = []string{filepath.Join(root, "config", "webhook", "manifests.yaml")}
	env.WebhookInstallOptions.LocalServingHost = "127.0.0.1"
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	applyNamespaceSelector(ctx, t, c)

	wo := env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		WebhookServer: crwebhook.NewServer(crwebhook.Options{
			Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir,
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	go func() { _ = mgr.Start(ctx) }()
	waitForServer(t, fmt.Sprintf("%s:%d", wo.LocalServingHost, wo.LocalServingPort))

	for _, ns := range []struct {
		name   string
		labels map[string]string
	}{{"opted-in", map[string]string{InjectionLabel: "enabled"}}, {"plain", nil}} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns.name, Labels: ns.labels}}); err != nil {
			t.Fatal(err)
		}
	}
	newPod := func(ns, name, generateName string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, GenerateName: generateName,
				Annotations: map[string]string{dkmv1.AnnotationInject: "vmm"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "vmm", Image: "vmm:2012"}}},
		}
	}

	t.Run("StatefulSet-style pod", func(t *testing.T) {
		p := newPod("opted-in", "vmm-0", "")
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		assertInjected(t, p, DefaultMountPath)
	})
	t.Run("generateName pod gets the name its Secret is named after", func(t *testing.T) {
		p := newPod("opted-in", "", "vmm-")
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(p.Name, "vmm-") || len(p.Name) != len("vmm-")+5 {
			t.Fatalf("name = %q", p.Name)
		}
		assertInjected(t, p, DefaultMountPath)
	})
	t.Run("a bad annotation is refused with a clear message", func(t *testing.T) {
		p := newPod("opted-in", "vmm-9", "")
		p.Annotations[dkmv1.AnnotationMountPath] = "relative/path"
		err := c.Create(ctx, p)
		if err == nil || !strings.Contains(err.Error(), "clean absolute path") {
			t.Fatalf("create: %v", err)
		}
	})
	t.Run("namespaces that did not opt in are not touched", func(t *testing.T) {
		p := newPod("plain", "vmm-0", "")
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if len(p.Spec.Volumes) != 0 {
			t.Fatalf("injected into a namespace without %s: %+v", InjectionLabel, p.Spec.Volumes)
		}
	})
}

// applyNamespaceSelector gives the installed configuration the selector config/webhook patches in.
func applyNamespaceSelector(ctx context.Context, t *testing.T, c client.Client) {
	list := &admissionv1.MutatingWebhookConfigurationList{}
	if err := c.List(ctx, list); err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		cfg := &list.Items[i]
		for j := range cfg.Webhooks {
			cfg.Webhooks[j].NamespaceSelector = NamespaceSelector()
		}
		if err := c.Update(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
}

func waitForServer(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // readiness probe only
		if err == nil {
			conn.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("webhook server on %s not ready", addr)
}
