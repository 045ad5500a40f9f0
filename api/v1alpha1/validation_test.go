package v1alpha1_test

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

// TestCRDValidation applies objects to a real kube-apiserver with the generated CRD: the schema
// and CEL rules reject bad input with a message a person understands, and defaults are filled.
func TestCRDValidation(t *testing.T) {
	ctx := context.Background()
	env, err := testenv.NewKube(ctx, "config/crd/bases")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = dkmv1.AddToScheme(scheme)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}

	valid := func(name string) *dkmv1.DKMContainer {
		return &dkmv1.DKMContainer{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: dkmv1.DKMContainerSpec{
				Directory: dkmv1.DirectorySpec{
					URLs:          []string{"ldaps://dc1.demo.local", "ldap://127.0.0.1:389"},
					BindSecretRef: dkmv1.SecretReference{Name: "bind"},
				},
				Path:            `CN=VMMDKM,CN=System,DC=demo,DC=local`,
				ServiceAccounts: []string{`DEMO\svc-vmm`, "svc-adfs@demo.local", "S-1-5-21-1-2-3-1105"},
				KeyProtection:   dkmv1.KeyProtectionSpec{KEKSecretRef: &dkmv1.SecretReference{Name: "kek"}},
			},
		}
	}

	t.Run("valid object gets defaults", func(t *testing.T) {
		obj := valid("ok")
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("create: %v", err)
		}
		if obj.Spec.Provisioning != dkmv1.ProvisioningCreate || obj.Spec.AccessPolicy != dkmv1.AccessEnforce ||
			obj.Spec.KeyProtection.Mode != dkmv1.KeyWrapped || obj.Spec.DeletionPolicy != dkmv1.DeletionRetain {
			t.Errorf("defaults not applied: %+v", obj.Spec)
		}
		if obj.Spec.Directory.DialTimeout == nil || obj.Spec.Directory.DialTimeout.Duration.String() != "5s" {
			t.Errorf("dialTimeout default = %v, want 5s", obj.Spec.Directory.DialTimeout)
		}
	})

	bad := []struct {
		name   string
		mutate func(*dkmv1.DKMContainer)
		want   string
	}{
		{"malformed DN", func(o *dkmv1.DKMContainer) { o.Spec.Path = "VMMDKM in System" }, "spec.path"},
		{"DN with one RDN", func(o *dkmv1.DKMContainer) { o.Spec.Path = "CN=VMMDKM" }, "spec.path"},
		{"http URL", func(o *dkmv1.DKMContainer) { o.Spec.Directory.URLs = []string{"http://dc1"} }, "spec.directory.urls[0]"},
		{"no URLs", func(o *dkmv1.DKMContainer) { o.Spec.Directory.URLs = nil }, "spec.directory.urls"},
		{"no service accounts", func(o *dkmv1.DKMContainer) { o.Spec.ServiceAccounts = nil }, "spec.serviceAccounts"},
		{"service account in no accepted form", func(o *dkmv1.DKMContainer) { o.Spec.ServiceAccounts = []string{"just a name"} }, "spec.serviceAccounts[0]"},
		{"unknown provisioning", func(o *dkmv1.DKMContainer) { o.Spec.Provisioning = "Guess" }, `supported values: "Create", "Adopt"`},
		{"unknown access policy", func(o *dkmv1.DKMContainer) { o.Spec.AccessPolicy = "Ignore" }, `supported values: "Enforce", "Audit"`},
		{"Wrapped without KEK", func(o *dkmv1.DKMContainer) { o.Spec.KeyProtection.KEKSecretRef = nil }, "Wrapped needs kekSecretRef"},
		{"unknown deletion policy", func(o *dkmv1.DKMContainer) { o.Spec.DeletionPolicy = "Purge" }, `supported values: "Retain", "Delete"`},
		// A period below 1h would add a permanent key version on nearly every reconcile; zero
		// and negative periods meant "never" without saying so.
		{"rotation period 1s", rotateEvery("1s"), "rotation.period must be at least 1h"},
		{"rotation period 59m59s", rotateEvery("59m59s"), "rotation.period must be at least 1h"},
		{"rotation period 0s", rotateEvery("0s"), "rotation.period must be at least 1h"},
		{"rotation period -1h", rotateEvery("-1h"), "rotation.period must be at least 1h"},
		{"minKeyCopies 0", func(o *dkmv1.DKMContainer) { o.Spec.Directory.MinKeyCopies = ptr.To[int32](0) }, "spec.directory.minKeyCopies"},
		{"minKeyCopies above the URLs", func(o *dkmv1.DKMContainer) { o.Spec.Directory.MinKeyCopies = ptr.To[int32](3) },
			"minKeyCopies cannot exceed the number of urls"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			obj := valid("bad")
			tc.mutate(obj)
			err := c.Create(ctx, obj)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("create: got %v, want Invalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}

	for _, period := range []string{"1h", "720h"} {
		t.Run("rotation period "+period+" is accepted", func(t *testing.T) {
			obj := valid("rotate-" + strings.TrimSuffix(period, "h"))
			rotateEvery(period)(obj)
			if err := c.Create(ctx, obj); err != nil {
				t.Fatalf("create: %v", err)
			}
		})
	}
	t.Run("minKeyCopies up to the number of URLs", func(t *testing.T) {
		obj := valid("copies")
		obj.Spec.Directory.MinKeyCopies = ptr.To[int32](2)
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("create: %v", err)
		}
	})

	t.Run("Plain needs no KEK", func(t *testing.T) {
		obj := valid("plain")
		obj.Spec.KeyProtection = dkmv1.KeyProtectionSpec{Mode: dkmv1.KeyPlain}
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("create: %v", err)
		}
	})

	for _, tc := range []struct {
		field  string
		mutate func(*dkmv1.DKMContainer)
		want   string
	}{
		{"path", func(o *dkmv1.DKMContainer) { o.Spec.Path = "CN=Other,CN=System,DC=demo,DC=local" }, "path is immutable"},
		{"provisioning", func(o *dkmv1.DKMContainer) { o.Spec.Provisioning = dkmv1.ProvisioningAdopt }, "provisioning is immutable"},
	} {
		t.Run(tc.field+" is immutable", func(t *testing.T) {
			obj := &dkmv1.DKMContainer{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "ok"}, obj); err != nil {
				t.Fatal(err)
			}
			tc.mutate(obj)
			err := c.Update(ctx, obj)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("update: got %v, want Invalid mentioning %q", err, tc.want)
			}
		})
	}
}

func rotateEvery(period string) func(*dkmv1.DKMContainer) {
	return func(o *dkmv1.DKMContainer) {
		d, err := time.ParseDuration(period)
		if err != nil {
			panic(err)
		}
		o.Spec.Rotation = &dkmv1.RotationSpec{Period: &metav1.Duration{Duration: d}}
	}
}
