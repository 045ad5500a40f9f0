// Package smoke proves the two real components every integration test relies on: a
// kube-apiserver with etcd built from their Go modules (envtest), and a Samba AD DC over LDAPS.
package smoke

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

var (
	kube      *envtest.Environment
	k8sClient client.Client
	dc        *testenv.DC
)

func TestSmoke(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Smoke Suite")
}

var _ = BeforeSuite(func(ctx context.Context) {
	var err error
	kube, err = testenv.NewKube(ctx, "test/smoke/testdata")
	Expect(err).NotTo(HaveOccurred())
	cfg, err := kube.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(kube.Stop)
	k8sClient, err = client.New(cfg, client.Options{})
	Expect(err).NotTo(HaveOccurred())

	dc, err = testenv.StartDC(ctx, testenv.DCOptions{})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(dc.Close)
})
