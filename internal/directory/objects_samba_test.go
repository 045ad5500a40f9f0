package directory

import (
	"bytes"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dkm-operator/dkm-operator/internal/secdesc"
	"github.com/go-ldap/ldap/v3"
)

func TestDomain(t *testing.T) {
	dc := needDC(t)
	c := newTestClient(t, adminConfig(dc))
	d, err := c.Domain(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.EqualFold(d.DN, dc.BaseDN) || !strings.EqualFold(d.ForestRootDN, dc.BaseDN) ||
		d.SID.String() != dc.DomainSID || d.ForestRootSID != d.SID ||
		d.NetBIOSName != dc.NetBIOS || !strings.EqualFold(d.DNSName, dc.Realm) {
		t.Errorf("Domain = %+v; want %s %s %s %s", d, dc.BaseDN, dc.DomainSID, dc.NetBIOS, dc.Realm)
	}
	before := c.Ops()
	if _, err := c.Domain(testCtx(t)); err != nil || c.Ops()["search"] != before["search"] {
		t.Errorf("Domain is not cached: %v, %v -> %v", err, before, c.Ops())
	}
}

func TestCreateContainerWithTemplate(t *testing.T) {
	f := newDKMFixture(t)
	ctx := testCtx(t)

	obs, err := f.admin.Observe(ctx, f.dn)
	if err != nil {
		t.Fatal(err)
	}
	if !obs.Exists || obs.Container.GUID.IsZero() || obs.Container.USNChanged == 0 || obs.Container.Created.IsZero() {
		t.Fatalf("observation = %+v", obs)
	}
	sd := obs.Container.SD
	if got, want := secdesc.FormatDACL(sd, f.aliases), secdesc.FormatDACL(f.tmpl, f.aliases); got != want {
		t.Errorf("stored DACL\n got %s\nwant %s", got, want)
	}
	if d := secdesc.DiffDACL(sd, f.tmpl, f.aliases); !d.Empty() {
		t.Errorf("drift right after creation: %s", d)
	}
	if !sd.IsDACLProtected() {
		t.Error("the container's DACL is not protected")
	}
	if !sd.Owner.IsZero() || !sd.Group.IsZero() || sd.SACL != nil {
		t.Errorf("Observe read more than the DACL: %s", sd)
	}
	assertNoEveryone(t, f.dn, sd)
	if len(obs.Managers) != 0 {
		t.Errorf("a new container has managers: %+v", obs.Managers)
	}

	if _, err := f.admin.CreateContainer(ctx, f.dn, f.tmpl, testOwner); !errors.Is(err, ErrAlreadyExists) || KindOf(err) != KindAlreadyExists {
		t.Errorf("creating it again: %v, want ErrAlreadyExists", err)
	}
	orphan := "CN=VMMDKM,CN=" + unique("NoSuchParent") + ",CN=System," + f.dc.BaseDN
	_, err = f.admin.CreateContainer(ctx, orphan, f.tmpl, testOwner)
	if !errors.Is(err, ErrParentMissing) || IsTransient(err) {
		t.Errorf("creating under a missing parent: %v, want ErrParentMissing", err)
	}
	t.Logf("parent missing: %v", err)
	if _, err := f.admin.CreateContainer(ctx, "CN=x,,DC=y", f.tmpl, testOwner); KindOf(err) != KindInvalidDN {
		t.Errorf("bad DN: %v", err)
	}
}

// assertNoEveryone fails if Authenticated Users or Everyone appear in sd's DACL at all,
// explicit or inherited.
func assertNoEveryone(t *testing.T, dn string, sd *secdesc.SecurityDescriptor) {
	t.Helper()
	if sd == nil || sd.DACL == nil {
		t.Fatalf("%s: no DACL read", dn)
	}
	for _, ace := range sd.DACL.ACEs {
		if ace.SID == secdesc.SIDAuthenticatedUsers || ace.SID == secdesc.SIDEveryone {
			t.Errorf("%s: %s reaches it", dn, secdesc.FormatACE(ace, secdesc.WellKnownAliases))
		}
	}
}

func TestKeyObjectsAreReadableOnlyThroughTheTemplate(t *testing.T) {
	f := newDKMFixture(t)
	ctx := testCtx(t)
	mgr, err := f.admin.CreateManager(ctx, f.dn, newManagerGUID(t), testOwner)
	if err != nil {
		t.Fatal(err)
	}
	mgrDN, _ := ParseDN(mgr.DN)
	if g := strings.TrimPrefix(rdnValue(mgrDN), ManagerPrefix); len(g) != 36 {
		t.Errorf("manager CN %q is not %q + a GUID", rdnValue(mgrDN), ManagerPrefix)
	} else if _, err := secdesc.ParseGUID(g); err != nil {
		t.Errorf("manager CN: %v", err)
	}
	blob := make([]byte, 64)
	rand.Read(blob)
	blob[0], blob[1] = 0, '\n' // binary-safe
	const keyID = "6f1c1d8e-22d5-4a47-b1c4-4a3e2f6d9a10"
	key, err := f.admin.AddKey(ctx, mgr.DN, keyID, blob, testOwner)
	if err != nil {
		t.Fatal(err)
	}
	if key.ID != keyID || !bytes.Equal(key.Blob, blob) || key.GUID.IsZero() {
		t.Errorf("AddKey returned %+v", key.Object)
	}
	if err := f.admin.SetActiveKey(ctx, mgr.DN, "", keyID, testOwner); err != nil {
		t.Fatalf("SetActiveKey (create): %v", err)
	}

	// The service account reads everything, through the template's inheritable ACE only.
	svc := newTestClient(t, configAs(f.dc, f.svc.UPN(f.dc), f.svc.Password))
	obs, err := svc.Observe(ctx, f.dn)
	if err != nil {
		t.Fatalf("Observe as the service account: %v", err)
	}
	if len(obs.Managers) != 1 || obs.Managers[0].Policy == nil || len(obs.Managers[0].Keys) != 1 {
		t.Fatalf("service account sees %+v", obs)
	}
	m := obs.Managers[0]
	if m.GUID != mgr.GUID || m.Policy.ActiveKeyID != keyID || m.Keys[0].ID != keyID || !bytes.Equal(m.Keys[0].Blob, blob) {
		t.Errorf("service account read manager %s policy %q key %q (blob equal: %v)",
			m.GUID, m.Policy.ActiveKeyID, m.Keys[0].ID, bytes.Equal(m.Keys[0].Blob, blob))
	}
	svcSID := secdesc.MustParseSID(f.svc.SID)
	for _, o := range []Object{m.Object, m.Policy.Object, m.Keys[0].Object} {
		assertNoEveryone(t, o.DN, o.SD)
		sawSvc := false
		for _, ace := range o.SD.DACL.ACEs {
			if !ace.IsInherited() {
				t.Errorf("%s: explicit ACE %s (children must carry inherited ACEs only)", o.DN, secdesc.FormatACE(ace, f.aliases))
			}
			if ace.SID == svcSID && ace.Mask.Has(secdesc.RightsFullControl) {
				sawSvc = true
			}
		}
		if !sawSvc {
			t.Errorf("%s: the service account's full control was not inherited: %s", o.DN, secdesc.FormatDACL(o.SD, f.aliases))
		}
	}

	// An ordinary domain user sees neither the manager nor the key, not even their names.
	user := createUser(t, f.dc, "user")
	conn, err := f.dc.DialAs(user.UPN(f.dc), user.Password)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = rawSearch(conn, m.Keys[0].DN, ldap.ScopeBaseObject, "thumbnailPhoto")
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		t.Errorf("ordinary user reading the key: %v, want noSuchObject (32)", err)
	}
	t.Logf("ordinary user reading the key object: %v", err)
	res, err := rawSearch(conn, f.dn, ldap.ScopeWholeSubtree, "thumbnailPhoto", "objectClass", "name")
	if err != nil {
		t.Fatalf("ordinary user's subtree search: %v", err)
	}
	for _, e := range res.Entries {
		if !strings.EqualFold(e.DN, f.dn) || len(e.Attributes) != 0 {
			t.Errorf("ordinary user sees %s with %d attributes", e.DN, len(e.Attributes))
		}
	}
	userClient := newTestClient(t, configAs(f.dc, user.DownLevel(f.dc), user.Password))
	if _, err := userClient.Observe(ctx, f.dn); KindOf(err) != KindInsufficientAccess {
		t.Errorf("Observe as an ordinary user: %v, want insufficient access", err)
	} else {
		t.Logf("Observe as an ordinary user: %v", err)
	}
	if _, err := userClient.AddKey(ctx, mgr.DN, "intruder", []byte("xxxx"), testOwner); err == nil {
		t.Error("an ordinary user added a key")
	} else {
		t.Logf("AddKey as an ordinary user: %v", err)
	}

	// An existing key is never overwritten.
	if _, err := f.admin.AddKey(ctx, mgr.DN, keyID, []byte("other bytes"), testOwner); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("adding the key again: %v, want ErrAlreadyExists", err)
	}
	// Rotation: a second key and the policy moved to it (the modify path of SetActiveKey).
	const key2 = "0a8e2f6b-5c4d-4e3f-8a2b-1c0d9e8f7a6b"
	if _, err := f.admin.AddKey(ctx, mgr.DN, key2, []byte("second key blob"), testOwner); err != nil {
		t.Fatal(err)
	}
	if err := f.admin.SetActiveKey(ctx, mgr.DN, keyID, key2, testOwner); err != nil {
		t.Fatalf("SetActiveKey (modify): %v", err)
	}
	newBlob := []byte("re-wrapped first key")
	if err := f.admin.ReplaceKeyBlob(ctx, key.DN, newBlob); err != nil {
		t.Fatalf("ReplaceKeyBlob: %v", err)
	}
	obs, err = f.admin.Observe(ctx, f.dn)
	if err != nil {
		t.Fatal(err)
	}
	m = obs.Managers[0]
	if m.Policy.ActiveKeyID != key2 || len(m.Keys) != 2 {
		t.Fatalf("after rotation: policy %q, %d keys", m.Policy.ActiveKeyID, len(m.Keys))
	}
	for _, k := range m.Keys {
		want := map[string][]byte{keyID: newBlob, key2: []byte("second key blob")}[k.ID]
		if !bytes.Equal(k.Blob, want) {
			t.Errorf("key %s blob = %q", k.ID, k.Blob)
		}
	}
	if _, err := f.admin.AddKey(ctx, mgr.DN, "cryptopolicy", []byte("xxxx"), testOwner); KindOf(err) != KindConstraint {
		t.Errorf("a key named like the policy: %v", err)
	}
}

