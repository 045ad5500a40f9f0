package directory

import (
	"sync"
	"time"
)

// Pool shares one long-lived connection per (URLs, identity, password, CA, options) among
// concurrent reconciles. Clients unused for the idle timeout are dropped from the pool and
// their connection closed on a later Client call; a dropped Client still works (it dials
// again when used), it is just no longer shared.
type Pool struct {
	observer     func(op, result string)
	principalTTL time.Duration
	idleTimeout  time.Duration
	pageSize     uint32
	now          func() time.Time

	mu      sync.Mutex
	clients map[[32]byte]*Client
	closed  bool
}

// PoolOption configures a Pool.
type PoolOption func(*Pool)

// WithObserver receives every LDAP operation's outcome, for metrics: op is dial, starttls,
// bind, search, add, modify or delete; result is "ok" or the error's Kind (e.g. "transient",
// "no_such_object"). It is called synchronously and must be cheap and safe for concurrent use.
func WithObserver(f func(op, result string)) PoolOption {
	return func(p *Pool) { p.observer = f }
}

// WithPrincipalTTL sets how long ResolvePrincipal caches a resolved name (default 5 minutes;
// 0 or less disables the cache).
func WithPrincipalTTL(d time.Duration) PoolOption {
	return func(p *Pool) { p.principalTTL = d }
}

// WithIdleTimeout sets how long an unused Client keeps its connection in the pool
// (default 15 minutes).
func WithIdleTimeout(d time.Duration) PoolOption {
	return func(p *Pool) { p.idleTimeout = d }
}

// DefaultPageSize is the page size of paged searches: AD's default MaxPageSize, the most a
// Windows DC returns for one search request.
const DefaultPageSize = 1000

// WithPageSize sets the page size of paged searches (default DefaultPageSize). A DC returns at
// most its own MaxPageSize per page whatever is asked; tests ask for less to page sooner.
func WithPageSize(n uint32) PoolOption {
	return func(p *Pool) {
		if n > 0 {
			p.pageSize = n
		}
	}
}

// NewPool returns an empty pool.
func NewPool(opts ...PoolOption) *Pool {
	p := &Pool{
		principalTTL: 5 * time.Minute,
		idleTimeout:  15 * time.Minute,
		pageSize:     DefaultPageSize,
		now:          time.Now,
		clients:      map[[32]byte]*Client{},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Client returns the shared Client for cfg. It is cheap: nothing is dialled until the first
// operation. An invalid cfg gives a terminal *Error (KindConfig, or KindTLS for a CA bundle
// without certificates).
func (p *Pool) Client(cfg Config) (*Client, error) {
	s, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	key := cfg.poolKey()
	now := p.now()

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, &Error{Op: "config", Kind: KindConfig, Err: ErrClosed}
	}
	p.sweepLocked(now)
	c := p.clients[key]
	if c == nil {
		c = newClient(p, s)
		p.clients[key] = c
	}
	c.touch(now)
	return c, nil
}

// sweepLocked drops idle clients and closes their connections.
func (p *Pool) sweepLocked(now time.Time) {
	if p.idleTimeout <= 0 {
		return
	}
	for k, c := range p.clients {
		if now.Sub(c.lastUsed()) > p.idleTimeout {
			delete(p.clients, k)
			c.dropConn()
		}
	}
}

// Close closes every connection; Clients from this pool then fail with ErrClosed.
func (p *Pool) Close() {
	p.mu.Lock()
	clients := p.clients
	p.clients = map[[32]byte]*Client{}
	p.closed = true
	p.mu.Unlock()
	for _, c := range clients {
		c.close()
	}
}

func (p *Pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *Pool) observe(op, result string) {
	if p.observer != nil {
		p.observer(op, result)
	}
}
