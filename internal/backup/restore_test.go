package backup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/keys"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// recordingAD is a directory for Restore's ordering: it holds one container and remembers, at
// every key write, which ownership record the container carried.
type recordingAD struct {
	domain    directory.Domain
	accounts  map[string]secdesc.SID // sAMAccountName -> SID in the target
	exists    bool
	container directory.Object
	managers  []directory.Manager
	// recordAtWrite is the container's record at each CreateManager, AddKey and SetActiveKey.
	recordAtWrite []string
	writes        []string
}

func (a *recordingAD) Domain(context.Context) (directory.Domain, error) { return a.domain, nil }

func (a *recordingAD) ResolvePrincipal(_ context.Context, name string) (directory.Principal, error) {
	if sid, ok := a.accounts[name]; ok {
		return directory.Principal{Name: name, SAMAccountName: name, SID: sid}, nil
	}
	return directory.Principal{}, fmt.Errorf("%w: %s", directory.ErrUnknownPrincipal, name)
}

func (a *recordingAD) Observe(context.Context, string) (*directory.Observation, error) {
	return &directory.Observation{Exists: a.exists, Container: a.container, Managers: a.managers}, nil
}

func (a *recordingAD) CreateContainer(_ context.Context, dn string, _ *secdesc.SecurityDescriptor, owner directory.Owner) (directory.Object, error) {
	a.writes = append(a.writes, "CreateContainer")
	a.exists = true
	a.container = directory.Object{DN: dn, GUID: secdesc.GUID{1, 2, 3}, OwnerRecord: owner.String(), Owner: &owner}
	return a.container, nil
}

func (a *recordingAD) SetOwner(_ context.Context, dn, from string, to directory.Owner) error {
	a.writes = append(a.writes, "SetOwner")
	if a.container.OwnerRecord != from {
		return &directory.Error{Op: "modify", DN: dn, Kind: directory.KindConflict, Err: errors.New("record moved")}
	}
	a.container.OwnerRecord, a.container.Owner = to.String(), &to
	return nil
}

func (a *recordingAD) keyWrite(name string) {
	a.writes = append(a.writes, name)
	a.recordAtWrite = append(a.recordAtWrite, a.container.OwnerRecord)
}

func (a *recordingAD) CreateManager(_ context.Context, containerDN, guid string, _ directory.Owner) (directory.Object, error) {
	a.keyWrite("CreateManager")
	return directory.Object{DN: directory.ChildDN(containerDN, directory.ManagerPrefix+guid)}, nil
}

func (a *recordingAD) AddKey(_ context.Context, managerDN, keyID string, blob []byte, _ directory.Owner) (directory.KeyObject, error) {
	a.keyWrite("AddKey")
	return directory.KeyObject{Object: directory.Object{DN: directory.ChildDN(managerDN, keyID)}, ID: keyID, Blob: blob}, nil
}

func (a *recordingAD) SetActiveKey(context.Context, string, string, string, directory.Owner) error {
	a.keyWrite("SetActiveKey")
	return nil
}

// While a restore writes the DC Manager and keys, the container's record does not name the
// target DKMContainer: the operator reconciling it meanwhile is a reader and never adds a key
// of its own to a half-restored container (found by TestRestoreDrill: the Adopt DKMContainer
// created its first key between the restore's CreateManager and AddKey). The record moves to
// the target last, by compare-and-swap.
func TestRestoreHoldsTheOperatorBackUntilDone(t *testing.T) {
	target := directory.Owner{Cluster: "c1", Namespace: "vmm", Name: "vmm", UID: "u1"}
	domain := directory.Domain{DN: "DC=other,DC=local", DNSName: "other.local",
		SID: secdesc.MustParseSID("S-1-5-21-7-8-9"), ForestRootSID: secdesc.MustParseSID("S-1-5-21-7-8-9")}
	cases := []struct {
		name  string
		setup func(a *recordingAD)
	}{
		{"new container", func(*recordingAD) {}},
		{"existing empty container of the target", func(a *recordingAD) {
			a.exists = true
			a.container = directory.Object{DN: "CN=VMMDKM,CN=System,DC=other,DC=local", GUID: secdesc.GUID{9},
				OwnerRecord: target.String(), Owner: &target}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := &recordingAD{domain: domain, accounts: map[string]secdesc.SID{"svc-vmm": secdesc.MustParseSID("S-1-5-21-7-8-9-1105")}}
			tc.setup(a)
			p, err := keys.NewProtector(keys.ModePlain, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Restore(context.Background(), a, sampleFile(t, "order"), Target{Path: "CN=VMMDKM,CN=System,DC=other,DC=local", Owner: target, Protector: p}); err != nil {
				t.Fatal(err)
			}
			for i, rec := range a.recordAtWrite {
				if rec == target.String() {
					t.Fatalf("write %d (%v) ran while the container already named the target as its owner", i, a.writes)
				}
				if !strings.Contains(rec, "dkmctl") {
					t.Fatalf("write %d ran under record %q", i, rec)
				}
			}
			if a.container.OwnerRecord != target.String() {
				t.Fatalf("the container ends with record %q, want the target's", a.container.OwnerRecord)
			}
			if last := a.writes[len(a.writes)-1]; last != "SetOwner" {
				t.Fatalf("last write %s, want SetOwner (writes %v)", last, a.writes)
			}
		})
	}
}
