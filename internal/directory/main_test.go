package directory

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dkm-operator/dkm-operator/internal/secdesc"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
	"github.com/go-ldap/ldap/v3"
)

// One real Samba AD DC serves every integration test of this package; tests create objects
// with unique names. It starts when the first test asks for it (so unit tests, -short runs and
// fuzzing workers start none). A test that needs to stop a DC starts its own.
var (
	sharedOnce  sync.Once
	sharedDC    *testenv.DC
	sharedDCErr error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedDC != nil {
		sharedDC.Close()
	}
	os.Exit(code)
}

// needDC returns the shared DC; -short skips the test, a DC that failed to start fails it.
func needDC(t *testing.T) *testenv.DC {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no Samba AD DC")
	}
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		sharedDC, sharedDCErr = testenv.StartDC(ctx, testenv.DCOptions{})
	})
	if sharedDCErr != nil {
		t.Fatalf("starting the Samba AD DC: %v", sharedDCErr)
	}
	return sharedDC
}

var seq atomic.Int64

// unique returns a short name (sAMAccountName allows 20 characters) unique in this run.
func unique(prefix string) string { return fmt.Sprintf("%s%d", prefix, seq.Add(1)) }

func adminConfig(dc *testenv.DC) Config {
	return Config{URLs: []string{dc.URL}, Username: dc.AdminUser, Password: dc.AdminPassword, CAPEM: dc.CAPEM}
}

func configAs(dc *testenv.DC, user, password string) Config {
	cfg := adminConfig(dc)
	cfg.Username, cfg.Password = user, password
	return cfg
}

// newTestClient gives each test its own pool, so Ops counts belong to the test alone.
func newTestClient(t *testing.T, cfg Config, opts ...PoolOption) *Client {
	t.Helper()
	p := NewPool(opts...)
	t.Cleanup(p.Close)
	c, err := p.Client(cfg)
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	return c
}

func createUser(t *testing.T, dc *testenv.DC, prefix string) testenv.Principal {
	t.Helper()
	name := unique(prefix)
	u, err := dc.CreateUser(name, "Pw!"+name+"-Xy9z")
	if err != nil {
		t.Fatalf("creating user %s: %v", name, err)
	}
	return u
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dkmFixture is a container created with the DKM template for one service account.
type dkmFixture struct {
	dc      *testenv.DC
	admin   *Client
	domain  Domain
	aliases secdesc.Aliases
	svc     testenv.Principal
	tmpl    *secdesc.SecurityDescriptor
	dn      string
}

func newDKMFixture(t *testing.T) *dkmFixture {
	t.Helper()
	dc := needDC(t)
	ctx := testCtx(t)
	f := &dkmFixture{dc: dc, admin: newTestClient(t, adminConfig(dc))}
	var err error
	if f.domain, err = f.admin.Domain(ctx); err != nil {
		t.Fatal(err)
	}
	f.aliases = secdesc.DomainAliases(f.domain.SID, f.domain.ForestRootSID)
	f.svc = createUser(t, dc, "svc")
	if f.tmpl, err = secdesc.DKMTemplate(f.domain.SID, f.domain.ForestRootSID, []secdesc.SID{secdesc.MustParseSID(f.svc.SID)}); err != nil {
		t.Fatal(err)
	}
	f.dn = ChildDN("CN=System,"+dc.BaseDN, unique("VMMDKM-"))
	if _, err := f.admin.CreateContainer(ctx, f.dn, f.tmpl, testOwner); err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	return f
}

// rawSearch searches as the given connection with the DACL-only SD flags control.
func rawSearch(conn *ldap.Conn, base string, scope int, attrs ...string) (*ldap.SearchResult, error) {
	return conn.Search(ldap.NewSearchRequest(base, scope, ldap.NeverDerefAliases, 0, 10, false,
		"(objectClass=*)", attrs, []ldap.Control{sdFlagsDACL()}))
}

// rawAdd adds a container with the given SDDL as Administrator, outside the code under test
// (as a domain admin would with ADUC or ldapmodify).
func rawAddContainer(t *testing.T, dc *testenv.DC, dn, sddl string, a secdesc.Aliases) {
	t.Helper()
	sd, err := secdesc.ParseSDDL(sddl, a)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sd.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dc.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	add := ldap.NewAddRequest(dn, nil)
	add.Attribute("objectClass", []string{"container"})
	add.Attribute("nTSecurityDescriptor", []string{string(raw)})
	if err := conn.Add(add); err != nil {
		t.Fatalf("adding %s: %v", dn, err)
	}
}

// testOwner is the ownership record the tests write, as the operator writes its own.
var testOwner = Owner{Cluster: "test-cluster", Namespace: "test", Name: "dkm", UID: "0000-test-uid"}

// newManagerGUID is a fresh "DC Manager <GUID>" name part (the operator derives it from the
// container; tests that make several managers in one container need distinct ones).
func newManagerGUID(t *testing.T) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	g, _ := secdesc.GUIDFromBytes(b[:])
	return g.String()
}