func TestAdoptEffectiveRights(t *testing.T) {
	dc := needDC(t)
	ctx := testCtx(t)
	admin := newTestClient(t, adminConfig(dc))
	d, err := admin.Domain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := secdesc.DomainAliases(d.SID, d.ForestRootSID)
	dlg := createUser(t, dc, "dlg")
	system := "CN=System," + dc.BaseDN
	const full = "CCDCLCSWRPWPDTLOCRSDRCWDWO"
	const contactClass = "5cb41ed0-0e4c-11d0-a286-00aa003049e2"
	cases := []struct {
		name, grant string
		wantMissing []string
	}{
		// "Read, Write, Create all child objects" on this object and all descendants, as the
		// VMM documentation tells a domain admin to delegate.
		{"read write create", "(A;CI;RPWPCCLCLORC;;;" + dlg.SID + ")", nil},
		{"no create child", "(A;CI;RPWPLCLORC;;;" + dlg.SID + ")", []string{"Create container objects", "Create contact objects"}},
		{"contacts only", "(A;CI;RPWPLCLORC;;;" + dlg.SID + ")(OA;CI;CC;" + contactClass + ";;" + dlg.SID + ")", []string{"Create container objects"}},
		{"read only", "(A;CI;RPLCLORC;;;" + dlg.SID + ")", []string{"Write", "Create container objects", "Create contact objects"}},
	}
	c := newTestClient(t, configAs(dc, dlg.DownLevel(dc), dlg.Password))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dn := ChildDN(system, unique("Adopt-"))
			rawAddContainer(t, dc, dn, "D:P(A;CI;"+full+";;;DA)"+tc.grant, a)
			r, err := c.EffectiveRights(ctx, dn)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: sDRightsEffective=%d, %d child classes, %d writable attributes", tc.name, r.SDRights, len(r.CreateChild), len(r.WritableAttributes))
			if got := r.Missing(false); !slices.Equal(got, tc.wantMissing) {
				t.Errorf("Missing(false) = %q, want %q", got, tc.wantMissing)
			}
			if got := r.Missing(true); !slices.Contains(got, "Modify permissions (WRITE_DAC)") {
				t.Errorf("Missing(true) = %q lacks WRITE_DAC", got)
			}
			if tc.wantMissing != nil {
				return
			}
			// The delegation is real: the non-admin account can build the DKM objects.
			mgr, err := c.CreateManager(ctx, dn, newManagerGUID(t), testOwner)
			if err != nil {
				t.Fatalf("CreateManager as the delegated account: %v", err)
			}
			if _, err := c.AddKey(ctx, mgr.DN, "k1", []byte("delegated key"), testOwner); err != nil {
				t.Fatalf("AddKey as the delegated account: %v", err)
			}
			if err := c.SetActiveKey(ctx, mgr.DN, "", "k1", testOwner); err != nil {
				t.Fatalf("SetActiveKey as the delegated account: %v", err)
			}
		})
	}
	// Administrator on a template container lacks nothing, WRITE_DAC included.
	f := newDKMFixture(t)
	r, err := f.admin.EffectiveRights(ctx, f.dn)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Missing(true); len(got) != 0 {
		t.Errorf("Administrator misses %q", got)
	}
	t.Logf("Administrator: sDRightsEffective=%d", r.SDRights)
	if _, err := c.EffectiveRights(ctx, f.dn+"x"); KindOf(err) != KindNoSuchObject {
		t.Errorf("rights on a missing object: %v", err)
	}
}

