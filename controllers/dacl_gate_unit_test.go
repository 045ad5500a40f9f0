package controllers

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/keys"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// Unit tests of the safe-DACL gate against a directory that answers only EffectiveRights: any
// other call, a key write above all, panics on the nil embedded interface. The envtest suite
// (dacl_gate_test.go) checks the same behaviour against Samba.

var (
	gateDomain   = secdesc.MustParseSID("S-1-5-21-11-22-33")
	gateSvc      = secdesc.MustParseSID("S-1-5-21-11-22-33-1105")
	gateOperator = secdesc.MustParseSID("S-1-5-21-11-22-33-1106")
	gateAliases  = secdesc.DomainAliases(gateDomain, gateDomain)
	gateGUID     = secdesc.MustParseGUID("0d7c1b2a-3e4f-4a5b-8c6d-7e8f9a0b1c2d")
)

const gatePath = "CN=VMMDKM,CN=System,DC=demo,DC=local"

type gateDirectory struct {
	Directory
	rights directory.Rights
}

func (d gateDirectory) EffectiveRights(context.Context, string) (directory.Rights, error) {
	return d.rights, nil
}

func gateReconciler() (*DKMContainerReconciler, *events.FakeRecorder) {
	rec := events.NewFakeRecorder(100)
	return &DKMContainerReconciler{Recorder: rec, Keys: NewKeyStore(), Metrics: NewMetrics(nil)}, rec
}

// gateScope is a scope past the container phase: an Audit DKMContainer whose container carries
// the template plus extra ACEs (SDDL), with the given DC Manager objects.
func gateScope(t *testing.T, extra string, managers ...directory.Manager) *scope {
	t.Helper()
	obj := &dkmv1.DKMContainer{
		ObjectMeta: metav1.ObjectMeta{Name: "vmm", Namespace: "vmm", Generation: 1},
		Spec:       dkmv1.DKMContainerSpec{Path: gatePath, AccessPolicy: dkmv1.AccessAudit},
	}
	s := newScope(obj, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	s.dir = gateDirectory{}
	s.role = dkmv1.RoleWriter // the gate holds back a writer; a reader writes nothing anyway
	s.domain = directory.Domain{SID: gateDomain, ForestRootSID: gateDomain}
	s.aliases = gateAliases
	s.accounts = []secdesc.SID{gateSvc}
	s.operatorSID = gateOperator
	s.obs = &directory.Observation{Exists: true, Container: directory.Object{DN: gatePath, GUID: gateGUID}, Managers: managers}
	tmpl, err := s.desiredDACL()
	if err != nil {
		t.Fatal(err)
	}
	sd, err := secdesc.ParseSDDL(secdesc.FormatDACL(tmpl, gateAliases)+extra, gateAliases)
	if err != nil {
		t.Fatal(err)
	}
	s.obs.Container.SD = sd
	return s
}

// gateManager is a DC Manager holding one Plain key created at created, with a CryptoPolicy.
func gateManager(t *testing.T, created time.Time) (directory.Manager, keys.Protector, *keys.Ring) {
	t.Helper()
	p, err := keys.NewProtector(keys.ModePlain, nil)
	if err != nil {
		t.Fatal(err)
	}
	container, err := keys.ObjectGUIDFromBytes(gateGUID.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	ring, stored, err := keys.NewRing(container, p, created)
	if err != nil {
		t.Fatal(err)
	}
	dn := "CN=DC Manager 5c6f0b2e-4a33-4a8e-9a57-0e0b8e0f4d21," + gatePath
	return directory.Manager{
		Object: directory.Object{DN: dn},
		Policy: &directory.PolicyObject{ActiveKeyID: stored.ID},
		Keys: []directory.KeyObject{{
			Object: directory.Object{DN: "CN=" + stored.ID + "," + dn, Created: created},
			ID:     stored.ID, Blob: stored.Blob,
		}},
	}, p, ring
}

func gateCondition(t *testing.T, s *scope, condType string) metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(s.obj.Status.Conditions, condType)
	if c == nil {
		t.Fatalf("no %s condition", condType)
	}
	return *c
}

func gateEvents(rec *events.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func isStop(err error, reason string) bool {
	var st *stopError
	return errors.As(err, &st) && st.reason == reason
}

const gateAURead = "(A;CI;RPLCLORC;;;AU)"

func TestGateOpenUnderASafeDACL(t *testing.T) {
	for _, extra := range []string{"", "(A;;RPLCLORC;;;AU)", "(OA;CIIO;RP;;bf967aba-0de6-11d0-a285-00aa003049e2;AU)"} {
		r, rec := gateReconciler()
		s := gateScope(t, extra)
		blocked, err := r.gateKeyWrites(context.Background(), s, nil)
		if blocked || err != nil {
			t.Errorf("%q: gate closed (%v, %v) under a safe DACL", extra, blocked, err)
		}
		if len(s.obj.Status.Conditions) != 0 || len(gateEvents(rec)) != 0 {
			t.Errorf("%q: an open gate set conditions or emitted events", extra)
		}
	}
}

func TestGateBlocksTheFirstKey(t *testing.T) {
	r, rec := gateReconciler()
	s := gateScope(t, gateAURead)
	// Any write would panic: gateDirectory implements no write.
	blocked, err := r.gateKeyWrites(context.Background(), s, nil)
	if !blocked || !isStop(err, dkmv1.ReasonUnsafeDACL) {
		t.Fatalf("gateKeyWrites = %v, %v; want blocked, stop(UnsafeDACL)", blocked, err)
	}
	c := gateCondition(t, s, dkmv1.ConditionKeyReady)
	if c.Status != metav1.ConditionFalse || c.Reason != dkmv1.ReasonUnsafeDACL {
		t.Errorf("KeyReady = %s/%s, want False/UnsafeDACL", c.Status, c.Reason)
	}
	for _, want := range []string{"is unsafe: (A;CI;LCRPLORC;;;AU) lets Authenticated Users read the key", "no key is created in " + gatePath} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("KeyReady message %q lacks %q", c.Message, want)
		}
	}
	if ev := gateEvents(rec); len(ev) != 1 || !strings.HasPrefix(ev[0], "Warning UnsafeDACL ") {
		t.Errorf("events = %q, want one Warning UnsafeDACL", ev)
	}
	if r.Keys.Get(namespacedName(s.obj)) != nil {
		t.Error("a ring was published without a key")
	}
}

