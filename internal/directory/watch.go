package directory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// WatchMode says how changes to a watched DKM container are seen.
type WatchMode int

const (
	// WatchNone: the container is not watched.
	WatchNone WatchMode = iota
	// WatchConnecting: the notification searches are being opened (or reopened after the DC
	// went away); until they are, only the periodic resync sees changes.
	WatchConnecting
	// WatchLive: AD change notification is active; a change is seen within milliseconds.
	WatchLive
	// WatchUnavailable: the DC refused change notification (or the bind); only the periodic
	// resync sees changes.
	WatchUnavailable
)

var watchModeNames = [...]string{"none", "connecting", "notify", "unavailable"}

// String is a stable name, usable as a metric label.
func (m WatchMode) String() string {
	if m >= 0 && int(m) < len(watchModeNames) {
		return watchModeNames[m]
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// WatchModes lists every mode a watched container can be in, for metrics.
var WatchModes = []WatchMode{WatchConnecting, WatchLive, WatchUnavailable}

// WatchState is how changes to one watched container are seen, for its condition message.
type WatchState struct {
	Mode WatchMode
	// Endpoint is the URL of the DC the searches are open on (WatchLive).
	Endpoint string
	// Detail says why notification is not in use, or what it does not cover; empty otherwise.
	Detail string
}

// WatchStats is a snapshot of the whole Watcher, for metrics.
type WatchStats struct {
	// Containers counts the watched containers by mode.
	Containers map[WatchMode]int
	// Searches and Connections are the notification searches and connections open now.
	Searches, Connections int
}

// notifyConn is one bound LDAP connection carrying notification searches (*ldap.Conn).
type notifyConn interface {
	SearchAsync(ctx context.Context, req *ldap.SearchRequest, bufferSize int) ldap.Response
	Search(req *ldap.SearchRequest) (*ldap.SearchResult, error)
	Close() error
}

// watchDialer opens one bound connection as c's identity; endpoint is the URL it reached.
type watchDialer func(ctx context.Context, c *Client) (conn notifyConn, endpoint string, err error)

// WatchOption configures a Watcher.
type WatchOption func(*Watcher)

// WithWatchObserver receives a WatchStats whenever a mode, a search count or the set of watched
// containers changes. It is called synchronously and must be cheap.
func WithWatchObserver(f func(WatchStats)) WatchOption {
	return func(w *Watcher) { w.observer = f }
}

// WithWatchBackoff sets the reconnect backoff: first wait min, doubling to max (default 1s to
// 2m), with ±20% jitter. A DC that refuses notification is asked again after max.
func WithWatchBackoff(min, max time.Duration) WatchOption {
	return func(w *Watcher) { w.backoffMin, w.backoffMax = min, max }
}

func withWatchDialer(d watchDialer) WatchOption {
	return func(w *Watcher) { w.dial = d }
}

// Watcher holds AD change-notification searches (LDAP_SERVER_NOTIFICATION_OID) on the DKM
// containers it is asked to watch and reports, on Events, the key of every watched container
// that changed, or may have changed unseen.
//
// Containers are grouped by connection settings (DC URLs, bind identity, password, CA: what
// Pool shares a Client by). A group holds one subtree search per distinct parent of its
// containers and one on its naming context's Deleted Objects (see planSearches), packed at most
// MaxNotificationsPerConn to a connection of its own, dialled and bound like the reconciler's
// (same URLs in order, TLS and identity). So N containers in one parent on one DC cost two
// searches on one connection, and an idle directory costs no LDAP operation at all.
//
// When a connection fails, the group reconnects with backoff. Each time its searches are
// (re)registered, every container of the group is reported once, so a change made while no
// search was open is caught by a full observe. A bind the DC refuses is never retried by the
// Watcher (retrying could lock the account out); the group stays unavailable until the
// container's settings change. A DC that refuses notification leaves the group unavailable,
// asked again after the maximum backoff; the reconciler's periodic resync covers both.
type Watcher struct {
	pool                   *Pool
	observer               func(WatchStats)
	dial                   watchDialer
	backoffMin, backoffMax time.Duration
	perConn                int
	events                 chan string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	pubMu  sync.Mutex // serialises publish
	mu     sync.Mutex
	groups map[[32]byte]*watchGroup
	keys   map[string]*watchGroup
}

// NewWatcher returns a Watcher whose groups dial through pool's settings and report their LDAP
// operations to pool's observer (op "notify" for each notification search opened). Close it.
func NewWatcher(pool *Pool, opts ...WatchOption) *Watcher {
	w := &Watcher{
		pool:       pool,
		dial:       dialNotify,
		backoffMin: time.Second,
		backoffMax: 2 * time.Minute,
		perConn:    MaxNotificationsPerConn,
		events:     make(chan string, 1024),
		groups:     map[[32]byte]*watchGroup{},
		keys:       map[string]*watchGroup{},
	}
	for _, o := range opts {
		o(w)
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	return w
}

// Events delivers the key (as given to Watch) of each container that changed. A burst of
// changes may deliver a key several times; the consumer (a work queue) coalesces them.
func (w *Watcher) Events() <-chan string { return w.events }

// Watch makes sure the container at containerDN is watched under key with cfg's connection
// settings, and says how its changes are seen now. It is cheap when nothing changed, so the
// reconciler calls it on every pass. A key watched with other settings or another DN moves.
func (w *Watcher) Watch(key string, cfg Config, containerDN string) (WatchState, error) {
	s, err := cfg.validate()
	if err != nil {
		return WatchState{}, err
	}
	dn, err := ParseDN(containerDN)
	if err != nil {
		return WatchState{}, &Error{Op: "notify", DN: containerDN, Kind: KindInvalidDN, Err: err}
	}
	gk := cfg.poolKey()

	w.mu.Lock()
	if w.ctx.Err() != nil {
		w.mu.Unlock()
		return WatchState{}, &Error{Op: "notify", Kind: KindConfig, Err: ErrClosed}
	}
	g := w.keys[key]
	if g != nil && g.key == gk && g.containers[key].EqualFold(dn) {
		st := g.state()
		w.mu.Unlock()
		return st, nil
	}
	if g != nil {
		w.removeLocked(key)
	}
	g = w.groups[gk]
	if g == nil {
		g = w.startGroupLocked(gk, s)
	}
	before := planSearches(g.dnList())
	g.containers[key], g.dns[key] = dn, containerDN
	w.keys[key] = g
	if !slices.Equal(before, planSearches(g.dnList())) {
		g.signalReplan()
	}
	st := g.state()
	w.mu.Unlock()
	w.publish()
	return st, nil
}

// State says how changes to key's container are seen (WatchNone when it is not watched).
func (w *Watcher) State(key string) WatchState {
	w.mu.Lock()
	defer w.mu.Unlock()
	if g := w.keys[key]; g != nil {
		return g.state()
	}
	return WatchState{}
}

// Forget stops watching key's container; a group left without containers closes its
// connections.
func (w *Watcher) Forget(key string) {
	w.mu.Lock()
	if w.keys[key] == nil {
		w.mu.Unlock()
		return
	}
	w.removeLocked(key)
	w.mu.Unlock()
	w.publish()
}

// Close closes every search and connection and waits for the groups to end.
func (w *Watcher) Close() {
	w.cancel()
	w.wg.Wait()
}

// Stats is a snapshot for metrics.
func (w *Watcher) Stats() WatchStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.statsLocked()
}

func (w *Watcher) removeLocked(key string) {
	g := w.keys[key]
	delete(w.keys, key)
	before := planSearches(g.dnList())
	delete(g.containers, key)
	delete(g.dns, key)
	switch {
	case len(g.containers) == 0:
		g.cancel()
		delete(w.groups, g.key)
	case !slices.Equal(before, planSearches(g.dnList())):
		g.signalReplan()
	}
}

func (w *Watcher) startGroupLocked(gk [32]byte, s *settings) *watchGroup {
	ctx, cancel := context.WithCancel(w.ctx)
	g := &watchGroup{
		w:          w,
		key:        gk,
		client:     newClient(w.pool, s),
		cancel:     cancel,
		replan:     make(chan struct{}, 1),
		containers: map[string]*ldap.DN{},
		dns:        map[string]string{},
		mode:       WatchConnecting,
	}
	w.groups[gk] = g
	w.wg.Add(1)
	go g.run(ctx)
	return g
}

func (w *Watcher) statsLocked() WatchStats {
	st := WatchStats{Containers: map[WatchMode]int{}}
	for _, g := range w.groups {
		st.Containers[g.mode] += len(g.containers)
		st.Searches += g.searches
		st.Connections += g.conns
	}
	return st
}

// publish hands the observer a fresh snapshot. Publishers take turns and each reads the
// stats in its turn, so the last one published is never older than the last change.
func (w *Watcher) publish() {
	if w.observer == nil {
		return
	}
	w.pubMu.Lock()
	defer w.pubMu.Unlock()
	w.observer(w.Stats())
}

// send reports a key, waiting for room rather than dropping it: a dropped key is a missed
// tamper.
func (w *Watcher) send(key string) {
	select {
	case w.events <- key:
	case <-w.ctx.Done():
	}
}

// watchGroup is the searches and connections of one set of connection settings.
type watchGroup struct {
	w      *Watcher
	key    [32]byte
	client *Client // private: never swept from the pool, so an idle hour does not close it
	cancel context.CancelFunc
	replan chan struct{}

	// Guarded by w.mu.
	containers  map[string]*ldap.DN
	dns         map[string]string
	mode        WatchMode
	endpoint    string
	detail      string
	searches    int
	conns       int
	skipDeleted string // why the Deleted Objects search is left out; "" while it is used
}

func (g *watchGroup) dnList() []string {
	out := make([]string, 0, len(g.dns))
	for _, dn := range g.dns {
		out = append(out, dn)
	}
	return out
}

func (g *watchGroup) state() WatchState {
	st := WatchState{Mode: g.mode, Detail: g.detail}
	if g.mode == WatchLive {
		st.Endpoint = g.endpoint
		if g.skipDeleted != "" {
			st.Detail = "deletions below the container are seen at the resync only: " + g.skipDeleted
		}
	}
	return st
}

func (g *watchGroup) signalReplan() {
	select {
	case g.replan <- struct{}{}:
	default:
	}
}

// plan is the group's current searches. A replan signal sent before is stale: signals are
// sent under the same lock.
func (g *watchGroup) plan() []notifySearch {
	g.w.mu.Lock()
	defer g.w.mu.Unlock()
	select {
	case <-g.replan:
	default:
	}
	plan := planSearches(g.dnList())
	if g.skipDeleted != "" {
		plan = slices.DeleteFunc(plan, func(s notifySearch) bool { return s.deleted })
	}
	return plan
}

// errReplan ends a session whose plan changed.
var errReplan = errors.New("the watched containers changed")

// searchEnd is a notification search that ended: the DC refused or closed it.
type searchEnd struct {
	search notifySearch
	err    error
}

// run keeps the group's searches open until its context ends.
func (g *watchGroup) run(ctx context.Context) {
	defer g.w.wg.Done()
	backoff := g.w.backoffMin
	for ctx.Err() == nil {
		end, wentLive := g.session(ctx, g.plan())
		if ctx.Err() != nil {
			return
		}
		if end.err == errReplan {
			continue
		}
		if end.search.deleted && !IsTransient(end.err) {
			// The identity cannot watch Deleted Objects (by default only administrators may):
			// watch the rest, and let the resync see deletions.
			g.setSkipDeleted(end.err.Error())
			continue
		}
		if wentLive {
			backoff = g.w.backoffMin
		}
		mode, detail := endMode(end)
		g.setMode(mode, detail)
		wait := jitter(backoff)
		switch {
		case refusedBind(end.err):
			wait = -1 // until the settings change, which makes a new group
		case mode == WatchUnavailable:
			wait = g.w.backoffMax
		default:
			backoff = min(2*backoff, g.w.backoffMax)
		}
		if !g.sleep(ctx, wait) {
			return
		}
	}
}

// sleep waits d (forever when d < 0) or until the plan changes; false when ctx ended.
func (g *watchGroup) sleep(ctx context.Context, d time.Duration) bool {
	var timer <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-timer:
	case <-g.replan:
	case <-ctx.Done():
		return false
	}
	return true
}

// session dials, opens the plan's searches and waits until one ends, the plan changes or ctx
// ends.
func (g *watchGroup) session(ctx context.Context, plan []notifySearch) (end searchEnd, wentLive bool) {
	if len(plan) == 0 {
		select {
		case <-g.replan:
			return searchEnd{err: errReplan}, false
		case <-ctx.Done():
			return searchEnd{err: ctx.Err()}, false
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var conns []notifyConn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
		g.setOpen(0, 0)
	}()
	endpoint := ""
	for len(conns)*g.w.perConn < len(plan) {
		conn, ep, err := g.w.dial(sctx, g.client)
		if err != nil {
			return searchEnd{err: err}, false
		}
		conns, endpoint = append(conns, conn), ep
	}
	ended := make(chan searchEnd, len(plan))
	for i, s := range plan {
		r := conns[i/g.w.perConn].SearchAsync(sctx, s.request(), 64)
		g.client.record("notify", nil)
		go g.consume(sctx, s, r, ended)
	}
	// A search on each connection answered after the notification requests: they are
	// registered (or refused) by now, so a change from here on is delivered, and the full
	// observe the keys get next misses nothing.
	for _, c := range conns {
		if err := g.barrier(sctx, c); err != nil {
			return searchEnd{err: err}, false
		}
	}
	select {
	case end := <-ended:
		return end, false
	default:
	}
	g.goLive(endpoint, len(plan), len(conns))
	select {
	case end := <-ended:
		return end, true
	case <-g.replan:
		return searchEnd{err: errReplan}, true
	case <-ctx.Done():
		return searchEnd{err: ctx.Err()}, true
	}
}

// barrier reads the rootDSE on conn (bounded by the operation timeout).
func (g *watchGroup) barrier(ctx context.Context, conn notifyConn) error {
	ctx, cancel := context.WithTimeout(ctx, g.client.s.opTimeout)
	defer cancel()
	req := ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"1.1"}, nil)
	err := g.client.exec(ctx, nil, func(*ldap.Conn) error { _, err := conn.Search(req); return err })
	e := classify("search", "rootDSE", err)
	g.client.record("search", e)
	if e != nil {
		return e
	}
	return nil
}

