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
)

// podCaches watches pods only in the namespaces that hold a DKMContainer with spec.replicas:
// one cache per such namespace, started when the projector first needs it there and stopped
// when no DKMContainer there selects pods any more. A cluster's other pods, however many, are
// neither listed nor cached. Each cache keeps pods cut down to what projection reads
// (projectionFields).
type podCaches struct {
	config *rest.Config
	// base has the manager's scheme, REST mapper and HTTP client.
	base cache.Options
	// watch makes the pod controller hear a new namespace's pods.
	watch func(cache.Cache) error

	mu sync.Mutex
	// ctx is the manager's (nil until it started this runnable, as leader).
	ctx  context.Context
	byNS map[string]*namespacePods
}

type namespacePods struct {
	cache  cache.Cache
	cancel context.CancelFunc
	// ready is closed once the cache synced and is watched, or failed (err).
	ready chan struct{}
	err   error
}

// Start records the manager's context; caches are started under it, as leader.
func (c *podCaches) Start(ctx context.Context) error {
	c.mu.Lock()
	c.ctx = ctx
	c.mu.Unlock()
	<-ctx.Done()
	return nil
}

// reader returns the synced pod cache of ns, starting it (and waiting for its sync) when there
// is none yet.
func (c *podCaches) reader(ctx context.Context, ns string) (client.Reader, error) {
	c.mu.Lock()
	np := c.byNS[ns]
	if np == nil {
		if c.ctx == nil {
			c.mu.Unlock()
			return nil, errors.New("the pod caches are not started yet")
		}
		var err error
		if np, err = c.start(ns); err != nil {
			c.mu.Unlock()
			return nil, err
		}
	}
	c.mu.Unlock()
	select {
	case <-np.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return np.cache, np.err
}

// start creates and starts the cache of ns; c.mu is held.
func (c *podCaches) start(ns string) (*namespacePods, error) {
	readOnly := true
	opts := c.base
	opts.DefaultNamespaces = map[string]cache.Config{ns: {}}
	opts.ByObject = map[client.Object]cache.ByObject{
		// Only the projector reads these pods and never writes the copies it gets: the cache
		// hands out the stored (already small) objects instead of deep copies.
		&corev1.Pod{}: {Transform: projectionFields, UnsafeDisableDeepCopy: &readOnly},
	}
	pods, err := cache.New(c.config, opts)
	if err != nil {
		return nil, fmt.Errorf("creating the pod cache of namespace %s: %w", ns, err)
	}
	ctx, cancel := context.WithCancel(c.ctx)
	np := &namespacePods{cache: pods, cancel: cancel, ready: make(chan struct{})}
	if c.byNS == nil {
		c.byNS = map[string]*namespacePods{}
	}
	c.byNS[ns] = np
	go func() { _ = pods.Start(ctx) }()
	go func() {
		np.err = c.sync(ctx, pods)
		close(np.ready)
		if np.err != nil {
			c.stop(ns, np)
		}
	}()
	return np, nil
}

// sync waits for the pod informer of a new cache and hands the cache to the pod controller.
func (c *podCaches) sync(ctx context.Context, pods cache.Cache) error {
	if _, err := pods.GetInformer(ctx, &corev1.Pod{}); err != nil {
		return fmt.Errorf("watching pods: %w", err)
	}
	if !pods.WaitForCacheSync(ctx) {
		return errors.New("the pod cache did not sync")
	}
	return c.watch(pods)
}

// synced returns the cache of ns when it is synced, without starting or waiting for one.
func (c *podCaches) synced(ns string) (client.Reader, bool) {
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
func (c *podCaches) release(ns string) {
	c.mu.Lock()
	np := c.byNS[ns]
	c.mu.Unlock()
	if np != nil {
		c.stop(ns, np)
	}
}

// stop stops np and forgets it, unless ns already has another cache.
func (c *podCaches) stop(ns string, np *namespacePods) {
	c.mu.Lock()
	if c.byNS[ns] == np {
		delete(c.byNS, ns)
	}
	c.mu.Unlock()
	np.cancel()
}

// namespaces returns the namespaces whose pods are watched (for tests and the docs' claims).
func (c *podCaches) namespaces() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.byNS))
	for ns := range c.byNS {
		out = append(out, ns)
	}
	return out
}
