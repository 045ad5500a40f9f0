package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Pair is two Samba AD DCs of the template's domain that replicate with each other over DRS on
// loopback: DC1 (the template's DC, the domain's PDC emulator) and DC2 (joined to it once, when
// the pair template was built). Automatic replication is off, so a write on one DC stays missing
// on the other until the test calls Replicate: lag is deterministic. Both DCs' certificates are
// signed by one test CA (CAPEM), so a client verifies either DC with one bundle.
type Pair struct {
	DC1, DC2 *DC
	// CAPEM is the CA that signed both DCs' certificates; CAFile holds it on disk.
	CAPEM  []byte
	CAFile string

	dir string
}

// PairOptions tune StartPair. The zero value is the common case.
type PairOptions struct {
	// ReadyTimeout bounds how long StartPair waits for each DC's LDAPS to accept a bind
	// (default 60s).
	ReadyTimeout time.Duration
}

// pairServices are what replication needs: RPC (DRSUAPI), the replication and topology
// services, and a KDC on each DC, since replication authenticates with Kerberos only.
const pairServices = "ldap, rpc, drepl, kcc, kdc"

// pairPorts are RPC's endpoint mapper (DRSUAPI connections start there) and the KDC: a pair's
// DC is ready only when they accept connections too, since samba opens them after LDAP.
var pairPorts = []string{"135", "88"}

// manualReplication turns automatic replication off (an hour between runs, longer than any
// test), so only Replicate moves changes between the DCs.
const manualReplication = `	dreplsrv:notify_interval = 3600
	dreplsrv:periodic_interval = 3600
	dreplsrv:periodic_startup_interval = 3600
`

// StartPair copies the pair template (built once by hack/samba-dc.sh pair-template) to two free
// loopback addresses, with a hosts map of its own served by nss_wrapper (no /etc/hosts edits, so
// several pairs run at once) and a krb5.conf per DC, and starts both DCs. Call Close when done.
func StartPair(ctx context.Context, opts PairOptions) (*Pair, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	tmpl, err := pairTemplate(ctx, root)
	if err != nil {
		return nil, err
	}
	env, err := readEnvFile(filepath.Join(tmpl, "pair.env"))
	if err != nil {
		return nil, err
	}
	preload, err := nssWrapperLibrary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "dkm-samba-pair-")
	if err != nil {
		return nil, fmt.Errorf("creating the pair directory: %w", err)
	}
	p := &Pair{dir: dir}
	if err := p.prepare(tmpl, env, preload); err != nil {
		p.Close()
		return nil, err
	}
	if err := p.startBoth(ctx, opts.ReadyTimeout); err != nil {
		p.Close()
		return nil, err
	}
	sid, err := p.DC1.readDomainSID()
	if err != nil {
		p.Close()
		return nil, err
	}
	p.DC1.DomainSID, p.DC2.DomainSID = sid, sid
	return p, nil
}

