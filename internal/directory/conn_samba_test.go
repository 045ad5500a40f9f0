package directory

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

func TestWrongPasswordIsTerminal(t *testing.T) {
	dc := needDC(t)
	const wrong = "Wr0ng-Secret-Pa55word"
	var mu sync.Mutex
	results := map[string]int{}
	cfg := adminConfig(dc)
	cfg.Password = wrong
	// Two URLs of the same DC: a bad password must not be tried on the next one.
	cfg.URLs = []string{dc.URL, dc.StartTLSURL}
	c := newTestClient(t, cfg, WithObserver(func(op, result string) {
		mu.Lock()
		results[op+" "+result]++
		mu.Unlock()
	}))
	_, err := c.Observe(testCtx(t), "CN=System,"+dc.BaseDN)
	if KindOf(err) != KindInvalidCredentials || IsTransient(err) {
		t.Fatalf("wrong password: %v, want invalid credentials", err)
	}
	t.Logf("wrong password: %v", err)
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), "Secret-Pa55") {
		t.Errorf("the password leaked into the error: %v", err)
	}
	if n := c.Ops()["bind"]; n != 1 {
		t.Errorf("%d binds with a wrong password, want 1 (no retry on the next URL)", n)
	}
	// Asked again at once, the client answers from memory instead of binding again (lockout).
	if _, again := c.Observe(testCtx(t), "CN=System,"+dc.BaseDN); KindOf(again) != KindInvalidCredentials || c.Ops()["bind"] != 1 {
		t.Errorf("second call: %v after %d binds, want the remembered failure", again, c.Ops()["bind"])
	}
	mu.Lock()
	defer mu.Unlock()
	if results["bind invalid_credentials"] != 1 || results["dial ok"] != 1 {
		t.Errorf("observer saw %v", results)
	}
}

func TestFailoverToTheNextURL(t *testing.T) {
	dc := needDC(t)
	cfg := adminConfig(dc)
	// Port 1 on 127.0.0.1: nothing listens, the connection is refused at once.
	cfg.URLs = []string{"ldaps://127.0.0.1:1", dc.URL}
	c := newTestClient(t, cfg)
	obs, err := c.Observe(testCtx(t), "CN=System,"+dc.BaseDN)
	if err != nil || !obs.Exists {
		t.Fatalf("Observe with the first DC down: %+v, %v", obs, err)
	}
	if c.Endpoint() != dc.URL || c.Ops()["dial"] != 2 || c.Ops()["bind"] != 1 {
		t.Errorf("endpoint %q, ops %v", c.Endpoint(), c.Ops())
	}
	// All URLs down: transient, naming each.
	cfg.URLs = []string{"ldaps://127.0.0.1:1", "ldap://127.0.0.1:2"}
	c = newTestClient(t, cfg)
	_, err = c.Observe(testCtx(t), "CN=System,"+dc.BaseDN)
	if !IsTransient(err) || !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "127.0.0.1:2") {
		t.Errorf("all DCs down: %v", err)
	}
}

// hungServer accepts TCP connections and never answers, like a DC that is wedged.
func hungServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

func TestFailoverPastHungDCs(t *testing.T) {
	dc := needDC(t)
	cfg := adminConfig(dc)
	// A wedged DC over LDAPS stalls the TLS handshake (DialTimeout); one over plain LDAP
	// accepts the bind request and never answers (OpTimeout). Both are skipped.
	cfg.URLs = []string{"ldaps://" + hungServer(t), "ldap://" + hungServer(t), dc.URL}
	cfg.AllowPlainLDAP = true
	// OpTimeout bounds the real DC's operations too: under the race detector on two busy cores
	// a search of it once took longer than 500 ms (CI, session 5), so it is generous here.
	cfg.DialTimeout, cfg.OpTimeout = 300*time.Millisecond, 2*time.Second
	var mu sync.Mutex
	var seen []string
	c := newTestClient(t, cfg, WithObserver(func(op, result string) {
		mu.Lock()
		seen = append(seen, op+" "+result)
		mu.Unlock()
	}))
	start := time.Now()
	obs, err := c.Observe(testCtx(t), "CN=System,"+dc.BaseDN)
	elapsed := time.Since(start)
	if err != nil || !obs.Exists {
		t.Fatalf("Observe past two hung DCs: %+v, %v", obs, err)
	}
	t.Logf("failover past two hung DCs took %s: %v", elapsed.Round(time.Millisecond), seen)
	// Both hung DCs were waited for (their timeouts, not an early error); how long the real DC
	// then took is not this test's business (timings belong in benchmarks).
	if elapsed < cfg.DialTimeout+cfg.OpTimeout {
		t.Errorf("took %s, less than DialTimeout + OpTimeout: a hung DC was not waited for", elapsed)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"dial transient", "dial ok", "bind transient", "dial ok", "bind ok", "search ok"}
	if !slices.Equal(seen, want) {
		t.Errorf("observer saw %q, want %q", seen, want)
	}
}

