package testenv

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// DC is a real Samba 4 AD domain controller for the throwaway DEMO.LOCAL domain, serving LDAP
// and LDAPS on one loopback address with its own test CA.
type DC struct {
	// Address is the loopback IP the DC listens on, e.g. 127.0.10.1.
	Address string
	// URL is the LDAPS URL of the DC, e.g. ldaps://127.0.10.1:636.
	URL string
	// StartTLSURL is the plain-LDAP URL, for StartTLS.
	StartTLSURL string
	// CAPEM is the PEM bundle of the CA that signed the DC's certificate; CAFile holds it on disk.
	CAPEM  []byte
	CAFile string

	Realm   string // DEMO.LOCAL
	NetBIOS string // DEMO
	BaseDN  string // DC=demo,DC=local
	// DomainSID is read from the domain object at start (it changes with every provision).
	DomainSID string

	// AdminUser is Administrator's user principal name; AdminPassword its password.
	AdminUser     string
	AdminPassword string

	// Name is the DC's NetBIOS host name (the template's, e.g. VM; DC2 for a pair's second DC).
	Name string

	dir  string
	lock *os.File
	// services, extraConf and env are what a pair's DC adds to a lone one: the replication
	// services and their intervals, and the Kerberos and nss_wrapper environment samba runs in.
	services  string
	extraConf string
	env       []string
	// readyPorts are TCP ports that must accept connections, besides LDAPS accepting a bind,
	// before the DC counts as started (a pair's DC opens RPC and its KDC after LDAP).
	readyPorts []string
	// addedAddress records that StartDC put Address on lo, so Close takes it off again.
	addedAddress bool
	mu           sync.Mutex
	process      *Process
}

// DCOptions tune StartDC. The zero value is the common case.
type DCOptions struct {
	// Address pins the loopback address; empty picks a free one from 127.0.10.0/24.
	Address string
	// ReadyTimeout bounds how long StartDC waits for LDAPS to accept a bind (default 60s).
	ReadyTimeout time.Duration
	// OtherDomain starts a DC of a second, separately provisioned domain (OTHER.LOCAL, its own
	// domain SID) instead of DEMO.LOCAL: copies of one template all share one domain SID, so a
	// test that moves keys between domains needs this one.
	OtherDomain bool
}

// StartDC copies the provisioned template domain (built once by hack/samba-dc.sh), gives it a
// TLS identity for a free loopback address and starts Samba on it. The samba process is killed
// if the calling process dies, so a crashed test leaves nothing behind. Call Close when done.
func StartDC(ctx context.Context, opts DCOptions) (*DC, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	tmpl, err := sambaTemplate(ctx, root, opts.OtherDomain)
	if err != nil {
		return nil, err
	}
	addr, lock, err := claimLoopbackAddress(opts.Address)
	if err != nil {
		return nil, err
	}
	env, err := readEnvFile(filepath.Join(tmpl, "fixture.env"))
	if err != nil {
		_ = lock.Close()
		return nil, err
	}
	dir, err := os.MkdirTemp("", "dkm-samba-"+addr+"-")
	if err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("creating the DC directory: %w", err)
	}
	dc := newDC(env, addr, lock, dir, "VM")
	ca, err := NewCA("dkm-operator test CA for " + addr)
	if err != nil {
		dc.Close()
		return nil, fmt.Errorf("creating the test CA: %w", err)
	}
	if err := dc.prepare(tmpl, ca); err != nil {
		dc.Close()
		return nil, err
	}
	if err := dc.startFirst(ctx, opts.ReadyTimeout); err != nil {
		dc.Close()
		return nil, err
	}
	if dc.DomainSID, err = dc.readDomainSID(); err != nil {
		dc.Close()
		return nil, err
	}
	return dc, nil
}

