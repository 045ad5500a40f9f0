package directory

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// pagingKeys is more key versions than a Windows DC returns for one search without paging
// (MaxPageSize, 1,000 by default).
const pagingKeys = 1100

// TestSubtreeSearchesPage fills one container with more than 1,000 objects in a real Samba DC
// and reads it completely with Observe and DeleteOwned, a page at a time. Samba does not
// enforce MaxPageSize on a search without paging, as a Windows DC does (sizeLimitExceeded,
// KindSizeLimit); so the test asks for pages of 100 and checks the DC answered in pages, as a
// Windows DC would need, and that nothing was lost between pages.
func TestSubtreeSearchesPage(t *testing.T) {
	f := newDKMFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	mgr, err := f.admin.CreateManager(ctx, f.dn, newManagerGUID(t), testOwner)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	addContacts(t, f, mgr.DN, pagingKeys)
	t.Logf("added %d key contacts in %v", pagingKeys, time.Since(start).Round(time.Millisecond))

	const pageSize = 100
	wantPages := (pagingKeys+2)/pageSize + 1 // the contacts, the DC Manager and the container
	c := newTestClient(t, adminConfig(f.dc), WithPageSize(pageSize))
	for _, tc := range []struct {
		name string
		read func() (int, error)
		want int
	}{
		{"Observe", func() (int, error) {
			obs, err := c.Observe(ctx, f.dn)
			if err != nil || len(obs.Managers) != 1 {
				return 0, fmt.Errorf("observation %v, managers: %d", err, len(obs.Managers))
			}
			ids := map[string]bool{}
			for _, k := range obs.Managers[0].Keys {
				ids[k.ID] = true
			}
			return len(ids), nil
		}, pagingKeys},
		{"DeleteOwned (owning nothing: every object is left, so every one was read)", func() (int, error) {
			left, err := c.DeleteOwned(ctx, f.mustContainerGUID(t, ctx), Owner{Cluster: "other", Namespace: "x", Name: "y", UID: "z"})
			return len(left), err
		}, pagingKeys + 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := c.Ops()
			start := time.Now()
			got, err := tc.read()
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			pages := c.Ops()[OpSearchPage] - before[OpSearchPage]
			t.Logf("read %d objects in %d pages of %d in %v", got, pages, pageSize, took.Round(time.Millisecond))
			if got != tc.want {
				t.Errorf("read %d objects, want %d", got, tc.want)
			}
			if pages != wantPages {
				t.Errorf("%d pages, want %d: the search was not paged", pages, wantPages)
			}
		})
	}

	// With the default page size (AD's MaxPageSize), two pages.
	d := newTestClient(t, adminConfig(f.dc))
	start = time.Now()
	obs, err := d.Observe(ctx, f.dn)
	if err != nil || len(obs.Managers) != 1 || len(obs.Managers[0].Keys) != pagingKeys {
		t.Fatalf("Observe with pages of %d: %v", DefaultPageSize, err)
	}
	t.Logf("Observe of %d key contacts with pages of %d: %d pages, %v", pagingKeys, DefaultPageSize,
		d.Ops()[OpSearchPage], time.Since(start).Round(time.Millisecond))
}

// mustContainerGUID reads the fixture container's objectGUID.
func (f *dkmFixture) mustContainerGUID(t *testing.T, ctx context.Context) secdesc.GUID {
	t.Helper()
	obs, err := f.admin.Observe(ctx, f.dn)
	if err != nil || !obs.Exists {
		t.Fatalf("Observe %s: %v", f.dn, err)
	}
	return obs.Container.GUID
}

// addContacts adds n key contacts under managerDN as Administrator, on a few connections at
// once (outside the code under test, and faster than one at a time).
func addContacts(t *testing.T, f *dkmFixture, managerDN string, n int) {
	t.Helper()
	const conns = 4
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for w := range conns {
		wg.Go(func() {
			conn, err := f.dc.Dial()
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			for i := w; i < n; i += conns {
				add := ldap.NewAddRequest(fmt.Sprintf("CN=key-%05d,%s", i, managerDN), nil)
				add.Attribute("objectClass", []string{"contact"})
				add.Attribute("l", []string{fmt.Sprintf("00000000-0000-4000-8000-%012d", i)})
				if err := conn.Add(add); err != nil {
					errs <- fmt.Errorf("adding key %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
