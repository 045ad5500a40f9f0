package directory

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dkm-operator/dkm-operator/internal/secdesc"
	"github.com/go-ldap/ldap/v3"
)

func TestParseGeneralizedTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		"20261122130144.0Z":   time.Date(2026, 11, 22, 13, 1, 44, 0, time.UTC),
		"20240102030405Z":     time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		"20240102030405.5Z":   time.Date(2024, 1, 2, 3, 4, 5, 5e8, time.UTC),
		"20240102030405+0100": time.Date(2024, 1, 2, 2, 4, 5, 0, time.UTC),
	} {
		got, err := parseGeneralizedTime(in)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseGeneralizedTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseGeneralizedTime("yesterday"); err == nil {
		t.Error("garbage accepted")
	}
}

// entry builds a search result entry as Samba returns it.
func entry(dn string, guid byte, created string, classes []string, attrs map[string][]string) *ldap.Entry {
	g := secdesc.GUID{guid}
	m := map[string][]string{
		"objectClass": classes,
		"objectGUID":  {string(g.Bytes())},
		"uSNChanged":  {"42"},
		"whenCreated": {created},
	}
	for k, v := range attrs {
		m[k] = v
	}
	return ldap.NewEntry(dn, m)
}

func TestBuildObservation(t *testing.T) {
	const base = "CN=VMMDKM,CN=System,DC=demo,DC=local"
	container := []string{"top", "container"}
	contact := []string{"top", "person", "organizationalPerson", "contact"}
	sd, _ := secdesc.ChildDescriptor().MarshalBinary()
	entries := []*ldap.Entry{
		entry("CN=k2,CN=DC Manager b,"+base, 5, "20240101000002.0Z", contact, map[string][]string{"l": {"k2"}, "thumbnailPhoto": {"\x02"}}),
		entry("CN=DC Manager b,"+base, 2, "20240101000000.0Z", container, map[string][]string{"nTSecurityDescriptor": {string(sd)}}),
		entry("cn=vmmdkm,cn=system,dc=DEMO,dc=local", 1, "20240101000000.0Z", container, nil),
		entry("CN=k1,CN=DC Manager b,"+base, 4, "20240101000002.0Z", contact, map[string][]string{"l": {"k1"}, "thumbnailPhoto": {"\x01"}}),
		entry("CN=k0,CN=DC Manager b,"+base, 6, "20240101000001.0Z", contact, nil), // no l: the CN is the ID
		entry("CN=CryptoPolicy,CN=DC Manager b,"+base, 3, "20240101000001.0Z", contact, map[string][]string{"displayName": {"k1"}}),
		entry("CN=DC Manager a,"+base, 7, "20231231000000.0Z", container, nil),
		entry("CN=Other,"+base, 8, "20240101000000.0Z", container, nil),                               // ignored
		entry("CN=stray,CN=Other,"+base, 9, "20240101000000.0Z", contact, nil),                        // ignored
		entry("CN=deep,CN=k1,CN=DC Manager b,"+base, 10, "20240101000000.0Z", contact, nil),           // ignored
		entry("CN=user,CN=DC Manager b,"+base, 11, "20240101000000.0Z", []string{"top", "user"}, nil), // ignored
	}
	dn, _ := ParseDN(base)
	obs, err := buildObservation(dn, base, entries)
	if err != nil {
		t.Fatal(err)
	}
	if !obs.Exists || obs.Container.GUID != (secdesc.GUID{1}) || obs.Container.USNChanged != 42 {
		t.Fatalf("container = %+v", obs.Container)
	}
	if len(obs.Managers) != 2 || obs.Managers[0].GUID != (secdesc.GUID{7}) {
		t.Fatalf("managers not found or not sorted oldest first: %+v", obs.Managers)
	}
	m := obs.Managers[1]
	if m.SD == nil || m.Policy == nil || m.Policy.ActiveKeyID != "k1" {
		t.Fatalf("manager = %+v", m)
	}
	var ids []string
	for _, k := range m.Keys {
		ids = append(ids, k.ID)
	}
	if len(ids) != 3 || ids[0] != "k0" || ids[1] != "k1" || ids[2] != "k2" || string(m.Keys[1].Blob) != "\x01" {
		t.Errorf("keys = %q, want k0 k1 k2 (by Created, then ID)", ids)
	}
}