// newDC describes a DC of the template's domain on a claimed address, to live in dir.
func newDC(env map[string]string, addr string, lock *os.File, dir, name string) *DC {
	realm := env["REALM"]
	return &DC{
		Address:       addr,
		URL:           "ldaps://" + addr + ":636",
		StartTLSURL:   "ldap://" + addr + ":389",
		Realm:         realm,
		NetBIOS:       env["DOMAIN"],
		BaseDN:        "DC=" + strings.ReplaceAll(strings.ToLower(realm), ".", ",DC="),
		AdminUser:     "Administrator@" + realm,
		AdminPassword: env["ADMIN_PASSWORD"],
		Name:          name,
		dir:           dir,
		lock:          lock,
		services:      "ldap",
	}
}

// startFirst puts the address on lo and starts samba for the first time.
func (dc *DC) startFirst(ctx context.Context, readyTimeout time.Duration) error {
	var err error
	if dc.addedAddress, err = ensureOnLoopback(dc.Address); err != nil {
		return err
	}
	if readyTimeout == 0 {
		readyTimeout = 60 * time.Second
	}
	return dc.start(ctx, readyTimeout)
}

// sambaTemplate runs hack/samba-dc.sh template (installs Samba and provisions once) and
// returns the template directory.
func sambaTemplate(ctx context.Context, root string, other bool) (string, error) {
	args := []string{"template"}
	if other {
		args = append(args, "other")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "samba-dc.sh"), args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("preparing the Samba template domain (hack/samba-dc.sh template): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// prepare copies the template into the DC's directory and writes its TLS files (a server
// certificate for its address signed by ca) and smb.conf.
func (dc *DC) prepare(tmpl string, ca *CA) error {
	if err := exec.Command("cp", "-a", tmpl+"/.", dc.dir).Run(); err != nil {
		return fmt.Errorf("copying the Samba template %s: %w", tmpl, err)
	}
	dnsNames := []string{"localhost"}
	if dc.env != nil { // a pair's DC also answers to its host name, which the pair's hosts map resolves
		dnsNames = append(dnsNames, dc.HostName())
	}
	if err := writeTLSFiles(filepath.Join(dc.dir, "tls"), ca, dc.Address, dnsNames...); err != nil {
		return err
	}
	dc.CAPEM, dc.CAFile = ca.CertPEM, filepath.Join(dc.dir, "tls", "ca.pem")
	if err := os.WriteFile(filepath.Join(dc.dir, "etc", "smb.conf"), []byte(dc.smbConf()), 0o644); err != nil {
		return fmt.Errorf("writing smb.conf: %w", err)
	}
	return nil
}

// HostName is the DC's DNS host name, e.g. dc2.demo.local (a pair's hosts map resolves it for
// samba; the operator reaches DCs by IP).
func (dc *DC) HostName() string {
	return strings.ToLower(dc.Name + "." + dc.Realm)
}

// smbConf is the whole configuration of one DC: a lone DC runs LDAP only (no winbindd, kdc,
// smbd), a pair's DCs add what replication needs; bound to its own loopback address, logging
// inside its directory.
func (dc *DC) smbConf() string {
	d := dc.dir
	return fmt.Sprintf(`[global]
	netbios name = %s
	realm = %s
	workgroup = %s
	server role = active directory domain controller
	server services = %s
	interfaces = %s
	bind interfaces only = yes
	private dir = %s/private
	lock directory = %s
	state directory = %s/state
	cache directory = %s/cache
	binddns dir = %s/bind-dns
	pid directory = %s/run
	ncalrpc dir = %s/run/ncalrpc
	log file = %s/log.%%m
	logging = file
	log level = 1
	idmap_ldb:use rfc2307 = yes
	tls enabled = yes
	tls keyfile = %s/tls/key.pem
	tls certfile = %s/tls/cert.pem
	tls cafile = %s/tls/ca.pem
%s`, dc.Name, dc.Realm, dc.NetBIOS, dc.services, dc.Address, d, d, d, d, d, d, d, d, d, d, d, dc.extraConf)
}

// start launches samba in the foreground of a dedicated, locked OS thread whose death (with the
// test process) kills samba through Pdeathsig, then waits until LDAPS accepts the admin's bind.
func (dc *DC) start(ctx context.Context, readyTimeout time.Duration) error {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.process != nil {
		return errors.New("the DC is already running")
	}
	if err := os.MkdirAll(filepath.Join(dc.dir, "run"), 0o755); err != nil {
		return err
	}
	p, err := startSamba(dc.dir, dc.env)
	if err != nil {
		return err
	}
	dc.process = p
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("samba exited during start-up (see %s/log.samba): %v", dc.dir, p.Err())
		}
		err := dc.ready()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("samba on %s not ready after %s: %w", dc.Address, readyTimeout, lastErr)
}

// ready reports whether LDAPS accepts the admin's bind and every port in readyPorts accepts a
// connection.
func (dc *DC) ready() error {
	conn, err := dc.dial()
	if err != nil {
		return err
	}
	conn.Close()
	for _, port := range dc.readyPorts {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(dc.Address, port), time.Second)
		if err != nil {
			return err
		}
		_ = c.Close()
	}
	return nil
}

