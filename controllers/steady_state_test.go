package controllers

import (
	"context"
	"sync/atomic"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
)

var _ = Describe("A steady-state reconcile", func() {
	It("makes exactly one LDAP search, no LDAP write and no Kubernetes write", func(ctx context.Context) {
		f := newFixture(ctx)
		obj := f.dkm("steady", f.path("steady"))
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		expectCondition(ctx, obj, dkmv1.ConditionReady, metav1.ConditionTrue, dkmv1.ReasonReady)

		// A second reconciler of our own, so its LDAP client and Kubernetes writes can be
		// counted apart from the manager's.
		base, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		var writes atomic.Int64
		count := func() { writes.Add(1) }
		counted := interceptor.NewClient(base, interceptor.Funcs{
			Create: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.CreateOption) error {
				count()
				return c.Create(ctx, o, opts...)
			},
			Update: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.UpdateOption) error {
				count()
				return c.Update(ctx, o, opts...)
			},
			Patch: func(ctx context.Context, c client.WithWatch, o client.Object, p client.Patch, opts ...client.PatchOption) error {
				count()
				return c.Patch(ctx, o, p, opts...)
			},
			Delete: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.DeleteOption) error {
				count()
				return c.Delete(ctx, o, opts...)
			},
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, o client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
				count()
				return c.SubResource(sub).Patch(ctx, o, p, opts...)
			},
			SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, o client.Object, opts ...client.SubResourceUpdateOption) error {
				count()
				return c.SubResource(sub).Update(ctx, o, opts...)
			},
		})
		pool := directory.NewPool()
		DeferCleanup(pool.Close)
		var ad *directory.Client
		r := &DKMContainerReconciler{
			Client:    counted,
			APIReader: base,
			Directories: func(c directory.Config) (Directory, error) {
				ad, err = pool.Client(c)
				return ad, err
			},
			Keys:   NewKeyStore(),
			Resync: testResync,
			Retry:  testRetry,
		}
		req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(obj)}

		// The first pass warms the caches (rootDSE, domain, principals).
		_, err = r.Reconcile(ctx, req)
		Expect(err).NotTo(HaveOccurred())
		before, writesBefore := ad.Ops(), writes.Load()

		res, err := r.Reconcile(ctx, req)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.RequeueAfter).To(BeNumerically(">=", testResync), "a healthy object is resynced, not hot-looped")
		after := ad.Ops()
		delta := map[string]int{}
		for op, n := range after {
			if d := n - before[op]; d != 0 {
				delta[op] = d
			}
		}
		// One search, answered in one page: one request on the wire.
		Expect(delta).To(Equal(map[string]int{"search": 1, directory.OpSearchPage: 1}), "LDAP operations of one steady-state reconcile")
		Expect(writes.Load()-writesBefore).To(BeZero(), "Kubernetes writes of one steady-state reconcile")
	})
})
