package directory

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config says how to reach AD and as whom.
type Config struct {
	// URLs are ldaps://host[:636] or ldap://host[:389] domain controllers, tried in order.
	URLs []string
	// Username is a UPN (user@realm), a down-level name (DOMAIN\name) or a DN.
	Username string
	Password string
	// CAPEM is the PEM bundle of trusted CAs; nil means the system roots.
	CAPEM []byte
	// AllowPlainLDAP lets ldap:// URLs be used without TLS (the password then crosses the
	// network in clear text). Without it, an ldap:// URL always upgrades with StartTLS.
	AllowPlainLDAP bool
	// DialTimeout bounds connecting, the TLS handshake and StartTLS (default 5s).
	DialTimeout time.Duration
	// OpTimeout bounds every LDAP operation, the bind included (default 15s).
	OpTimeout time.Duration
}

const (
	defaultDialTimeout = 5 * time.Second
	defaultOpTimeout   = 15 * time.Second
)

// endpoint is one validated URL.
type endpoint struct {
	url      string // as configured, for messages
	host     string // TLS ServerName
	addr     string // host:port to dial
	ldaps    bool   // TLS from the first byte
	startTLS bool   // ldap:// upgraded with StartTLS
}

// settings is a validated Config with defaults applied.
type settings struct {
	endpoints   []endpoint
	username    string
	password    string
	roots       *x509.CertPool // nil: system roots
	dialTimeout time.Duration
	opTimeout   time.Duration
}

// validate checks cfg without touching the network. Its errors are terminal (KindConfig, or
// KindTLS for a CA bundle without certificates).
func (cfg Config) validate() (*settings, error) {
	s := &settings{
		username:    cfg.Username,
		password:    cfg.Password,
		dialTimeout: cfg.DialTimeout,
		opTimeout:   cfg.OpTimeout,
	}
	if len(cfg.URLs) == 0 {
		return nil, configError("no directory URLs")
	}
	for _, raw := range cfg.URLs {
		ep, err := parseEndpoint(raw, cfg.AllowPlainLDAP)
		if err != nil {
			return nil, err
		}
		s.endpoints = append(s.endpoints, ep)
	}
	if strings.TrimSpace(cfg.Username) == "" {
		return nil, configError("no bind username")
	}
	if cfg.Password == "" {
		// An empty password would make the simple bind an unauthenticated one, which AD accepts.
		return nil, configError("empty bind password for %s", cfg.Username)
	}
	if len(cfg.CAPEM) > 0 {
		s.roots = x509.NewCertPool()
		if !s.roots.AppendCertsFromPEM(cfg.CAPEM) {
			return nil, &Error{Op: "config", Kind: KindTLS, Err: fmt.Errorf("the CA bundle holds no PEM certificate")}
		}
	}
	switch {
	case s.dialTimeout < 0 || s.opTimeout < 0:
		return nil, configError("negative timeout")
	case s.dialTimeout == 0:
		s.dialTimeout = defaultDialTimeout
	}
	if s.opTimeout == 0 {
		s.opTimeout = defaultOpTimeout
	}
	return s, nil
}

func parseEndpoint(raw string, allowPlain bool) (endpoint, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return endpoint{}, configError("directory URL %q: %v", raw, err)
	}
	ep := endpoint{url: raw}
	var port string
	switch strings.ToLower(u.Scheme) {
	case "ldaps":
		ep.ldaps, port = true, "636"
	case "ldap":
		ep.startTLS, port = !allowPlain, "389"
	default:
		return endpoint{}, configError("directory URL %q: scheme must be ldaps:// or ldap:// (with StartTLS)", raw)
	}
	if u.User != nil {
		return endpoint{}, configError("directory URL %q: credentials belong in the bind Secret, not the URL", raw)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return endpoint{}, configError("directory URL %q: only scheme, host and port are allowed", raw)
	}
	ep.host = u.Hostname()
	if ep.host == "" {
		return endpoint{}, configError("directory URL %q: no host", raw)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return endpoint{}, configError("directory URL %q: bad port %q", raw, p)
		}
		port = p
	}
	ep.addr = net.JoinHostPort(ep.host, port)
	return ep, nil
}

// poolKey identifies the connection a Config needs. The password is hashed into it (never
// kept as a map key in clear), so a rotated password gets a fresh connection.
func (cfg Config) poolKey() [32]byte {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte(strconv.Itoa(len(cfg.URLs))))
	for _, u := range cfg.URLs {
		field([]byte(u))
	}
	field([]byte(cfg.Username))
	field([]byte(cfg.Password))
	field(cfg.CAPEM)
	field([]byte(fmt.Sprint(cfg.AllowPlainLDAP, cfg.DialTimeout, cfg.OpTimeout)))
	var key [32]byte
	copy(key[:], h.Sum(nil))
	return key
}

// tlsConfig verifies the DC against the configured roots and the URL's host name or IP.
func (s *settings) tlsConfig(host string) *tls.Config {
	return &tls.Config{RootCAs: s.roots, ServerName: host, MinVersion: tls.VersionTLS12}
}