func TestDCRestartIsTransient(t *testing.T) {
	needDC(t) // the shared DC proves Samba works; this test stops a DC of its own
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dc, err := testenv.StartDC(ctx, testenv.DCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	c := newTestClient(t, adminConfig(dc))
	base := "CN=System," + dc.BaseDN
	if _, err := c.Observe(ctx, base); err != nil {
		t.Fatal(err)
	}
	if err := dc.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err = c.Observe(ctx, base)
	if !IsTransient(err) {
		t.Fatalf("DC stopped: %v, want a transient error", err)
	}
	t.Logf("DC stopped: %v", err)
	if err := dc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if obs, err := c.Observe(ctx, base); err != nil || !obs.Exists {
		t.Fatalf("after the DC came back, the same client: %+v, %v", obs, err)
	}
	if c.Ops()["bind"] != 2 {
		t.Errorf("binds = %d, want 2 (one per connection)", c.Ops()["bind"])
	}
}

func TestBadCAIsTerminal(t *testing.T) {
	dc := needDC(t)
	wrong, err := testenv.NewCA("not the DC's CA")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		url  string
		ca   []byte
	}{
		{"ldaps, other CA", dc.URL, wrong.CertPEM},
		{"StartTLS, other CA", dc.StartTLSURL, wrong.CertPEM},
		{"ldaps, system roots", dc.URL, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := adminConfig(dc)
			cfg.URLs, cfg.CAPEM = []string{tc.url}, tc.ca
			c := newTestClient(t, cfg)
			_, err := c.Observe(testCtx(t), "CN=System,"+dc.BaseDN)
			if KindOf(err) != KindTLS || IsTransient(err) || !strings.Contains(err.Error(), "caBundleSecretRef") {
				t.Fatalf("%v, want a terminal TLS error naming caBundleSecretRef", err)
			}
			t.Logf("%v", err)
			if c.Ops()["bind"] != 0 {
				t.Error("bound over an unverified connection")
			}
		})
	}
}

func TestStartTLSAndPlainLDAP(t *testing.T) {
	dc := needDC(t)
	cfg := adminConfig(dc)
	cfg.URLs = []string{dc.StartTLSURL}
	c := newTestClient(t, cfg)
	if _, err := c.Observe(testCtx(t), "CN=System,"+dc.BaseDN); err != nil {
		t.Fatalf("StartTLS: %v", err)
	}
	if c.Ops()["starttls"] != 1 {
		t.Errorf("ops %v, want one StartTLS", c.Ops())
	}
	// Plain LDAP, explicitly allowed: Samba itself refuses a simple bind without TLS.
	cfg.AllowPlainLDAP = true
	c = newTestClient(t, cfg)
	_, err := c.Observe(testCtx(t), "CN=System,"+dc.BaseDN)
	t.Logf("plain LDAP simple bind: %v", err)
	if err == nil || IsTransient(err) || c.Ops()["starttls"] != 0 {
		t.Errorf("plain bind: %v (ops %v), want Samba's terminal refusal without StartTLS", err, c.Ops())
	}
}

func TestBindForms(t *testing.T) {
	dc := needDC(t)
	u := createUser(t, dc, "bind")
	for _, name := range []string{u.UPN(dc), u.DownLevel(dc), u.DN} {
		c := newTestClient(t, configAs(dc, name, u.Password))
		if _, err := c.Observe(testCtx(t), "CN=System,"+dc.BaseDN); err != nil {
			t.Errorf("bind as %s: %v", name, err)
		}
	}
}

func TestConcurrentCallsShareOneConnection(t *testing.T) {
	f := newDKMFixture(t)
	ctx := testCtx(t)
	c := newTestClient(t, adminConfig(f.dc))
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			obs, err := c.Observe(ctx, f.dn)
			if err == nil && !obs.Exists {
				err = errors.New("container not found")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	ops := c.Ops()
	if ops["dial"] != 1 || ops["bind"] != 1 || ops["search"] != 32 {
		t.Errorf("ops = %v, want 1 dial, 1 bind, 32 searches", ops)
	}
}

func TestCanceledContext(t *testing.T) {
	dc := needDC(t)
	c := newTestClient(t, adminConfig(dc))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Observe(ctx, "CN=System,"+dc.BaseDN); !IsTransient(err) || !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: %v", err)
	}
	// The client still works with a live context.
	if _, err := c.Observe(testCtx(t), "CN=System,"+dc.BaseDN); err != nil {
		t.Error(err)
	}
}
