package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/controllers"
	"github.com/dkm-operator/dkm-operator/internal/webhook"
)

// The sample the demo applies, and where.
const (
	sampleFile = "config/samples/dkm_v1alpha1_dkmcontainer_create.yaml"
	namespace  = "vmm"
)

// applySample creates the namespace, the bind, CA and KEK Secrets the sample reads, and the
// Create sample itself pointed at the local DC, then waits for it to be Ready.
func (d *demo) applySample(ctx context.Context, env *environment) error {
	d.section("The Create sample (%s)", sampleFile)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   namespace,
		Labels: map[string]string{webhook.InjectionLabel: "enabled"},
	}}
	if err := env.client.Create(ctx, ns); err != nil {
		return fmt.Errorf("creating namespace %s: %w", namespace, err)
	}
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		return err
	}
	secrets := []*corev1.Secret{
		secret("dkm-bind", map[string][]byte{
			controllers.BindUsernameKey: []byte(env.dc.AdminUser),
			controllers.BindPasswordKey: []byte(env.dc.AdminPassword),
		}),
		secret("dkm-ca", map[string][]byte{"ca.crt": env.dc.CAPEM}),
		secret("dkm-kek", map[string][]byte{"kek": kek}),
	}
	for _, s := range secrets {
		if err := env.client.Create(ctx, s); err != nil {
			return fmt.Errorf("creating Secret %s: %w", s.Name, err)
		}
	}
	d.printf("Namespace %s (labelled %s=enabled); Secrets dkm-bind (%s), dkm-ca (the DC's CA), dkm-kek (32 random bytes).\n",
		namespace, webhook.InjectionLabel, env.dc.AdminUser)

	obj, err := loadSample(env)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := env.client.Create(ctx, obj); err != nil {
		return fmt.Errorf("creating DKMContainer %s: %w", obj.Name, err)
	}
	d.printf("DKMContainer %s/%s applied (path %s, directory %s).\n", namespace, obj.Name, obj.Spec.Path, strings.Join(obj.Spec.Directory.URLs, ", "))
	if err := waitReady(ctx, env, obj); err != nil {
		return err
	}
	d.printf("Ready after %s.\n", time.Since(start).Round(10*time.Millisecond))
	return nil
}

// loadSample reads the Create sample and points it at the local DC: the sample names the
// DEMO.LOCAL domain's controllers, which here are one Samba on a loopback address.
func loadSample(env *environment) (*dkmv1.DKMContainer, error) {
	raw, err := os.ReadFile(filepath.Join(env.root, filepath.FromSlash(sampleFile)))
	if err != nil {
		return nil, err
	}
	obj := &dkmv1.DKMContainer{}
	if err := yaml.UnmarshalStrict(raw, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", sampleFile, err)
	}
	obj.Namespace = namespace
	obj.Spec.Directory.URLs = []string{env.dc.URL}
	if !strings.HasSuffix(strings.ToLower(obj.Spec.Path), strings.ToLower(env.dc.BaseDN)) {
		return nil, fmt.Errorf("%s: path %s is not in the demo domain %s", sampleFile, obj.Spec.Path, env.dc.BaseDN)
	}
	return obj, nil
}

func secret(name string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}, Data: data}
}

// waitReady waits for the Ready condition, and names the reason it is not if it times out.
func waitReady(ctx context.Context, env *environment, obj *dkmv1.DKMContainer) error {
	_, err := waitFor(ctx, env, obj, "Ready", func(cur *dkmv1.DKMContainer, ready *metav1.Condition) bool {
		return ready.Status == metav1.ConditionTrue && ready.ObservedGeneration == cur.Generation
	})
	return err
}

// waitFor waits until the Ready condition satisfies done, and returns it.
func waitFor(ctx context.Context, env *environment, obj *dkmv1.DKMContainer, what string,
	done func(*dkmv1.DKMContainer, *metav1.Condition) bool) (*metav1.Condition, error) {
	var last *metav1.Condition
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		cur := &dkmv1.DKMContainer{}
		if err := env.client.Get(ctx, client.ObjectKeyFromObject(obj), cur); err != nil {
			return false, err
		}
		last = meta.FindStatusCondition(cur.Status.Conditions, dkmv1.ConditionReady)
		return last != nil && done(cur, last), nil
	})
	if err != nil && last != nil {
		return nil, fmt.Errorf("DKMContainer %s not %s (Ready: %s: %s): %w", obj.Name, what, last.Reason, last.Message, err)
	}
	if err != nil {
		return nil, fmt.Errorf("DKMContainer %s has no Ready condition: %w", obj.Name, err)
	}
	return last, nil
}