// consume turns each entry of one search into events, and reports the search's end.
func (g *watchGroup) consume(ctx context.Context, s notifySearch, r ldap.Response, ended chan<- searchEnd) {
	for r.Next() {
		if e := r.Entry(); e != nil {
			g.dispatch(e)
		}
	}
	err := r.Err()
	if ctx.Err() != nil {
		return
	}
	if err == nil {
		err = errors.New("the DC ended the notification search")
	}
	ended <- searchEnd{search: s, err: classify("notify", s.base, err)}
}

// dispatch reports the containers a notification entry falls in.
func (g *watchGroup) dispatch(e *ldap.Entry) {
	dn, ok := changedDN(e)
	if !ok {
		return
	}
	var keys []string
	g.w.mu.Lock()
	for key, c := range g.containers {
		if within(dn, c) {
			keys = append(keys, key)
		}
	}
	g.w.mu.Unlock()
	for _, k := range keys {
		g.w.send(k)
	}
}

// goLive marks the group live and reports every container once: whatever changed while no
// search was open is seen by the observe that follows.
func (g *watchGroup) goLive(endpoint string, searches, conns int) {
	g.update(func() bool {
		g.mode, g.endpoint, g.detail = WatchLive, endpoint, ""
		g.searches, g.conns = searches, conns
		return true
	})
}

