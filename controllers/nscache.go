package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// errCachesNotStarted: the manager has not started the namespace caches yet; a namespace asked
// for meanwhile (ensure) is started with them.
var errCachesNotStarted = errors.New("the namespace caches are not started yet")

// namespaceCaches watches one type only in the namespaces that need it: one cache per such
// namespace, started when a controller first needs it there and stopped when nothing there
// needs it any more. The type's objects in other namespaces, however many, are neither listed
// nor cached. The projector watches pods this way (where a DKMContainer selects pods), the
// reconciler the metadata of Secrets (where a DKMContainer is, secretwatch.go).
type namespaceCaches struct {
	config *rest.Config
	// base has the manager's scheme, REST mapper and HTTP client, and the type's settings
	// (transform, deep copies); DefaultNamespaces is set per cache.
	base cache.Options
	// object is the type watched (its informer is made before the cache is handed to watch).
	object client.Object
	// watch makes a controller hear a new namespace's objects.
	watch func(cache.Cache) error

	mu sync.Mutex
	// ctx is the manager's (nil until it started this runnable, as leader).
	ctx  context.Context
	byNS map[string]*namespaceCache
	// pending are the namespaces asked for before the start.
	pending map[string]bool
}

type namespaceCache struct {
	cache  cache.Cache
	cancel context.CancelFunc
	// ready is closed once the cache synced and is watched, or failed (err).
	ready chan struct{}
	err   error
}

// Start records the manager's context and starts the caches asked for before; caches are
// started under it, as leader.
func (c *namespaceCaches) Start(ctx context.Context) error {
	c.mu.Lock()
	c.ctx = ctx
	for ns := range c.pending {
		if _, err := c.start(ns); err != nil {
			logf.FromContext(ctx).Error(err, "starting a namespace cache", "namespace", ns)
		}
	}
	c.pending = nil
	c.mu.Unlock()
	<-ctx.Done()
	return nil
}

// ensure starts the cache of ns when there is none yet, without waiting for its sync. Before
// the start it records ns and returns errCachesNotStarted: Start starts it.
func (c *namespaceCaches) ensure(ns string) (*namespaceCache, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if np := c.byNS[ns]; np != nil {
		return np, nil
	}
	if c.ctx == nil {
		if c.pending == nil {
			c.pending = map[string]bool{}
		}
		c.pending[ns] = true
		return nil, errCachesNotStarted
	}
	return c.start(ns)
}

// reader returns the synced cache of ns, starting it (and waiting for its sync) when there is
// none yet.
func (c *namespaceCaches) reader(ctx context.Context, ns string) (client.Reader, error) {
	np, err := c.ensure(ns)
	if err != nil {
		return nil, err
	}
	select {
	case <-np.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return np.cache, np.err
}

// start creates and starts the cache of ns; c.mu is held.
func (c *namespaceCaches) start(ns string) (*namespaceCache, error) {
	opts := c.base
	opts.DefaultNamespaces = map[string]cache.Config{ns: {}}
	objs, err := cache.New(c.config, opts)
	if err != nil {
		return nil, fmt.Errorf("creating the cache of namespace %s: %w", ns, err)
	}
	ctx, cancel := context.WithCancel(c.ctx)
	np := &namespaceCache{cache: objs, cancel: cancel, ready: make(chan struct{})}
	if c.byNS == nil {
		c.byNS = map[string]*namespaceCache{}
	}
	c.byNS[ns] = np
	go func() { _ = objs.Start(ctx) }()
	go func() {
		np.err = c.sync(ctx, objs)
		close(np.ready)
		if np.err != nil {
			c.stop(ns, np)
		}
	}()
	return np, nil
}

// sync waits for the informer of a new cache and hands the cache to the controller.
func (c *namespaceCaches) sync(ctx context.Context, objs cache.Cache) error {
	if _, err := objs.GetInformer(ctx, c.object); err != nil {
		return fmt.Errorf("watching: %w", err)
	}
	if !objs.WaitForCacheSync(ctx) {
		return errors.New("the namespace cache did not sync")
	}
	return c.watch(objs)
}

// synced returns the cache of ns when it is synced, without starting or waiting for one.
func (c *namespaceCaches) synced(ns string) (client.Reader, bool) {
	c.mu.Lock()
	np := c.byNS[ns]
	c.mu.Unlock()
	if np == nil {
		return nil, false
	}
	select {
	case <-np.ready:
		return np.cache, np.err == nil
	default:
		return nil, false
	}
}

// release stops the cache of ns, if any.
func (c *namespaceCaches) release(ns string) {
	c.mu.Lock()
	np := c.byNS[ns]
	delete(c.pending, ns)
	c.mu.Unlock()
	if np != nil {
		c.stop(ns, np)
	}
}

// stop stops np and forgets it, unless ns already has another cache.
func (c *namespaceCaches) stop(ns string, np *namespaceCache) {
	c.mu.Lock()
	if c.byNS[ns] == np {
		delete(c.byNS, ns)
	}
	c.mu.Unlock()
	np.cancel()
}

// namespaces returns the namespaces watched (for tests and the docs' claims).
func (c *namespaceCaches) namespaces() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.byNS))
	for ns := range c.byNS {
		out = append(out, ns)
	}
	return out
}

// newPodCaches returns the pod caches of the projector: pods cut down to what projection reads
// (projectionFields), where a DKMContainer selects pods.
func newPodCaches(config *rest.Config, base cache.Options) *namespaceCaches {
	readOnly := true
	base.ByObject = map[client.Object]cache.ByObject{
		// Only the projector reads these pods and never writes the copies it gets: the cache
		// hands out the stored (already small) objects instead of deep copies.
		&corev1.Pod{}: {Transform: projectionFields, UnsafeDisableDeepCopy: &readOnly},
	}
	return &namespaceCaches{config: config, base: base, object: &corev1.Pod{}}
}
