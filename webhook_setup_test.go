package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// setupWebhook refuses what would otherwise fail later and far from the cause. A manager needs
// no reachable API server to be set up, so these need none either. The self-managed path itself
// (cert-controller registers a controller, which a test binary may do only once) runs against a
// real API server in test/deploy's TestSelfManagedWebhookCertificates.
func TestSetupWebhookOptions(t *testing.T) {
	newManager := func(t *testing.T) ctrl.Manager {
		t.Helper()
		mgr, err := ctrl.NewManager(&rest.Config{Host: "https://127.0.0.1:1"}, ctrl.Options{Metrics: metricsserver.Options{BindAddress: "0"}})
		if err != nil {
			t.Fatal(err)
		}
		return mgr
	}
	defaults := webhookOptions{
		enabled: true, certManagement: "self", certDir: t.TempDir(),
		secretName: "s", serviceName: "svc", configName: "c",
	}
	for name, tc := range map[string]struct {
		opts         func(o *webhookOptions)
		podNamespace string
		wantErr      string
		// wantNotReady: the readiness check must fail while nothing serves the webhook (the
		// manager is never started here).
		wantNotReady string
	}{
		"disabled needs nothing":     {opts: func(o *webhookOptions) { o.enabled, o.certManagement = false, "bogus" }},
		"external needs no POD_NS":   {opts: func(o *webhookOptions) { o.certManagement = "external" }, wantNotReady: "not been started"},
		"self without POD_NAMESPACE": {wantErr: "POD_NAMESPACE"},
		"unknown cert management": {opts: func(o *webhookOptions) { o.certManagement = "cert-manager" }, podNamespace: "dkm-system",
			wantErr: "must be self or external"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("POD_NAMESPACE", tc.podNamespace)
			o := defaults
			if tc.opts != nil {
				tc.opts(&o)
			}
			ready, err := setupWebhook(newManager(t), o)
			if err == nil {
				checkReady(t, ready, tc.wantNotReady)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("setupWebhook: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("setupWebhook: %v, want an error about %q", err, tc.wantErr)
			}
		})
	}
}

// checkReady runs a readiness check and compares it with what is expected: ready when
// wantNotReady is empty, otherwise an error that mentions it.
func checkReady(t *testing.T, ready healthz.Checker, wantNotReady string) {
	t.Helper()
	err := ready(httptest.NewRequest(http.MethodGet, "/readyz", nil))
	switch {
	case wantNotReady == "" && err != nil:
		t.Errorf("readiness: %v, want ready", err)
	case wantNotReady != "" && (err == nil || !strings.Contains(err.Error(), wantNotReady)):
		t.Errorf("readiness: %v, want not ready (%q)", err, wantNotReady)
	}
}