func TestBuildObservationUnreadableContainer(t *testing.T) {
	const base = "CN=VMMDKM,CN=System,DC=demo,DC=local"
	dn, _ := ParseDN(base)
	// What Samba returns to an ordinary user: the container's DN without attributes.
	_, err := buildObservation(dn, base, []*ldap.Entry{ldap.NewEntry(base, nil)})
	if KindOf(err) != KindInsufficientAccess {
		t.Errorf("err = %v, want insufficient access", err)
	}
	_, err = buildObservation(dn, base, nil)
	if KindOf(err) != KindInsufficientAccess {
		t.Errorf("err = %v, want insufficient access", err)
	}
	bad := entry(base, 1, "not a time", []string{"container"}, nil)
	if _, err := buildObservation(dn, base, []*ldap.Entry{bad}); err == nil || errors.Is(err, ErrNoSuchObject) {
		t.Errorf("malformed whenCreated: %v", err)
	}
}

// Objects AD's replication conflict resolution renamed ("\0ACNF:<GUID>" in the RDN), and
// everything inside them, are Conflicts: never a manager, a key or a foreign object.
func TestBuildObservationConflicts(t *testing.T) {
	const base = "CN=VMMDKM,CN=System,DC=demo,DC=local"
	container := []string{"top", "container"}
	contact := []string{"top", "person", "organizationalPerson", "contact"}
	const cnfManager = `CN=DC Manager a\0ACNF:0b1c2d3e-0000-0000-0000-000000000001,` + base
	entries := []*ldap.Entry{
		entry(base, 1, "20240101000000.0Z", container, nil),
		entry("CN=DC Manager a,"+base, 2, "20240101000000.0Z", container, nil),
		entry("CN=k1,CN=DC Manager a,"+base, 3, "20240101000001.0Z", contact, map[string][]string{"l": {"k1"}}),
		entry(`CN=k2\0ACNF:0b1c2d3e-0000-0000-0000-000000000004,CN=DC Manager a,`+base, 4, "20240101000002.0Z", contact, map[string][]string{"l": {"k2"}}),
		entry(cnfManager, 5, "20240101000000.0Z", container, nil),
		entry("CN=k9,"+cnfManager, 6, "20240101000001.0Z", contact, map[string][]string{"l": {"k9"}}),
		entry("CN=CryptoPolicy,"+cnfManager, 7, "20240101000001.0Z", contact, map[string][]string{"displayName": {"k9"}}),
	}
	dn, _ := ParseDN(base)
	obs, err := buildObservation(dn, base, entries)
	if err != nil {
		t.Fatal(err)
	}
	if len(obs.Managers) != 1 || len(obs.Managers[0].Keys) != 1 || obs.Managers[0].Keys[0].ID != "k1" {
		t.Fatalf("live layout = %+v, want one manager with k1 only", obs.Managers)
	}
	if len(obs.Foreign) != 0 {
		t.Errorf("foreign = %v, want none", obs.Foreign)
	}
	var ids []string
	for _, c := range obs.Conflicts {
		ids = append(ids, c.KeyID)
	}
	if len(obs.Conflicts) != 4 || !slices.Equal(ids, []string{"k2", "", "k9", ""}) {
		t.Errorf("conflicts = %+v (key IDs %q), want k2, the manager, k9 and its CryptoPolicy", obs.Conflicts, ids)
	}
	if !IsConflictName("DC Manager a\nCNF:0b1c2d3e-0000-0000-0000-000000000001") || IsConflictName("CNF: a person's name") {
		t.Error("IsConflictName")
	}
}

func TestServerName(t *testing.T) {
	for in, want := range map[string]string{
		"CN=NTDS Settings,CN=DC1,CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,DC=demo,DC=local": "DC1",
		"cn=ntds settings,cn=vm,cn=servers,dc=x": "vm",
		"CN=DC1,CN=Servers,DC=x":                 "CN=DC1,CN=Servers,DC=x",
		"not a DN":                               "not a DN",
	} {
		if got := ServerName(in); got != want {
			t.Errorf("ServerName(%q) = %q, want %q", in, got, want)
		}
	}
	info := ServerInfo{ServiceName: "CN=NTDS Settings,CN=DC1,CN=Servers,DC=x", PDC: "cn=ntds settings, cn=dc1,cn=servers,dc=X"}
	if !info.IsPDC() || (ServerInfo{ServiceName: info.ServiceName}).IsPDC() {
		t.Error("IsPDC")
	}
}