func TestTamperingIsDetectedAndRepaired(t *testing.T) {
	f := newDKMFixture(t)
	ctx := testCtx(t)
	conn, err := f.dc.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	owner := func() string {
		res, err := conn.Search(ldap.NewSearchRequest(f.dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 10, false,
			"(objectClass=*)", []string{"nTSecurityDescriptor"}, []ldap.Control{&ldap.ControlMicrosoftSDFlags{ControlValue: 0x1}}))
		if err != nil {
			t.Fatal(err)
		}
		sd, err := secdesc.ParseDescriptor(res.Entries[0].GetRawAttributeValue("nTSecurityDescriptor"))
		if err != nil {
			t.Fatal(err)
		}
		return sd.Owner.String()
	}
	ownerBefore := owner()

	// Another tool grants Authenticated Users read on the container.
	obs, err := f.admin.Observe(ctx, f.dn)
	if err != nil {
		t.Fatal(err)
	}
	tampered := obs.Container.SD.Clone()
	au := secdesc.NewACE(secdesc.ACETypeAccessAllowed, 0,
		secdesc.RightReadProperty|secdesc.RightListChildren|secdesc.RightListObject|secdesc.RightReadControl, secdesc.SIDAuthenticatedUsers)
	tampered.DACL.ACEs = append(tampered.DACL.ACEs, au)
	raw, _ := tampered.MarshalBinary()
	mod := ldap.NewModifyRequest(f.dn, []ldap.Control{&ldap.ControlMicrosoftSDFlags{ControlValue: 0x4}})
	mod.Replace("nTSecurityDescriptor", []string{string(raw)})
	if err := conn.Modify(mod); err != nil {
		t.Fatal(err)
	}

	obs, err = f.admin.Observe(ctx, f.dn)
	if err != nil {
		t.Fatal(err)
	}
	d := secdesc.DiffDACL(obs.Container.SD, f.tmpl, f.aliases)
	if len(d.Unexpected) != 1 || !d.Unexpected[0].ACE.Equal(au) || len(d.Missing) != 0 || d.WantProtected != d.GotProtected {
		t.Fatalf("drift = %s; want exactly %s unexpected", d, secdesc.FormatACE(au, f.aliases))
	}
	t.Logf("drift seen: %s", d)

	if err := f.admin.ReplaceDACL(ctx, f.dn, f.tmpl); err != nil {
		t.Fatal(err)
	}
	obs, err = f.admin.Observe(ctx, f.dn)
	if err != nil {
		t.Fatal(err)
	}
	if d := secdesc.DiffDACL(obs.Container.SD, f.tmpl, f.aliases); !d.Empty() {
		t.Errorf("drift after repair: %s", d)
	}
	if got, want := secdesc.FormatDACL(obs.Container.SD, f.aliases), secdesc.FormatDACL(f.tmpl, f.aliases); got != want {
		t.Errorf("after repair\n got %s\nwant %s", got, want)
	}
	if after := owner(); after != ownerBefore {
		t.Errorf("the owner changed from %s to %s: ReplaceDACL must write the DACL only", ownerBefore, after)
	}
}

