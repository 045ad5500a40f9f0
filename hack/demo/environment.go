package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

// environment is everything the demo runs against.
type environment struct {
	root string
	// work is a temporary directory for kubeconfigs, certificates and logs.
	work string
	dc   *testenv.DC
	// servicePassword is the password of the AD account the DKM container grants (svc-vmm).
	servicePassword string
	kube            *envtest.Environment
	cfg             *rest.Config
	client          client.Client
	scheme          *runtime.Scheme
	operator        *operatorProcess
}

// startDirectory starts the Samba AD DC for DEMO.LOCAL and creates the service account the
// management service runs as.
func (d *demo) startDirectory(ctx context.Context) (*environment, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "dkm-demo-")
	if err != nil {
		return nil, err
	}
	d.onShutdown("temporary files", func() error { return os.RemoveAll(work) })
	env := &environment{root: root, work: work, servicePassword: "Vmm!" + randomText(12)}

	d.section("Samba AD domain controller")
	start := time.Now()
	env.dc, err = testenv.StartDC(ctx, testenv.DCOptions{})
	if err != nil {
		return nil, fmt.Errorf("starting the Samba AD DC: %w", err)
	}
	d.onShutdown("Samba AD DC", func() error { env.dc.Close(); return nil })
	d.printf("Domain %s (%s), %s, LDAPS on %s, up in %s.\n", env.dc.Realm, env.dc.NetBIOS, env.dc.BaseDN,
		env.dc.URL, time.Since(start).Round(10*time.Millisecond))
	svc, err := env.dc.CreateUser("svc-vmm", env.servicePassword)
	if err != nil {
		return nil, fmt.Errorf("creating the AD account svc-vmm: %w", err)
	}
	d.printf("AD account %s (%s): the account the management service runs as.\n", svc.DownLevel(env.dc), svc.SID)
	return env, nil
}

// startControlPlane starts etcd and kube-apiserver (envtest, with the CRDs of config/crd/bases)
// and kube-controller-manager, whose StatefulSet controller and garbage collector the failover
// needs.
func (d *demo) startControlPlane(ctx context.Context, env *environment) error {
	d.section("Local control plane")
	start := time.Now()
	kube, err := testenv.NewKube(ctx, filepath.Join("config", "crd", "bases"))
	if err != nil {
		return err
	}
	env.cfg, err = kube.Start()
	if err != nil {
		return fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	env.kube = kube
	d.onShutdown("kube-apiserver and etcd", kube.Stop)
	env.scheme = runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(env.scheme); err != nil {
		return err
	}
	if err := dkmv1.AddToScheme(env.scheme); err != nil {
		return err
	}
	if env.client, err = client.New(env.cfg, client.Options{Scheme: env.scheme}); err != nil {
		return err
	}
	d.printf("etcd and kube-apiserver on %s, up in %s.\n", env.cfg.Host, time.Since(start).Round(10*time.Millisecond))
	for _, crd := range kube.CRDs {
		d.printf("CRD installed: %s\n", crd.Name)
	}

	start = time.Now()
	kcm, err := testenv.StartControllerManager(ctx, kube, "statefulset-controller")
	if err != nil {
		return fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	d.onShutdown("kube-controller-manager", kcm.Stop)
	d.printf("kube-controller-manager (StatefulSet controller, garbage collector), up in %s.\n", time.Since(start).Round(10*time.Millisecond))
	return nil
}

// randomText returns n random letters and digits (for throwaway passwords).
func randomText(n int) string {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
