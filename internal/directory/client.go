package directory

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Client talks to one directory as one identity. It is safe for concurrent use: all callers
// share one connection (go-ldap multiplexes requests on it). The connection is dialled and
// bound lazily; after a network failure it is dropped and the next operation dials again,
// trying the URLs in order from the first and skipping those that fail within DialTimeout.
//
// Retry policy: a search that fails because a reused connection turned out to be dead is
// retried once, at once, on a freshly dialled one (searches are idempotent). Writes are never
// retried here: an add or modify whose answer was lost may have been applied, and only the
// caller can tell by observing again.
type Client struct {
	pool *Pool
	s    *settings
	used atomic.Int64 // unix nanoseconds of the last use, for the pool's idle sweep

	// dialing is a one-slot semaphore: one dial at a time; waiters give up with their ctx.
	dialing chan struct{}

	mu     sync.Mutex
	conn   *ldap.Conn
	connEP string // URL of conn
	closed bool
	// bindErr is a terminal bind failure (a wrong password, a locked-out account, ...),
	// answered without dialling from then on: every bind with a refused password counts
	// towards the account's lockout, so the Client never binds again by itself, however long
	// it lives and whoever asks. Only RetryBind (the caller decided a retry is due) clears it;
	// a new password makes a new Client, so a fix takes effect at once. bindErrAt is when it
	// was remembered.
	bindErr   *Error
	bindErrAt time.Time

	countMu sync.Mutex
	counts  map[string]int

	domainMu sync.Mutex
	domain   *Domain

	principals principalCache
}

// OpCounts counts the LDAP operations a Client sent, by op: dial, starttls, bind, search,
// add, modify, delete. Failed operations count too.
type OpCounts map[string]int

func newClient(p *Pool, s *settings) *Client {
	return &Client{
		pool:       p,
		s:          s,
		dialing:    make(chan struct{}, 1),
		counts:     map[string]int{},
		principals: principalCache{ttl: p.principalTTL, now: p.now},
	}
}