func TestObserveIsOneSearch(t *testing.T) {
	f := newDKMFixture(t)
	ctx := testCtx(t)
	mgr, err := f.admin.CreateManager(ctx, f.dn, newManagerGUID(t), testOwner)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"k1", "k2", "k3"} {
		if _, err := f.admin.AddKey(ctx, mgr.DN, id, []byte("blob of "+id), testOwner); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.admin.SetActiveKey(ctx, mgr.DN, "", "k3", testOwner); err != nil {
		t.Fatal(err)
	}
	missing := ChildDN("CN=System,"+f.dc.BaseDN, unique("Missing-"))
	for _, tc := range []struct {
		name, dn string
		exists   bool
	}{{"missing container", missing, false}, {"full container", f.dn, true}} {
		before := f.admin.Ops()
		obs, err := f.admin.Observe(ctx, tc.dn)
		after := f.admin.Ops()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if obs.Exists != tc.exists {
			t.Errorf("%s: Exists = %v", tc.name, obs.Exists)
		}
		for _, op := range []string{"search", "bind", "dial", "add", "modify", "delete"} {
			want := 0
			if op == "search" {
				want = 1
			}
			if got := after[op] - before[op]; got != want {
				t.Errorf("%s: %d %s operations, want %d", tc.name, got, op, want)
			}
		}
		if tc.exists && (len(obs.Managers) != 1 || len(obs.Managers[0].Keys) != 3 || obs.Managers[0].Policy.ActiveKeyID != "k3") {
			t.Errorf("%s: %+v", tc.name, obs)
		}
	}
}