func TestGateBlocksKeysWithoutCryptoPolicy(t *testing.T) {
	r, _ := gateReconciler()
	m, p, _ := gateManager(t, time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC))
	m.Policy = nil // pointing CryptoPolicy at the newest key would be a write
	s := gateScope(t, gateAURead, m)
	if blocked, err := r.gateKeyWrites(context.Background(), s, p); !blocked || !isStop(err, dkmv1.ReasonUnsafeDACL) {
		t.Fatalf("gateKeyWrites = %v, %v; want blocked, stop(UnsafeDACL)", blocked, err)
	}
}

func TestGateServesTheExistingKeyAndBlocksRotation(t *testing.T) {
	r, rec := gateReconciler()
	m, p, ring := gateManager(t, time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC))
	s := gateScope(t, gateAURead, m)
	s.obj.Spec.Rotation = &dkmv1.RotationSpec{Period: &metav1.Duration{Duration: time.Hour}} // long overdue
	blocked, err := r.gateKeyWrites(context.Background(), s, p)
	if !blocked || !isStop(err, dkmv1.ReasonUnsafeDACL) {
		t.Fatalf("gateKeyWrites = %v, %v; want blocked, stop(UnsafeDACL)", blocked, err)
	}
	got := r.Keys.Get(namespacedName(s.obj))
	if got == nil || got.ActiveID() != ring.ActiveID() || got.Len() != 1 {
		t.Fatalf("published ring %v, want the existing one", got)
	}
	if s.obj.Status.ActiveKeyID != ring.ActiveID().String() || s.obj.Status.ActiveKeyFingerprint != ring.Active().Fingerprint.String() {
		t.Errorf("status records key %s (%s), want %s", s.obj.Status.ActiveKeyID, s.obj.Status.ActiveKeyFingerprint, ring.ActiveID())
	}
	c := gateCondition(t, s, dkmv1.ConditionKeyReady)
	for _, want := range []string{"a rotation that is due wait", "is still read and served to replicas", ring.ActiveID().String()} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("KeyReady message %q lacks %q", c.Message, want)
		}
	}
	if c.Status != metav1.ConditionFalse || c.Reason != dkmv1.ReasonUnsafeDACL {
		t.Errorf("KeyReady = %s/%s, want False/UnsafeDACL", c.Status, c.Reason)
	}
	if ev := gateEvents(rec); len(ev) != 1 || !strings.HasPrefix(ev[0], "Warning UnsafeDACL ") {
		t.Errorf("events = %q, want one Warning UnsafeDACL", ev)
	}
}