// pairTemplate returns the pair template directory, building it first if it is missing (about
// 30 s, once per machine and Samba version).
func pairTemplate(ctx context.Context, root string) (string, error) {
	script := filepath.Join(root, "hack", "samba-dc.sh")
	if out, err := exec.CommandContext(ctx, script, "pair-check").Output(); err == nil {
		return strings.TrimSpace(string(out)), nil
	}
	cmd := exec.CommandContext(ctx, script, "pair-template")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("preparing the Samba pair template (hack/samba-dc.sh pair-template): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// nssWrapperLibrary is the nss_wrapper library (Debian's libnss-wrapper) that makes samba and its
// tools resolve the DCs' names from the pair's own hosts map.
func nssWrapperLibrary() (string, error) {
	lib := filepath.Join("/usr/lib", multiarch(), "libnss_wrapper.so")
	if _, err := os.Stat(lib); err != nil {
		return "", fmt.Errorf("nss_wrapper is missing (hack/samba-dc.sh install installs libnss-wrapper): %w", err)
	}
	return lib, nil
}

// prepare claims two addresses, copies the template's DCs and writes the pair's hosts map, the
// DCs' krb5.conf files, TLS files (one CA) and smb.conf files.
func (p *Pair) prepare(tmpl string, env map[string]string, preload string) error {
	ca, err := NewCA("dkm-operator test CA for a DC pair")
	if err != nil {
		return fmt.Errorf("creating the test CA: %w", err)
	}
	p.CAPEM, p.CAFile = ca.CertPEM, filepath.Join(p.dir, "ca.pem")
	if err := os.WriteFile(p.CAFile, ca.CertPEM, 0o644); err != nil {
		return err
	}
	// "dc1" and "dc2": the template's directories and the keys of pair.env (DC1_NAME, ...).
	keys := []string{"dc1", "dc2"}
	hosts := filepath.Join(p.dir, "hosts")
	var hostsMap strings.Builder
	for i, slot := range []**DC{&p.DC1, &p.DC2} {
		addr, lock, err := claimLoopbackAddress("")
		if err != nil {
			return err
		}
		key := strings.ToUpper(keys[i])
		dc := newDC(env, addr, lock, filepath.Join(p.dir, keys[i]), env[key+"_NAME"])
		*slot = dc
		// Replication finds its partner as <NTDS Settings objectGUID>._msdcs.<domain>.
		fmt.Fprintf(&hostsMap, "%s %s %s\n%s %s._msdcs.%s\n", addr, dc.HostName(), strings.ToLower(dc.Name),
			addr, env[key+"_NTDS_GUID"], strings.ToLower(dc.Realm))
	}
	if err := os.WriteFile(hosts, []byte(hostsMap.String()), 0o644); err != nil {
		return err
	}
	for i, dc := range p.DCs() {
		krb5 := filepath.Join(dc.dir, "krb5.conf")
		dc.services, dc.extraConf, dc.readyPorts = pairServices, manualReplication, pairPorts
		dc.env = []string{"KRB5_CONFIG=" + krb5, "LD_PRELOAD=" + preload, "NSS_WRAPPER_HOSTS=" + hosts}
		if err := dc.prepare(filepath.Join(tmpl, keys[i]), ca); err != nil {
			return err
		}
		if err := os.WriteFile(krb5, []byte(p.krb5Conf(dc)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// DCs are DC1 and DC2, in that order.
func (p *Pair) DCs() []*DC { return []*DC{p.DC1, p.DC2} }

// URLs are both DCs' LDAPS URLs, DC1's first: what a DKMContainer's spec.directory.urls lists.
func (p *Pair) URLs() []string { return []string{p.DC1.URL, p.DC2.URL} }

// krb5Conf points a DC at its own KDC first, then its partner's: without a reachable KDC,
// replication fails with NT_STATUS_NO_LOGON_SERVERS.
func (p *Pair) krb5Conf(dc *DC) string {
	return fmt.Sprintf(`[libdefaults]
	default_realm = %s
	dns_lookup_realm = false
	dns_lookup_kdc = false
[realms]
	%s = {
		kdc = %s
		kdc = %s
	}
`, dc.Realm, dc.Realm, dc.Address, p.partner(dc).Address)
}

func (p *Pair) partner(dc *DC) *DC {
	if dc == p.DC1 {
		return p.DC2
	}
	return p.DC1
}

// startBoth starts the two DCs at once, so a pair starts in about the time of one DC.
func (p *Pair) startBoth(ctx context.Context, readyTimeout time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, dc := range p.DCs() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := dc.startFirst(ctx, readyTimeout); err != nil {
				errs[i] = fmt.Errorf("starting %s: %w", dc.Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close stops both DCs and removes everything the pair created.
func (p *Pair) Close() {
	for _, dc := range p.DCs() {
		if dc != nil {
			dc.Close()
		}
	}
	_ = os.RemoveAll(p.dir)
}

// retryableReplication are the errors of a forced replication that a second try cures: after a
// DC restarts, its partner may reuse a dead connection once.
var retryableReplication = []string{"WERR_NETNAME_DELETED", "NT_STATUS_CONNECTION_RESET", "NT_STATUS_CONNECTION_DISCONNECTED", "NT_STATUS_PIPE_DISCONNECTED"}

// Replicate makes to pull the domain partition's changes from from, now (samba-tool drs
// replicate, synchronous), retried up to three times on a stale connection. It fails while
// replication into to is held (WERR_DS_DRA_SINK_DISABLED) or either DC is stopped.
func (p *Pair) Replicate(ctx context.Context, to, from *DC) error {
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		err = p.sambaTool(ctx, to, "drs", "replicate", to.Address, from.Name, to.BaseDN)
		if err == nil || !containsAny(err.Error(), retryableReplication) {
			return err
		}
	}
	return err
}

// HoldReplication stops dc from taking in its partner's changes (DISABLE_INBOUND_REPL on its
// NTDS Settings): even a forced Replicate into dc fails until ReleaseReplication. It survives a
// restart of dc, as in AD.
func (p *Pair) HoldReplication(ctx context.Context, dc *DC) error {
	return p.sambaTool(ctx, dc, "drs", "options", dc.Address, "--dsa-option=+DISABLE_INBOUND_REPL")
}

// ReleaseReplication undoes HoldReplication. Changes then move with the next Replicate.
func (p *Pair) ReleaseReplication(ctx context.Context, dc *DC) error {
	return p.sambaTool(ctx, dc, "drs", "options", dc.Address, "--dsa-option=-DISABLE_INBOUND_REPL")
}

// sambaTool runs samba-tool against dc as Administrator, in dc's environment (its krb5.conf and
// the pair's hosts map) and with dc's smb.conf, which names the workgroup (without it NTLM logs
// on as WORKGROUP and fails). Errors carry samba-tool's output, never the password.
func (p *Pair) sambaTool(ctx context.Context, dc *DC, args ...string) error {
	args = append(args, "-s", filepath.Join(dc.dir, "etc", "smb.conf"), "-U", dc.NetBIOS+`\Administrator%`+dc.AdminPassword)
	cmd := exec.CommandContext(ctx, "/usr/bin/samba-tool", args...)
	// samba-tool needs Debian's python3, which holds the samba bindings.
	cmd.Env = append(append(os.Environ(), dc.env...), "PATH=/usr/sbin:/usr/bin:"+os.Getenv("PATH"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.ReplaceAll(strings.TrimSpace(out.String()), dc.AdminPassword, "***")
		return fmt.Errorf("samba-tool %s on %s: %w: %s", strings.Join(args[:2], " "), dc.Name, err, msg)
	}
	return nil
}

// multiarch is Debian's library directory name for this architecture.
func multiarch() string {
	if runtime.GOARCH == "arm64" {
		return "aarch64-linux-gnu"
	}
	return "x86_64-linux-gnu"
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
