package main

import (
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
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
	}{
		"disabled needs nothing":     {opts: func(o *webhookOptions) { o.enabled, o.certManagement = false, "bogus" }},
		"external needs no POD_NS":   {opts: func(o *webhookOptions) { o.certManagement = "external" }},
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
			err := setupWebhook(newManager(t), o)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("setupWebhook: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("setupWebhook: %v, want an error about %q", err, tc.wantErr)
			}
		})
	}
}