func TestGateClosedWhenTheDACLCannotBeRead(t *testing.T) {
	r, _ := gateReconciler()
	s := gateScope(t, "")
	s.obs.Container.SD = nil
	blocked, _ := r.gateKeyWrites(context.Background(), s, nil)
	if c := gateCondition(t, s, dkmv1.ConditionKeyReady); !blocked || !strings.Contains(c.Message, "cannot read the DACL") {
		t.Errorf("gate %v, KeyReady %q; want closed, saying the DACL cannot be read", blocked, c.Message)
	}
}

func TestReportDrift(t *testing.T) {
	for _, tc := range []struct {
		name, extra  string
		status       metav1.ConditionStatus
		reason, says string
		event        string
	}{
		{"safe but not the template", "(A;;RPLCLORC;;;AU)", metav1.ConditionTrue, dkmv1.ReasonSafeDACL,
			"is safe: only the template principals, the service accounts and the operator can read a key; it differs from the DKM template (Audit: not changed): unexpected (A;;LCRPLORC;;;AU)",
			"Normal DriftDetected "},
		{"unsafe", gateAURead, metav1.ConditionFalse, dkmv1.ReasonUnsafeDACL,
			"is unsafe: (A;CI;LCRPLORC;;;AU) lets Authenticated Users read the key",
			"Warning DriftDetected "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, rec := gateReconciler()
			s := gateScope(t, tc.extra)
			desired, _ := s.desiredDACL()
			diff := secdesc.DiffDACL(s.obs.Container.SD, desired, s.aliases)
			if err := r.reportDrift(s, diff, "Audit"); err != nil {
				t.Fatal(err)
			}
			c := gateCondition(t, s, dkmv1.ConditionAccessControlled)
			if c.Status != tc.status || c.Reason != tc.reason || !strings.Contains(c.Message, tc.says) {
				t.Errorf("AccessControlled = %s/%s %q, want %s/%s containing %q", c.Status, c.Reason, c.Message, tc.status, tc.reason, tc.says)
			}
			if ev := gateEvents(rec); len(ev) != 1 || !strings.HasPrefix(ev[0], tc.event) {
				t.Errorf("events = %q, want one %q", ev, tc.event)
			}
		})
	}
}

func TestRepairFailedContinuesOnlyUnderAnUnsafeDACL(t *testing.T) {
	refused := &directory.Error{Op: "modify", DN: gatePath, Kind: directory.KindInsufficientAccess, Err: errors.New("insufficient access")}
	for _, tc := range []struct {
		extra  string
		goesOn bool
	}{{gateAURead, true}, {"(A;;RPLCLORC;;;AU)", false}} {
		r, _ := gateReconciler()
		s := gateScope(t, tc.extra)
		s.dir = gateDirectory{rights: directory.Rights{Read: true}}
		err := r.repairFailed(context.Background(), s, refused)
		if (err == nil) != tc.goesOn || (err != nil && !isStop(err, dkmv1.ReasonInsufficientRight)) {
			t.Errorf("%s: repairFailed = %v, want continue=%v (else stop(InsufficientRights))", tc.extra, err, tc.goesOn)
		}
		if c := gateCondition(t, s, dkmv1.ConditionAccessControlled); c.Status != metav1.ConditionFalse || c.Reason != dkmv1.ReasonInsufficientRight ||
			!strings.Contains(c.Message, "Modify permissions (WRITE_DAC)") {
			t.Errorf("%s: AccessControlled = %s/%s %q, want False/InsufficientRights naming WRITE_DAC", tc.extra, c.Status, c.Reason, c.Message)
		}
	}
}
