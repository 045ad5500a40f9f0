package dkmctl

import (
	"crypto/rand"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/keys"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
	"github.com/dkm-operator/dkm-operator/internal/testenv"
)

// dkmctl plan against a real DC, the DKMContainer from a file and the bind identity from flags:
// a new Create plans the container (with its protected DACL in SDDL), the DC Manager, the first
// key and CryptoPolicy; an adopted container with drift plans the ownership claim, the DACL
// repair and the first key; a container as the operator leaves it plans nothing. Nothing is
// ever written (the containers' uSNChanged do not move, the new one is never made).
func TestPlan(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Samba DC")
	}
	ctx, dc, dir := startAdminDC(t)
	if _, err := dc.CreateUser("svc-plan", "Svc!Passw0rd-plan"); err != nil {
		t.Fatal(err)
	}
	usn := func(path string) int64 {
		t.Helper()
		obs, err := dir.Observe(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if !obs.Exists {
			return -1
		}
		return obs.Container.USNChanged
	}

	// A new Create.
	fresh := "CN=DKM-plan-new,CN=System," + dc.BaseDN
	out := runCmd(t, ExitOK, planArgs(t, dc, fresh, dkmv1.ProvisioningCreate)...)
	for _, want := range []string{
		"Plan ", "4 change(s)",
		" 1. CreateContainer container " + fresh, "sets nTSecurityDescriptor: D:P(A;",
		" 2. CreateManager container CN=DC Manager <new DC Manager GUID>," + fresh,
		" 3. AddKey contact CN=<new key ID>,CN=DC Manager <new DC Manager GUID>," + fresh,
		" 4. SetActiveKey contact CN=CryptoPolicy,CN=DC Manager <new DC Manager GUID>," + fresh,
		`= DEMO\svc-plan`, "To approve: kubectl annotate -n vmm dkmcontainer vmm dkm.io/approve-changes=",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("new Create: output lacks %q", want)
		}
	}
	if usn(fresh) != -1 {
		t.Fatal("dkmctl plan created the container")
	}

	// An adopted container with drift: made by a person (no ownership record, the DACL it
	// inherits from CN=System) plus an ACE letting Authenticated Users read.
	adopted := "CN=DKM-plan-adopted,CN=System," + dc.BaseDN
	conn, err := dc.Dial()
	if err != nil {
		t.Fatal(err)
	}
	add := ldap.NewAddRequest(adopted, nil)
	add.Attribute("objectClass", []string{"container"})
	if err := conn.Add(add); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	addACE(ctx, t, dir, adopted, "(A;CI;RPLC;;;AU)")
	before := usn(adopted)
	out = runCmd(t, ExitOK, planArgs(t, dc, adopted, dkmv1.ProvisioningAdopt)...)
	for _, want := range []string{
		" 1. SetOwner container " + adopted, "why: record this DKMContainer as the container's owner",
		" 2. ReplaceDACL container " + adopted, "(A;CI;LCRP;;;AU)",
		" 3. CreateManager container CN=DC Manager ", " 4. AddKey contact ", " 5. SetActiveKey contact CN=CryptoPolicy,",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("adopted with drift: output lacks %q", want)
		}
	}
	if after := usn(adopted); after != before {
		t.Fatalf("dkmctl plan changed the adopted container (uSNChanged %d → %d)", before, after)
	}

	// A container as the operator leaves it: the template DACL, its record, a DC Manager
	// named from the container, one key, CryptoPolicy naming it.
	steady := "CN=DKM-plan-steady,CN=System," + dc.BaseDN
	domain, err := dir.Domain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := dir.ResolvePrincipal(ctx, `DEMO\svc-plan`)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := dir.ResolvePrincipal(ctx, dc.AdminUser)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := secdesc.DKMTemplate(domain.SID, domain.ForestRootSID, []secdesc.SID{svc.SID, admin.SID})
	if err != nil {
		t.Fatal(err)
	}
	owner := directory.Owner{Cluster: "plan-cluster", Namespace: "vmm", Name: "vmm", UID: "plan-uid"}
	c, err := dir.CreateContainer(ctx, steady, sd, owner)
	if err != nil {
		t.Fatal(err)
	}
	cg, err := keys.ObjectGUIDFromBytes(c.GUID.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	m, err := dir.CreateManager(ctx, steady, keys.ManagerGUID(cg).String(), owner)
	if err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 32)
	_, _ = rand.Read(blob)
	id := "3c1e5a7b-0000-4000-8000-00000000bbbb"
	if _, err := dir.AddKey(ctx, m.DN, id, blob, owner); err != nil {
		t.Fatal(err)
	}
	if err := dir.SetActiveKey(ctx, m.DN, "", id, owner); err != nil {
		t.Fatal(err)
	}
	out = runCmd(t, ExitOK, planArgs(t, dc, steady, dkmv1.ProvisioningCreate)...)
	if !strings.Contains(out, "No changes: AD is as the operator wants it.") || strings.Contains(out, "Plan ") {
		t.Fatalf("steady state: not an empty plan")
	}
	// Drift on it: the plan is the repair alone.
	addACE(ctx, t, dir, steady, "(A;CI;RPLC;;;AU)")
	out = runCmd(t, ExitOK, planArgs(t, dc, steady, dkmv1.ProvisioningCreate)...)
	if !strings.Contains(out, "1 change(s)") || !strings.Contains(out, " 1. ReplaceDACL container "+steady) {
		t.Fatalf("steady state with drift: not the repair alone")
	}
}

// planArgs writes a DKMContainer (Plain keys, the UID of an applied one) and the bind password
// to files and returns the command line that plans it without a cluster.
func planArgs(t *testing.T, dc *testenv.DC, path string, mode dkmv1.ProvisioningMode) []string {
	t.Helper()
	obj := dkmv1.DKMContainer{
		TypeMeta:   metav1.TypeMeta{APIVersion: "dkm.io/v1alpha1", Kind: "DKMContainer"},
		ObjectMeta: metav1.ObjectMeta{Name: "vmm", Namespace: "vmm", UID: types.UID("plan-uid")},
		Spec: dkmv1.DKMContainerSpec{
			Directory:       dkmv1.DirectorySpec{URLs: []string{dc.URL}, BindSecretRef: dkmv1.SecretReference{Name: "bind"}},
			Path:            path,
			Provisioning:    mode,
			ServiceAccounts: []string{`DEMO\svc-plan`},
			AccessPolicy:    dkmv1.AccessEnforce,
			KeyProtection:   dkmv1.KeyProtectionSpec{Mode: dkmv1.KeyPlain},
			ChangeApproval:  dkmv1.ChangeApprovalManual,
		},
	}
	return append(fileCommand(t, dc, obj, "plan"), "--cluster-id", "plan-cluster")
}
