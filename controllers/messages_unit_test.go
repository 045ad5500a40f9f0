package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// These unit tests pin the reconciler's condition and event messages against a fake directory
// shaped like Samba's DEMO.LOCAL; the envtest suite checks the same behaviour end to end.

var (
	fakeDomainSID = secdesc.MustParseSID("S-1-5-21-1-2-3")
	fakeDomain    = directory.Domain{
		DN: "DC=demo,DC=local", ForestRootDN: "DC=demo,DC=local", DNSName: "demo.local", NetBIOSName: "DEMO",
		SID: fakeDomainSID, ForestRootSID: fakeDomainSID,
	}
)

// fakeDirectory answers ResolvePrincipal from a table and Observe and EffectiveRights from
// fields; any other call panics on the nil embedded interface.
type fakeDirectory struct {
	Directory
	// objects maps lower-case names (as the spec spells them) to the objectSid of the object
	// they resolve to. Like AD, it holds no object for Everyone or Anonymous Logon, but does
	// for the foreignSecurityPrincipals and BUILTIN groups Samba provisions.
	objects map[string]secdesc.SID
	obs     *directory.Observation
	rights  directory.Rights
}

func newFakeDirectory() *fakeDirectory {
	rel := func(rid uint32) secdesc.SID {
		s, _ := secdesc.DomainRelativeSID(fakeDomainSID, rid)
		return s
	}
	f := &fakeDirectory{objects: map[string]secdesc.SID{
		`demo\svc-vmm`:          rel(1105),
		`demo\op`:               rel(1106),
		`demo\domain users`:     rel(513),
		`demo\domain computers`: rel(515),
		`demo\administrator`:    rel(500),
		"s-1-5-21-7-8-9-513":    secdesc.MustParseSID("S-1-5-21-7-8-9-513"), // a trusted domain's Domain Users (FSP)
		"s-1-5-21-7-8-9-1234":   secdesc.MustParseSID("S-1-5-21-7-8-9-1234"),
		"s-1-5-4":               secdesc.MustParseSID("S-1-5-4"),
		"s-1-5-9":               secdesc.MustParseSID("S-1-5-9"),
		"s-1-5-11":              secdesc.MustParseSID("S-1-5-11"),
		"s-1-5-32-544":          secdesc.MustParseSID("S-1-5-32-544"),
		"s-1-5-32-545":          secdesc.MustParseSID("S-1-5-32-545"),
		"s-1-5-32-546":          secdesc.MustParseSID("S-1-5-32-546"),
		"s-1-5-32-554":          secdesc.MustParseSID("S-1-5-32-554"),
		"s-1-5-21-1-2-3-513":    rel(513),
	}}
	return f
}

func (f *fakeDirectory) Domain(context.Context) (directory.Domain, error) { return fakeDomain, nil }

func (f *fakeDirectory) ResolvePrincipal(_ context.Context, name string) (directory.Principal, error) {
	if sid, ok := f.objects[strings.ToLower(strings.TrimSpace(name))]; ok {
		return directory.Principal{Name: name, SID: sid}, nil
	}
	return directory.Principal{}, &directory.Error{Op: "resolve", DN: fakeDomain.DN, Kind: directory.KindUnknownPrincipal,
		Err: fmt.Errorf("no object matches %s", name)}
}

func (f *fakeDirectory) Observe(context.Context, string) (*directory.Observation, error) {
	return f.obs, nil
}

func (f *fakeDirectory) EffectiveRights(context.Context, string) (directory.Rights, error) {
	return f.rights, nil
}

// recordingReconciler returns a reconciler whose events land in the returned recorder.
func recordingReconciler() (*DKMContainerReconciler, *events.FakeRecorder) {
	rec := events.NewFakeRecorder(100)
	return &DKMContainerReconciler{Recorder: rec, Metrics: NewMetrics(nil)}, rec
}