func TestResolvePrincipal(t *testing.T) {
	dc := needDC(t)
	ctx := testCtx(t)
	c := newTestClient(t, adminConfig(dc))
	u := createUser(t, dc, "res")
	for _, name := range []string{
		u.DownLevel(dc), strings.ToLower(dc.NetBIOS) + `\` + u.Name, strings.ToLower(dc.Realm) + `\` + u.Name,
		u.UPN(dc), u.Name + "@" + strings.ToLower(dc.Realm), u.Name, u.SID, u.DN,
	} {
		p, err := c.ResolvePrincipal(ctx, name)
		if err != nil {
			t.Errorf("ResolvePrincipal(%q): %v", name, err)
			continue
		}
		if p.SID.String() != u.SID || !strings.EqualFold(p.DN, u.DN) || p.Name != name || p.SAMAccountName != u.Name {
			t.Errorf("ResolvePrincipal(%q) = %+v, want %s %s", name, p, u.SID, u.DN)
		}
	}
	// Cached: a second resolution sends nothing.
	before := c.Ops()["search"]
	if _, err := c.ResolvePrincipal(ctx, u.UPN(dc)); err != nil || c.Ops()["search"] != before {
		t.Errorf("not cached: %v, %d searches", err, c.Ops()["search"]-before)
	}
	// Groups and builtin groups resolve too.
	g, err := dc.CreateGroup(unique("grp"), u)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := c.ResolvePrincipal(ctx, g.DownLevel(dc)); err != nil || p.SID.String() != g.SID {
		t.Errorf("group: %+v, %v", p, err)
	}
	if p, err := c.ResolvePrincipal(ctx, "S-1-5-32-544"); err != nil || !strings.HasPrefix(strings.ToLower(p.DN), "cn=administrators,cn=builtin,") {
		t.Errorf("BUILTIN\\Administrators: %+v, %v", p, err)
	}
	// Account without a UPN: the implicit name@dnsdomain works.
	if p, err := c.ResolvePrincipal(ctx, "Administrator@"+dc.Realm); err != nil || !strings.HasSuffix(p.SID.String(), "-500") {
		t.Errorf("implicit UPN: %+v, %v", p, err)
	}
	for _, name := range []string{
		dc.NetBIOS + `\nobody-here`, "nobody-here@" + dc.Realm, "nobody-here", dc.DomainSID + "-987654",
		`OTHER\` + u.Name, "CN=nobody-here,CN=Users," + dc.BaseDN, "S-1-bogus", "",
	} {
		_, err := c.ResolvePrincipal(ctx, name)
		if !errors.Is(err, ErrUnknownPrincipal) || IsTransient(err) {
			t.Errorf("ResolvePrincipal(%q) = %v, want ErrUnknownPrincipal", name, err)
			continue
		}
		if !strings.Contains(err.Error(), QuoteName(strings.TrimSpace(name))) {
			t.Errorf("the error does not name the input %q: %v", name, err)
		}
	}
}
