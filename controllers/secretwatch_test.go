package controllers

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

var _ = Describe("Watching the referenced Secrets", func() {
	It("watches Secret metadata only where a DKMContainer is, hears a bind Secret's change there, and stops with the last DKMContainer", func(ctx context.Context) {
		f := newFixture(ctx)
		// A namespace without DKMContainers, with a Secret of its own.
		elsewhere := newFixture(ctx).ns
		obj := f.dkm("sw", f.path("sw"))
		obj.Spec.Directory.BindSecretRef.Name = "missing" // never binds: AD is not involved
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		DeferCleanup(func(ctx context.Context) { _ = k8sClient.Delete(ctx, obj) })

		r := &DKMContainerReconciler{Client: k8sClient, secrets: newSecretCaches(cfg, cache.Options{Scheme: scheme})}
		r.secrets.watch = func(cache.Cache) error { return nil }
		cctx, cancel := context.WithCancel(ctx)
		DeferCleanup(cancel)
		// Asked for before the caches start: started with them.
		r.watchSecretsOf(ctx, f.ns)
		go func() { _ = r.secrets.Start(cctx) }()

		var secrets client.Reader
		Eventually(func() (err error) { secrets, err = r.secrets.reader(ctx, f.ns); return err }, eventually).Should(Succeed())
		Expect(r.secrets.namespaces()).To(ConsistOf(f.ns), "a namespace without DKMContainers is not watched")
		bind := secretMetadata()
		Expect(secrets.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "bind"}, bind)).To(Succeed())
		Expect(bind.Annotations).To(BeEmpty())
		Expect(bind.ManagedFields).To(BeEmpty())
		Expect(secrets.Get(ctx, client.ObjectKey{Namespace: elsewhere, Name: "bind"}, secretMetadata())).NotTo(Succeed(),
			"another namespace's Secrets are not cached")

		// A change of the bind Secret reaches the cache (and from it the reconciler's queue).
		before := bind.ResourceVersion
		f.secret(ctx, "bind", map[string][]byte{BindUsernameKey: []byte("someone"), BindPasswordKey: []byte("Else!Passw0rd")})
		Eventually(func() (string, error) {
			cur := secretMetadata()
			err := secrets.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "bind"}, cur)
			return cur.ResourceVersion, err
		}, eventually).ShouldNot(Equal(before))

		// Kept while a DKMContainer is there; a namespace that has none is let go.
		Expect(r.releaseSecretsOf(ctx, f.ns)).To(Succeed())
		Expect(r.secrets.namespaces()).To(ConsistOf(f.ns))
		r.watchSecretsOf(ctx, elsewhere)
		Expect(r.secrets.namespaces()).To(ConsistOf(f.ns, elsewhere))
		Expect(r.releaseSecretsOf(ctx, elsewhere)).To(Succeed())
		Expect(r.secrets.namespaces()).To(ConsistOf(f.ns))
	})
})