// notes drains the recorder: the notes of the events emitted so far, by reason.
func notes(rec *events.FakeRecorder) map[string][]string {
	out := map[string][]string{}
	for {
		select {
		case e := <-rec.Events:
			// FakeRecorder formats "<type> <reason> <note>".
			parts := strings.SplitN(e, " ", 3)
			if len(parts) == 3 {
				out[parts[1]] = append(out[parts[1]], parts[2])
			}
		default:
			return out
		}
	}
}

func unitDKM(accounts ...string) *dkmv1.DKMContainer {
	return &dkmv1.DKMContainer{
		ObjectMeta: metav1.ObjectMeta{Name: "vmm", Namespace: "vmm", Generation: 1},
		Spec: dkmv1.DKMContainerSpec{
			Directory:       dkmv1.DirectorySpec{URLs: []string{"ldaps://dc1.demo.local"}, BindSecretRef: dkmv1.SecretReference{Name: "bind"}},
			Path:            "CN=VMMDKM,CN=System,DC=demo,DC=local",
			Provisioning:    dkmv1.ProvisioningCreate,
			ServiceAccounts: accounts,
			AccessPolicy:    dkmv1.AccessEnforce,
			KeyProtection:   dkmv1.KeyProtectionSpec{Mode: dkmv1.KeyPlain},
			DeletionPolicy:  dkmv1.DeletionRetain,
		},
	}
}

func connectedScope(obj *dkmv1.DKMContainer, dir Directory) *scope {
	s := newScope(obj, time.Now())
	s.dir = dir
	s.domain = fakeDomain
	s.aliases = secdesc.DomainAliases(fakeDomain.SID, fakeDomain.ForestRootSID)
	s.operatorSID = secdesc.MustParseSID("S-1-5-21-1-2-3-1106")
	return s
}

