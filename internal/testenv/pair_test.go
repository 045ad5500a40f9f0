package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// startPair starts a pair for one test and closes it when the test ends.
func startPair(t *testing.T) *Pair {
	t.Helper()
	p, err := StartPair(context.Background(), PairOptions{})
	if err != nil {
		t.Fatalf("starting the DC pair: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// dialT binds to dc as Administrator for the rest of the test.
func dialT(t *testing.T, dc *DC) *ldap.Conn {
	t.Helper()
	conn, err := dc.Dial()
	if err != nil {
		t.Fatalf("bind to %s: %v", dc.Name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// addContact adds a contact named cn under CN=Users on dc and returns its DN.
func addContact(t *testing.T, dc *DC, cn string) string {
	t.Helper()
	dn := fmt.Sprintf("CN=%s,CN=Users,%s", cn, dc.BaseDN)
	add := ldap.NewAddRequest(dn, nil)
	add.Attribute("objectClass", []string{"contact"})
	if err := dialT(t, dc).Add(add); err != nil {
		t.Fatalf("adding %s on %s: %v", dn, dc.Name, err)
	}
	return dn
}

// exists reports whether dn is on dc.
func exists(t *testing.T, dc *DC, dn string) bool {
	t.Helper()
	_, err := dialT(t, dc).Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 10, false, "(objectClass=*)", []string{"cn"}, nil))
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return false
	}
	if err != nil {
		t.Fatalf("reading %s on %s: %v", dn, dc.Name, err)
	}
	return true
}

func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
}

// TestPairReplicatesOnDemand proves the pair is two distinct DCs of one domain with
// deterministic lag: a write on either DC is absent on the other until Replicate, then present.
func TestPairReplicatesOnDemand(t *testing.T) {
	p := startPair(t)
	ctx := context.Background()

	if p.DC1.Address == p.DC2.Address || p.DC1.Name == p.DC2.Name {
		t.Fatalf("DC1 %s (%s) and DC2 %s (%s) are not two DCs", p.DC1.Name, p.DC1.Address, p.DC2.Name, p.DC2.Address)
	}
	if p.DC1.DomainSID == "" || p.DC1.DomainSID != p.DC2.DomainSID {
		t.Fatalf("domain SIDs %q and %q: want one domain", p.DC1.DomainSID, p.DC2.DomainSID)
	}

	for _, dir := range []struct{ from, to *DC }{{p.DC1, p.DC2}, {p.DC2, p.DC1}} {
		t.Run(dir.from.Name+" to "+dir.to.Name, func(t *testing.T) {
			dn := addContact(t, dir.from, uniqueName("pair-"+dir.from.Name))
			// Automatic replication is off; give it a chance to move anyway before looking.
			time.Sleep(2 * time.Second)
			if exists(t, dir.to, dn) {
				t.Fatalf("%s reached %s without Replicate: replication is not under the test's control", dn, dir.to.Name)
			}
			if err := p.Replicate(ctx, dir.to, dir.from); err != nil {
				t.Fatalf("Replicate: %v", err)
			}
			if !exists(t, dir.to, dn) {
				t.Fatalf("%s missing on %s after Replicate", dn, dir.to.Name)
			}
		})
	}
}

// TestPairOneCA proves a client verifies both DCs with the pair's one CA bundle, and that a
// DC's certificate is not accepted with another pair's CA.
func TestPairOneCA(t *testing.T) {
	p := startPair(t)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.CAPEM) {
		t.Fatal("CAPEM holds no certificate")
	}
	for _, dc := range p.DCs() {
		conn, err := ldap.DialURL(dc.URL, ldap.DialWithTLSConfig(&tls.Config{RootCAs: pool, ServerName: dc.Address, MinVersion: tls.VersionTLS12}))
		if err != nil {
			t.Fatalf("LDAPS to %s with the pair's CA: %v", dc.Name, err)
		}
		conn.Close()
	}
	other, err := NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	wrong := x509.NewCertPool()
	wrong.AddCert(other.Cert)
	if conn, err := ldap.DialURL(p.DC2.URL, ldap.DialWithTLSConfig(&tls.Config{RootCAs: wrong, ServerName: p.DC2.Address})); err == nil {
		conn.Close()
		t.Fatal("LDAPS to DC2 verified with an unrelated CA")
	}
}

// TestPairHoldReplication proves HoldReplication stops even a forced replication into a DC,
// with nothing arriving, and ReleaseReplication lets the held change through.
func TestPairHoldReplication(t *testing.T) {
	p := startPair(t)
	ctx := context.Background()

	if err := p.HoldReplication(ctx, p.DC2); err != nil {
		t.Fatalf("HoldReplication: %v", err)
	}
	dn := addContact(t, p.DC1, uniqueName("held"))
	err := p.Replicate(ctx, p.DC2, p.DC1)
	if err == nil {
		t.Fatal("Replicate into a held DC succeeded")
	}
	if !strings.Contains(err.Error(), "WERR_DS_DRA_SINK_DISABLED") {
		t.Errorf("Replicate into a held DC: %v, want WERR_DS_DRA_SINK_DISABLED", err)
	}
	if exists(t, p.DC2, dn) {
		t.Fatalf("%s reached DC2 while its replication was held", dn)
	}
	// Holding is per direction: DC1 still takes in DC2's changes.
	back := addContact(t, p.DC2, uniqueName("not-held"))
	if err := p.Replicate(ctx, p.DC1, p.DC2); err != nil {
		t.Fatalf("Replicate into DC1, which is not held: %v", err)
	}
	if !exists(t, p.DC1, back) {
		t.Fatalf("%s missing on DC1", back)
	}

	if err := p.ReleaseReplication(ctx, p.DC2); err != nil {
		t.Fatalf("ReleaseReplication: %v", err)
	}
	if err := p.Replicate(ctx, p.DC2, p.DC1); err != nil {
		t.Fatalf("Replicate after release: %v", err)
	}
	if !exists(t, p.DC2, dn) {
		t.Fatalf("%s missing on DC2 after release and Replicate", dn)
	}
}

// TestPairStopStart proves either DC can be stopped and started, that a write made while its
// partner is down waits on its DC, and that replication works after the restart (including
// the stale connection the partner may try first).
func TestPairStopStart(t *testing.T) {
	p := startPair(t)
	ctx := context.Background()

	dn := addContact(t, p.DC1, uniqueName("before-stop"))
	if err := p.DC1.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.DC1.Dial(); err == nil {
		t.Fatal("dial to DC1 succeeded while it was stopped")
	}
	if err := p.Replicate(ctx, p.DC2, p.DC1); err == nil {
		t.Fatal("Replicate from a stopped DC1 succeeded")
	}
	if exists(t, p.DC2, dn) {
		t.Fatalf("%s reached DC2 although DC1 stopped before replicating", dn)
	}
	during := addContact(t, p.DC2, uniqueName("while-dc1-down"))

	if err := p.DC1.Start(ctx); err != nil {
		t.Fatalf("starting DC1 again: %v", err)
	}
	if !exists(t, p.DC1, dn) {
		t.Fatalf("%s lost on DC1 across its restart", dn)
	}
	if err := p.Replicate(ctx, p.DC2, p.DC1); err != nil {
		t.Fatalf("Replicate DC1 -> DC2 after DC1's restart: %v", err)
	}
	if err := p.Replicate(ctx, p.DC1, p.DC2); err != nil {
		t.Fatalf("Replicate DC2 -> DC1 after DC1's restart: %v", err)
	}
	if !exists(t, p.DC2, dn) || !exists(t, p.DC1, during) {
		t.Fatal("the writes did not cross after DC1's restart")
	}

	// And the other way round: DC2 stopped and started.
	if err := p.DC2.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := p.DC2.Start(ctx); err != nil {
		t.Fatalf("starting DC2 again: %v", err)
	}
	after := addContact(t, p.DC1, uniqueName("after-dc2-restart"))
	if err := p.Replicate(ctx, p.DC2, p.DC1); err != nil {
		t.Fatalf("Replicate DC1 -> DC2 after DC2's restart: %v", err)
	}
	if !exists(t, p.DC2, after) {
		t.Fatalf("%s missing on DC2", after)
	}
}

// TestTwoPairsAtOnce proves pairs do not interfere: four distinct addresses, and a write in
// one pair never shows up in the other (each pair is its own copy of the domain, with its own
// hosts map, so a replication can only reach its own partner).
func TestTwoPairsAtOnce(t *testing.T) {
	a, b := startPair(t), startPair(t)
	ctx := context.Background()
	seen := map[string]bool{}
	for _, dc := range []*DC{a.DC1, a.DC2, b.DC1, b.DC2} {
		if seen[dc.Address] {
			t.Fatalf("two DCs on %s", dc.Address)
		}
		seen[dc.Address] = true
	}
	inA := addContact(t, a.DC1, uniqueName("pair-a"))
	inB := addContact(t, b.DC1, uniqueName("pair-b"))
	for _, p := range []*Pair{a, b} {
		if err := p.Replicate(ctx, p.DC2, p.DC1); err != nil {
			t.Fatalf("Replicate in the pair on %s: %v", p.DC1.Address, err)
		}
	}
	if !exists(t, a.DC2, inA) || !exists(t, b.DC2, inB) {
		t.Fatal("a pair's own write did not replicate")
	}
	if exists(t, a.DC2, inB) || exists(t, b.DC2, inA) || exists(t, a.DC1, inB) || exists(t, b.DC1, inA) {
		t.Fatal("a write crossed from one pair into the other")
	}
}