// setMode records a mode that is not live; on a change of mode every container is reported,
// so its condition says how changes are seen now.
func (g *watchGroup) setMode(mode WatchMode, detail string) {
	g.update(func() bool {
		changed := g.mode != mode
		g.mode, g.detail = mode, detail
		return changed
	})
}

func (g *watchGroup) setOpen(searches, conns int) {
	g.update(func() bool {
		g.searches, g.conns = searches, conns
		return false
	})
}

// update changes the group under the lock, publishes the stats, and reports every container
// when change says so.
func (g *watchGroup) update(change func() (reportAll bool)) {
	g.w.mu.Lock()
	var keys []string
	if change() {
		for k := range g.containers {
			keys = append(keys, k)
		}
	}
	g.w.mu.Unlock()
	g.w.publish()
	for _, k := range keys {
		g.w.send(k)
	}
}

func (g *watchGroup) setSkipDeleted(why string) {
	g.w.mu.Lock()
	defer g.w.mu.Unlock()
	g.skipDeleted = why
}

// endMode is the mode a session's end leaves the group in, and why.
func endMode(end searchEnd) (WatchMode, string) {
	switch k := KindOf(end.err); {
	case refusedBind(end.err), k == KindTLS, k == KindConfig:
		return WatchUnavailable, end.err.Error()
	case end.search.base != "" && k != KindTransient:
		return WatchUnavailable, fmt.Sprintf("the DC refused change notification on %s: %v", end.search.base, end.err)
	}
	return WatchConnecting, "reconnecting after: " + end.err.Error()
}

// refusedBind reports a bind the DC refused for a reason other than the network.
func refusedBind(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Op == "bind" && e.Kind != KindTransient
}

// dialNotify dials and binds like c's operations do, on a connection of its own without a
// request timeout (a notification search stays open for as long as the connection).
func dialNotify(ctx context.Context, c *Client) (notifyConn, string, error) {
	conn, ep, err := c.dialAny(ctx)
	if err != nil {
		return nil, "", err
	}
	conn.SetTimeout(0)
	return conn, ep, nil
}

// jitter spreads d by ±20%, so groups on one DC do not reconnect in lockstep.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// String describes a WatchState for humans.
func (st WatchState) String() string {
	var b strings.Builder
	b.WriteString(st.Mode.String())
	if st.Endpoint != "" {
		b.WriteString(" on " + st.Endpoint)
	}
	if st.Detail != "" {
		b.WriteString(" (" + st.Detail + ")")
	}
	return b.String()
}
