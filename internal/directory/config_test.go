package directory

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	return Config{URLs: []string{"ldaps://dc1.demo.local"}, Username: `DEMO\svc`, Password: "pw"}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		kind   Kind   // 0 (KindOther) means valid
		msg    string // part of the error message
	}{
		{"valid", func(*Config) {}, 0, ""},
		{"no URLs", func(c *Config) { c.URLs = nil }, KindConfig, "no directory URLs"},
		{"http scheme", func(c *Config) { c.URLs = []string{"https://dc1"} }, KindConfig, "scheme must be ldaps://"},
		{"ldapi scheme", func(c *Config) { c.URLs = []string{"ldapi:///run/x"} }, KindConfig, "scheme"},
		{"no scheme", func(c *Config) { c.URLs = []string{"dc1.demo.local:636"} }, KindConfig, ""},
		{"no host", func(c *Config) { c.URLs = []string{"ldaps://:636"} }, KindConfig, "no host"},
		{"bad port", func(c *Config) { c.URLs = []string{"ldaps://dc1:99999"} }, KindConfig, "bad port"},
		{"path", func(c *Config) { c.URLs = []string{"ldaps://dc1/DC=demo,DC=local"} }, KindConfig, "only scheme, host and port"},
		{"credentials in URL", func(c *Config) { c.URLs = []string{"ldaps://u:secret@dc1"} }, KindConfig, "bind Secret"},
		{"second URL bad", func(c *Config) { c.URLs = append(c.URLs, "ftp://x") }, KindConfig, `"ftp://x"`},
		{"no username", func(c *Config) { c.Username = " " }, KindConfig, "no bind username"},
		{"no password", func(c *Config) { c.Password = "" }, KindConfig, "empty bind password"},
		{"CA without certificates", func(c *Config) { c.CAPEM = []byte("not pem") }, KindTLS, "no PEM certificate"},
		{"negative timeout", func(c *Config) { c.OpTimeout = -time.Second }, KindConfig, "negative timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig()
			tc.mutate(&cfg)
			p := NewPool()
			defer p.Close()
			c, err := p.Client(cfg)
			if tc.kind == 0 {
				if err != nil || c == nil {
					t.Fatalf("valid config refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want a %s error", tc.kind)
			}
			if KindOf(err) != tc.kind || IsTransient(err) {
				t.Errorf("kind = %s, want %s: %v", KindOf(err), tc.kind, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("message %q does not contain %q", err, tc.msg)
			}
			if strings.Contains(err.Error(), "secret") && tc.name != "credentials in URL" {
				t.Errorf("message leaks: %q", err)
			}
		})
	}
}

func TestEndpoints(t *testing.T) {
	for _, tc := range []struct {
		url        string
		allowPlain bool
		want       endpoint
	}{
		{"ldaps://dc1.demo.local", false, endpoint{host: "dc1.demo.local", addr: "dc1.demo.local:636", ldaps: true}},
		{"LDAPS://10.0.0.1:3269/", false, endpoint{host: "10.0.0.1", addr: "10.0.0.1:3269", ldaps: true}},
		{"ldap://dc1", false, endpoint{host: "dc1", addr: "dc1:389", startTLS: true}},
		{"ldap://dc1", true, endpoint{host: "dc1", addr: "dc1:389"}},
		{"ldaps://[::1]:636", false, endpoint{host: "::1", addr: "[::1]:636", ldaps: true}},
	} {
		got, err := parseEndpoint(tc.url, tc.allowPlain)
		tc.want.url = tc.url
		if err != nil || got != tc.want {
			t.Errorf("parseEndpoint(%q, %v) = %+v, %v; want %+v", tc.url, tc.allowPlain, got, err, tc.want)
		}
	}
}

func TestPoolSharesClients(t *testing.T) {
	p := NewPool()
	defer p.Close()
	a, _ := p.Client(validConfig())
	b, _ := p.Client(validConfig())
	if a != b {
		t.Error("the same config got two clients")
	}
	other := validConfig()
	other.Password = "rotated"
	c, _ := p.Client(other)
	if c == a {
		t.Error("a rotated password shares the old client")
	}
	withCA := validConfig()
	withCA.URLs = []string{"ldaps://dc1.demo.local", "ldaps://dc2.demo.local"}
	d, _ := p.Client(withCA)
	if d == a {
		t.Error("different URLs share a client")
	}
}

func TestPoolIdleSweepAndClose(t *testing.T) {
	now := time.Unix(1000, 0)
	p := NewPool(WithIdleTimeout(time.Minute))
	p.now = func() time.Time { return now }
	a, _ := p.Client(validConfig())
	now = now.Add(2 * time.Minute)
	b, _ := p.Client(validConfig())
	if a == b {
		t.Error("an idle client was not swept")
	}
	p.Close()
	if _, err := p.Client(validConfig()); !errors.Is(err, ErrClosed) {
		t.Errorf("Client after Close: %v", err)
	}
	if _, err := b.Observe(t.Context(), "CN=x,DC=y"); !errors.Is(err, ErrClosed) {
		t.Errorf("a client of a closed pool still works: %v", err)
	}
}