// Stop stops samba (the data stays, so Start brings the same domain back).
func (dc *DC) Stop() error {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.process == nil {
		return nil
	}
	err := dc.process.Stop(10 * time.Second)
	dc.process = nil
	return err
}

// Start restarts a stopped DC on the same address with the same data.
func (dc *DC) Start(ctx context.Context) error {
	return dc.start(ctx, 60*time.Second)
}

// Close stops samba, removes its directory and frees the loopback address.
func (dc *DC) Close() {
	_ = dc.Stop()
	if dc.dir != "" {
		_ = os.RemoveAll(dc.dir)
	}
	if dc.addedAddress {
		removeFromLoopback(dc.Address)
	}
	if dc.lock != nil {
		_ = dc.lock.Close()
	}
}

// TLSConfig trusts the DC's test CA only.
func (dc *DC) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(dc.CAPEM)
	return &tls.Config{RootCAs: pool, ServerName: dc.Address, MinVersion: tls.VersionTLS12}
}

// Dial opens an LDAPS connection bound as Administrator.
func (dc *DC) Dial() (*ldap.Conn, error) {
	return dc.dial()
}

func (dc *DC) dial() (*ldap.Conn, error) {
	return dc.DialAs(dc.AdminUser, dc.AdminPassword)
}

// DialAs opens an LDAPS connection bound as the given user (UPN, DOMAIN\name or DN).
func (dc *DC) DialAs(user, password string) (*ldap.Conn, error) {
	conn, err := ldap.DialURL(dc.URL, ldap.DialWithTLSConfig(dc.TLSConfig()))
	if err != nil {
		return nil, err
	}
	conn.SetTimeout(10 * time.Second)
	if err := conn.Bind(user, password); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func (dc *DC) readDomainSID() (string, error) {
	conn, err := dc.dial()
	if err != nil {
		return "", err
	}
	defer conn.Close()
	res, err := conn.Search(ldap.NewSearchRequest(dc.BaseDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 10, false, "(objectClass=*)", []string{"objectSid"}, nil))
	if err != nil {
		return "", fmt.Errorf("reading objectSid of %s: %w", dc.BaseDN, err)
	}
	if len(res.Entries) != 1 {
		return "", fmt.Errorf("reading objectSid of %s: %d entries", dc.BaseDN, len(res.Entries))
	}
	return SIDString(res.Entries[0].GetRawAttributeValue("objectSid"))
}

// startSamba runs `samba -i -M single` in its own process group (it forks), killed with the
// calling process.
func startSamba(dir string, env []string) (*Process, error) {
	cmd := exec.Command("samba", "-i", "-M", "single", "--debug-stdout", "-s", filepath.Join(dir, "etc", "smb.conf"))
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	p, err := StartProcess(cmd, filepath.Join(dir, "samba.stdout"), true)
	if err != nil {
		return nil, fmt.Errorf("starting samba (is it installed? hack/samba-dc.sh install): %w", err)
	}
	return p, nil
}

func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env, sc.Err()
}