// Issue 11, defects 1 and 3: every well-known SID or group that stands for everybody is
// InvalidServiceAccount whether or not AD holds an object for it (Everyone and Anonymous Logon
// have none), an account that does not exist is UnknownServiceAccount, and both messages quote
// the name as the spec spells it, without Go escaping.
func TestResolveAccountsMessages(t *testing.T) {
	for _, tc := range []struct {
		name     string
		accounts []string
		reason   string   // "" means the accounts are accepted
		contains []string // in the condition message and the event note
	}{
		{"an ordinary service account", []string{`DEMO\svc-vmm`}, "", nil},
		{"a trusted domain's account", []string{"S-1-5-21-7-8-9-1234"}, "", nil},
		{"Everyone, which has no object in AD", []string{"S-1-1-0"}, dkmv1.ReasonInvalidAccount, []string{`"S-1-1-0"`, "Everyone"}},
		{"Everyone after an ordinary account", []string{`DEMO\svc-vmm`, "S-1-1-0"}, dkmv1.ReasonInvalidAccount, []string{`"S-1-1-0"`, "Everyone"}},
		{"Anonymous Logon, which has no object in AD", []string{"S-1-5-7"}, dkmv1.ReasonInvalidAccount, []string{"Anonymous Logon"}},
		{"Network, which has no object in AD", []string{"S-1-5-2"}, dkmv1.ReasonInvalidAccount, []string{"Network"}},
		{"Service, which has no object in AD", []string{"S-1-5-6"}, dkmv1.ReasonInvalidAccount, []string{"Service"}},
		{"This Organization, which has no object in AD", []string{"S-1-5-15"}, dkmv1.ReasonInvalidAccount, []string{"This Organization"}},
		{"Local, which has no object in AD", []string{"S-1-2-0"}, dkmv1.ReasonInvalidAccount, []string{"Local"}},
		{"Interactive (a foreignSecurityPrincipal)", []string{"S-1-5-4"}, dkmv1.ReasonInvalidAccount, []string{"Interactive"}},
		{"Authenticated Users (a foreignSecurityPrincipal)", []string{"S-1-5-11"}, dkmv1.ReasonInvalidAccount, []string{`"S-1-5-11"`, "Authenticated Users"}},
		{"BUILTIN Users", []string{"S-1-5-32-545"}, dkmv1.ReasonInvalidAccount, []string{`BUILTIN\Users`}},
		{"BUILTIN Guests", []string{"S-1-5-32-546"}, dkmv1.ReasonInvalidAccount, []string{`BUILTIN\Guests`}},
		{"Pre-Windows 2000 Compatible Access", []string{"S-1-5-32-554"}, dkmv1.ReasonInvalidAccount, []string{"Pre-Windows 2000 Compatible Access"}},
		{"Domain Users by name", []string{`DEMO\Domain Users`}, dkmv1.ReasonInvalidAccount, []string{`"DEMO\Domain Users"`, "Domain Users"}},
		{"Domain Users by SID", []string{"S-1-5-21-1-2-3-513"}, dkmv1.ReasonInvalidAccount, []string{"Domain Users"}},
		{"Domain Computers", []string{`DEMO\Domain Computers`}, dkmv1.ReasonInvalidAccount, []string{"Domain Computers"}},
		{"a trusted domain's Domain Users", []string{"S-1-5-21-7-8-9-513"}, dkmv1.ReasonInvalidAccount, []string{"Domain Users"}},
		{"an account that does not exist", []string{`DEMO\no-such-user`}, dkmv1.ReasonUnknownAccount, []string{`"DEMO\no-such-user"`, "does not exist"}},
		{"a SID that does not exist", []string{"S-1-5-21-1-2-3-987654"}, dkmv1.ReasonUnknownAccount, []string{`"S-1-5-21-1-2-3-987654"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, rec := recordingReconciler()
			obj := unitDKM(tc.accounts...)
			s := connectedScope(obj, newFakeDirectory())
			err := r.resolveAccounts(context.Background(), s)
			c := meta.FindStatusCondition(obj.Status.Conditions, dkmv1.ConditionAccessControlled)
			if tc.reason == "" {
				if err != nil || c != nil {
					t.Fatalf("resolveAccounts = %v, condition %+v; want the accounts accepted", err, c)
				}
				if len(s.accounts) != len(tc.accounts) {
					t.Errorf("resolved %d accounts, want %d", len(s.accounts), len(tc.accounts))
				}
				return
			}
			if err == nil || c == nil {
				t.Fatalf("resolveAccounts = %v, condition %+v; want %s", err, c, tc.reason)
			}
			if c.Status != metav1.ConditionFalse || c.Reason != tc.reason {
				t.Fatalf("AccessControlled = %s/%s (%s), want False/%s", c.Status, c.Reason, c.Message, tc.reason)
			}
			got := notes(rec)[tc.reason]
			if len(got) != 1 || got[0] != c.Message {
				t.Errorf("events %q, want one %s event with the condition's message", got, tc.reason)
			}
			for _, want := range tc.contains {
				if !strings.Contains(c.Message, want) {
					t.Errorf("message %q does not contain %q", c.Message, want)
				}
			}
			if strings.Contains(c.Message, `\\`) {
				t.Errorf("message %q doubles a backslash", c.Message)
			}
		})
	}
}

// Issue 11, defect 3: a bind identity that does not resolve is named as written.
func TestConnectQuotesTheBindIdentity(t *testing.T) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	bind := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bind", Namespace: "vmm"},
		Data: map[string][]byte{BindUsernameKey: []byte(`DEMO\no-such-op`), BindPasswordKey: []byte("pw")}}
	r, _ := recordingReconciler()
	r.APIReader = fake.NewClientBuilder().WithScheme(s).WithObjects(bind).Build()
	dir := newFakeDirectory()
	r.Directories = func(directory.Config) (Directory, error) { return dir, nil }
	obj := unitDKM(`DEMO\svc-vmm`)
	if err := r.connect(context.Background(), newScope(obj, time.Now())); err == nil {
		t.Fatal("connect succeeded with a bind identity that does not exist")
	}
	c := meta.FindStatusCondition(obj.Status.Conditions, dkmv1.ConditionDirectoryReachable)
	if c == nil || !strings.Contains(c.Message, `"DEMO\no-such-op"`) || strings.Contains(c.Message, `\\`) {
		t.Errorf("DirectoryReachable = %+v, want a message naming \"DEMO\\no-such-op\" as written", c)
	}
}

// Issue 11, defects 2 and 5: ContainerReady says how the container came to be, in words, and
// the ContainerMissing message of Adopt names the rights the operator checks for the policy.
func TestContainerMessages(t *testing.T) {
	full := directory.Rights{Read: true, WriteProperties: true, WriteDACL: true,
		CreateChild: map[string]bool{"container": true, "contact": true}}
	const path = "CN=VMMDKM,CN=System,DC=demo,DC=local"
	adminDACL, err := secdesc.ParseSDDL("D:(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;DA)", secdesc.DomainAliases(fakeDomainSID, fakeDomainSID))
	if err != nil {
		t.Fatal(err)
	}
	// The container carries the ownership record of the DKMContainer below (unitDKM, as
	// recordingReconciler sees it): this reconciler is its writer.
	record := directory.Owner{Namespace: "vmm", Name: "vmm"}
	existing := &directory.Observation{Exists: true, Container: directory.Object{
		DN: path, SD: adminDACL, Classes: []string{"top", "container"}, Owner: &record, OwnerRecord: record.String()}}
	for _, tc := range []struct {
		name         string
		provisioning dkmv1.ProvisioningMode
		policy       dkmv1.AccessPolicy
		obs          *directory.Observation
		reason       string
		contains     []string
		excludes     []string
	}{
		{"adopted", dkmv1.ProvisioningAdopt, dkmv1.AccessEnforce, existing, dkmv1.ReasonReady,
			[]string{"container " + path + " exists (adopted)"}, []string{"adoptd"}},
		{"adopted, Audit", dkmv1.ProvisioningAdopt, dkmv1.AccessAudit, existing, dkmv1.ReasonReady,
			[]string{"exists (adopted)"}, nil},
		{"created", dkmv1.ProvisioningCreate, dkmv1.AccessEnforce, existing, dkmv1.ReasonReady,
			[]string{"container " + path + " exists (created)"}, nil},
		{"Adopt of a missing container, Enforce", dkmv1.ProvisioningAdopt, dkmv1.AccessEnforce, &directory.Observation{},
			dkmv1.ReasonContainerMissing,
			[]string{"Read", "Write", "Create container objects", "Create contact objects", "Modify permissions"}, nil},
		{"Adopt of a missing container, Audit", dkmv1.ProvisioningAdopt, dkmv1.AccessAudit, &directory.Observation{},
			dkmv1.ReasonContainerMissing,
			[]string{"Read", "Write", "Create container objects", "Create contact objects"}, []string{"Modify permissions"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := recordingReconciler()
			obj := unitDKM(`DEMO\svc-vmm`)
			obj.Spec.Provisioning, obj.Spec.AccessPolicy = tc.provisioning, tc.policy
			dir := newFakeDirectory()
			dir.obs, dir.rights = tc.obs, full
			s := connectedScope(obj, dir)
			s.accounts = []secdesc.SID{dir.objects[`demo\svc-vmm`]}
			_ = r.reconcileContainer(context.Background(), s)
			c := meta.FindStatusCondition(obj.Status.Conditions, dkmv1.ConditionContainerReady)
			if c == nil || c.Reason != tc.reason {
				t.Fatalf("ContainerReady = %+v, want reason %s", c, tc.reason)
			}
			for _, want := range tc.contains {
				if !strings.Contains(c.Message, want) {
					t.Errorf("message %q does not contain %q", c.Message, want)
				}
			}
			for _, bad := range tc.excludes {
				if strings.Contains(c.Message, bad) {
					t.Errorf("message %q contains %q", c.Message, bad)
				}
			}
		})
	}
}

// Issue 11, defect 4: the API server rejects an event whose note is over 1024 bytes, so every
// note the reconciler emits is cut to fit, on a UTF-8 boundary and with a marker, while the
// condition keeps the whole message.
func TestEventNotesFitTheAPILimit(t *testing.T) {
	const limit = 1024
	for _, tc := range []struct {
		name string
		note string
	}{
		{"empty", ""},
		{"short", "repaired the DACL of CN=VMMDKM,CN=System,DC=demo,DC=local"},
		{"exactly the limit", strings.Repeat("a", limit)},
		{"one byte over", strings.Repeat("a", limit+1)},
		{"a long drift list", strings.Repeat("(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;S-1-5-21-1-2-3-1105)", 100)},
		{"multi-byte runes across the cut", strings.Repeat("é", limit)},
		{"four-byte runes across the cut", "x" + strings.Repeat("𝄞", limit)},
		{"far over", strings.Repeat("KeyLost ", 10000)},
	} {
		for _, emit := range []struct {
			kind string
			fn   func(r *DKMContainerReconciler, obj *dkmv1.DKMContainer, note string)
		}{
			{"Warning", func(r *DKMContainerReconciler, obj *dkmv1.DKMContainer, note string) {
				r.warn(obj, "Reason", "Action", note)
			}},
			{"Normal", func(r *DKMContainerReconciler, obj *dkmv1.DKMContainer, note string) {
				r.normal(obj, "Reason", "Action", note)
			}},
		} {
			t.Run(tc.name+"/"+emit.kind, func(t *testing.T) {
				r, rec := recordingReconciler()
				emit.fn(r, unitDKM(), tc.note)
				got := notes(rec)["Reason"]
				if len(got) != 1 {
					t.Fatalf("%d events, want 1", len(got))
				}
				note := got[0]
				if len(note) > limit {
					t.Fatalf("note of %d bytes, the API server accepts at most %d", len(note), limit)
				}
				if !utf8.ValidString(note) {
					t.Errorf("note is not valid UTF-8: %q", note)
				}
				if len(tc.note) <= limit {
					if note != tc.note {
						t.Errorf("a note that fits was changed: %q", note)
					}
					return
				}
				if !strings.Contains(note, "truncated") {
					t.Errorf("a truncated note does not say so: ...%q", note[max(0, len(note)-80):])
				}
				kept := note[:strings.LastIndex(note, "…")]
				if !strings.HasPrefix(tc.note, kept) || len(kept) < limit/2 {
					t.Errorf("kept %d bytes that are not a prefix of the note", len(kept))
				}
			})
		}
	}
}

// Issue 11, defect 4: a condition keeps the whole message up to the schema's maxLength of 32768
// (metav1.Condition), beyond which the API server would refuse the whole status update.
func TestConditionMessagesFitTheSchema(t *testing.T) {
	const limit = 32768
	for _, tc := range []struct {
		name string
		msg  string
	}{
		{"a long drift, kept whole", strings.Repeat("(A;;LCRPLORC;;;S-1-5-21-1-2-3-7000)", 500)},
		{"exactly the limit", strings.Repeat("a", limit)},
		{"over the limit", strings.Repeat("(A;;LCRPLORC;;;S-1-5-21-1-2-3-7000)", 1000)},
		{"multi-byte runes over the limit", strings.Repeat("é", limit)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := unitDKM()
			markFalse(obj, dkmv1.ConditionAccessControlled, dkmv1.ReasonDriftDetected, tc.msg)
			summariseReady(obj)
			for _, c := range obj.Status.Conditions {
				if len(c.Message) > limit || !utf8.ValidString(c.Message) {
					t.Errorf("%s: message of %d bytes (valid UTF-8: %v), the schema allows %d characters",
						c.Type, len(c.Message), utf8.ValidString(c.Message), limit)
				}
			}
			got := meta.FindStatusCondition(obj.Status.Conditions, dkmv1.ConditionAccessControlled).Message
			if len(tc.msg) <= limit && got != tc.msg {
				t.Errorf("a message that fits was changed")
			}
			if len(tc.msg) > limit && (!strings.HasSuffix(got, "(truncated)") || !strings.HasPrefix(tc.msg, strings.TrimSuffix(got, "… (truncated)"))) {
				t.Errorf("an over-long message is not a marked prefix: ...%s", got[len(got)-40:])
			}
		})
	}
}