// Ops returns a snapshot of the operation counts.
func (c *Client) Ops() OpCounts {
	c.countMu.Lock()
	defer c.countMu.Unlock()
	out := make(OpCounts, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// Endpoint is the URL of the current connection, or "" when there is none.
func (c *Client) Endpoint() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil || c.conn.IsClosing() {
		return ""
	}
	return c.connEP
}

func (c *Client) touch(now time.Time) { c.used.Store(now.UnixNano()) }

func (c *Client) lastUsed() time.Time { return time.Unix(0, c.used.Load()) }

// count counts op in Ops without reporting it to the observer.
func (c *Client) count(op string) {
	c.countMu.Lock()
	c.counts[op]++
	c.countMu.Unlock()
}

// record counts op and reports its outcome to the pool's observer.
func (c *Client) record(op string, err *Error) {
	c.count(op)
	result := "ok"
	if err != nil {
		result = err.Kind.String()
	}
	c.pool.observe(op, result)
}

// run performs one LDAP request with fn on the shared connection. dn names the object for
// error messages; secrets are redacted from server diagnostics.
func (c *Client) run(ctx context.Context, op, dn string, idempotent bool, secrets [][]byte, fn func(*ldap.Conn) error) error {
	c.touch(c.pool.now())
	for attempt := 0; ; attempt++ {
		conn, fresh, err := c.connect(ctx)
		if err != nil {
			return err
		}
		raw := c.exec(ctx, conn, fn)
		if raw == nil {
			c.record(op, nil)
			return nil
		}
		e := classify(op, dn, raw, secrets...)
		c.record(op, e)
		if connectionBroken(conn, raw) {
			c.drop(conn)
			if idempotent && attempt == 0 && !fresh {
				continue
			}
		}
		return e
	}
}

// exec runs fn and waits for it or for ctx. go-ldap requests take no context; an abandoned
// request still ends within OpTimeout (the connection's request timeout).
func (c *Client) exec(ctx context.Context, conn *ldap.Conn, fn func(*ldap.Conn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- fn(conn) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// connect returns the live connection, dialling one if needed; fresh says it was just dialled.
func (c *Client) connect(ctx context.Context) (conn *ldap.Conn, fresh bool, err error) {
	if conn, err := c.current(); conn != nil || err != nil {
		return conn, false, err
	}
	select {
	case c.dialing <- struct{}{}:
		defer func() { <-c.dialing }()
	case <-ctx.Done():
		return nil, false, classify("dial", strings.Join(c.urls(), " "), ctx.Err())
	}
	// Another caller may have dialled while this one waited.
	if conn, err := c.current(); conn != nil || err != nil {
		return conn, false, err
	}
	conn, ep, derr := c.dialAny(ctx)
	if derr != nil {
		if derr.Op == "bind" && derr.Kind != KindTransient {
			c.mu.Lock()
			c.bindErr, c.bindErrAt = derr, c.pool.now()
			c.mu.Unlock()
		}
		return nil, false, derr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		conn.Close()
		return nil, false, &Error{Op: "dial", Kind: KindConfig, Err: ErrClosed}
	}
	c.conn, c.connEP = conn, ep
	return conn, true, nil
}

func (c *Client) current() (*ldap.Conn, error) {
	poolClosed := c.pool.isClosed()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || poolClosed {
		return nil, &Error{Op: "dial", Kind: KindConfig, Err: ErrClosed}
	}
	if c.conn != nil && !c.conn.IsClosing() {
		return c.conn, nil
	}
	if c.bindErr != nil {
		return nil, c.bindErr
	}
	return nil, nil
}

// RetryBind lets the next operation bind again after a refused bind, if the refusal the Client
// remembers is one the caller saw: remembered at or before seen. A refusal remembered after
// seen (another caller already tried again and was refused again) stays, so callers that saw
// the same refusal cause one more bind between them, not one each.
func (c *Client) RetryBind(seen time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bindErr != nil && !c.bindErrAt.After(seen) {
		c.bindErr, c.bindErrAt = nil, time.Time{}
	}
}

func (c *Client) urls() []string {
	out := make([]string, len(c.s.endpoints))
	for i, ep := range c.s.endpoints {
		out[i] = ep.url
	}
	return out
}

// dialAny dials and binds the endpoints in order and returns the first that works. A bind
// refused for a reason other than the network (wrong password, ...) ends the search at once:
// every DC of the domain would say the same, and retrying could lock the account out.
func (c *Client) dialAny(ctx context.Context) (*ldap.Conn, string, *Error) {
	var errs []*Error
	for _, ep := range c.s.endpoints {
		conn, err := c.dialEndpoint(ctx, ep)
		if err == nil {
			return conn, ep.url, nil
		}
		if err.Op == "bind" && err.Kind != KindTransient {
			return nil, "", err
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, "", joinDialErrors(errs)
}

// joinDialErrors summarises failures on several URLs: the kind is the first terminal one
// (a bad CA on any DC needs a person), else transient.
func joinDialErrors(errs []*Error) *Error {
	if len(errs) == 1 {
		return errs[0]
	}
	out := &Error{Op: "dial", Kind: KindTransient}
	var msgs []string
	for _, e := range errs {
		if out.Kind == KindTransient && e.Kind != KindTransient {
			out.Kind = e.Kind
		}
		msgs = append(msgs, e.Error())
	}
	out.DN = "all directory URLs"
	out.Err = &joinedError{msgs: msgs, errs: errs}
	return out
}

type joinedError struct {
	msgs []string
	errs []*Error
}

func (j *joinedError) Error() string { return strings.Join(j.msgs, "; ") }

func (j *joinedError) Unwrap() []error {
	out := make([]error, len(j.errs))
	for i, e := range j.errs {
		out[i] = e
	}
	return out
}

func (c *Client) dialEndpoint(ctx context.Context, ep endpoint) (*ldap.Conn, *Error) {
	dctx, cancel := context.WithTimeout(ctx, c.s.dialTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(dctx, "tcp", ep.addr)
	if err == nil && ep.ldaps {
		tc := tls.Client(raw, c.s.tlsConfig(ep.host))
		if err = tc.HandshakeContext(dctx); err != nil {
			raw.Close()
		} else {
			raw = tc
		}
	}
	if err != nil {
		e := classify("dial", ep.url, err)
		c.record("dial", e)
		return nil, e
	}
	c.record("dial", nil)

	conn := ldap.NewConn(raw, ep.ldaps)
	conn.Start()
	conn.SetTimeout(c.s.opTimeout)
	if ep.startTLS {
		// go-ldap's StartTLS takes no context: bound it with a deadline on the socket.
		deadline, _ := dctx.Deadline()
		_ = raw.SetDeadline(deadline)
		err := conn.StartTLS(c.s.tlsConfig(ep.host))
		_ = raw.SetDeadline(time.Time{})
		if err != nil {
			conn.Close()
			e := classify("starttls", ep.url, err)
			if e.Kind == KindOther && e.Code != 0 {
				// The server refused the extended operation: it does not offer StartTLS.
				e.Kind = KindConfig
				e.Err = fmt.Errorf("the server does not offer StartTLS; use ldaps:// (plain LDAP is refused unless explicitly allowed): %w", e.Err)
			}
			c.record("starttls", e)
			return nil, e
		}
		c.record("starttls", nil)
	}
	password := []byte(c.s.password)
	bindErr := c.exec(ctx, conn, func(conn *ldap.Conn) error { return conn.Bind(c.s.username, c.s.password) })
	if bindErr != nil {
		conn.Close()
		e := classify("bind", c.s.username, bindErr, password)
		if e.Kind == KindTransient {
			e.DN = c.s.username + " at " + ep.url
		}
		c.record("bind", e)
		return nil, e
	}
	c.record("bind", nil)
	return conn, nil
}

// drop forgets conn (if it is still the current one) and closes it.
func (c *Client) drop(conn *ldap.Conn) {
	c.mu.Lock()
	if c.conn == conn {
		c.conn, c.connEP = nil, ""
	}
	c.mu.Unlock()
	conn.Close()
}

// dropConn closes the current connection; the next operation dials again.
func (c *Client) dropConn() {
	c.mu.Lock()
	conn := c.conn
	c.conn, c.connEP = nil, ""
	c.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

// close closes the connection for good.
func (c *Client) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.dropConn()
}

// search runs one search to its end (idempotent: retried once, from its first page, on a dead
// reused connection: a paging cookie belongs to the connection).
func (c *Client) search(ctx context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	var res *ldap.SearchResult
	err := c.run(ctx, "search", req.BaseDN, true, nil, func(conn *ldap.Conn) error {
		r, err := c.searchPages(conn, req)
		res = r
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// OpSearchPage counts, in Ops, the pages of paged searches the DC answered.
const OpSearchPage = "search page"

// searchPages reads every entry a search matches. A one-level or subtree search asks for pages
// (the simple paged results control, RFC 2696) and follows the cookie to the last one: a DC
// answers a search that matches more entries than its MaxPageSize (1,000 by default on Windows)
// without paging with sizeLimitExceeded (KindSizeLimit), so a container with about a thousand
// key versions could not be read. Each page is one request under OpTimeout.
func (c *Client) searchPages(conn *ldap.Conn, req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	if req.Scope == ldap.ScopeBaseObject {
		return conn.Search(req)
	}
	paging := ldap.NewControlPaging(c.pool.pageSize)
	paged := *req
	paged.Controls = append(slices.Clone(req.Controls), paging)
	out := &ldap.SearchResult{}
	for {
		page, err := conn.Search(&paged)
		if page != nil {
			out.Entries = append(out.Entries, page.Entries...)
			out.Referrals = append(out.Referrals, page.Referrals...)
			out.Controls = page.Controls
		}
		if err != nil {
			return out, err
		}
		next, _ := ldap.FindControl(page.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
		if next == nil {
			return out, nil // the DC did not page: this was all
		}
		c.count(OpSearchPage)
		if len(next.Cookie) == 0 {
			return out, nil
		}
		paging.SetCookie(next.Cookie)
	}
}

// sdFlagsDACL is the SD flags control asking for (or writing) the DACL only: never the
// owner, group or SACL.
func sdFlagsDACL() ldap.Control {
	return &ldap.ControlMicrosoftSDFlags{Criticality: true, ControlValue: 0x4}
}
