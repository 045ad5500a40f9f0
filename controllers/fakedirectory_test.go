package controllers

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// fakeAD is an in-memory Directory with AD's semantics as *directory.Client has them
// (internal/directory/write.go and observe.go): adds carry the security descriptor and the
// ownership record, fail with KindAlreadyExists on an existing DN and KindParentMissing
// without a parent; SetActiveKey and SetOwner are compare-and-swap; DeleteOwned deletes only
// what the owner created, deepest first. Several fakeADs (peer) can share one tree, as several
// operators share one domain, each with its own call counts and injected failures.
//
// Failures are injected per method and call number (1-based, counting every call of that
// method on this fakeAD): failOn fails the call without applying it, loseAnswer applies it and
// then fails (the answer was lost), before runs a function first (another writer acting
// between this writer's read and its write).
type fakeAD struct {
	tree       *adTree
	domain     directory.Domain
	principals map[string]secdesc.SID // lower-case name → SID
	rights     directory.Rights

	// name is this DC's server name; pdc points at the PDC emulator's NTDS Settings DN, shared
	// by the DCs of a replicatedAD. down makes every call fail as an unreachable DC does.
	name string
	pdc  *string

	mu     sync.Mutex
	calls  map[string]int
	writes map[string]int
	faults map[string]map[int]*adFault
	down   bool
}

type adFault struct {
	err     error
	applied bool   // the write happens, then err is returned
	before  func() // runs before the call is applied (no lock held)
}

// Write methods: a reader must never call one.
var adWriteMethods = []string{
	"CreateContainer", "SetOwner", "ReplaceDACL", "CreateManager", "AddKey", "SetActiveKey", "ReplaceKeyBlob", "DeleteOwned",
}

var (
	adDomainSID = secdesc.MustParseSID("S-1-5-21-41-42-43")
	adDomain    = directory.Domain{
		DN: "DC=demo,DC=local", ForestRootDN: "DC=demo,DC=local", DNSName: "demo.local", NetBIOSName: "DEMO",
		SID: adDomainSID, ForestRootSID: adDomainSID,
	}
	adOperatorSID = adRel(1106)
	adServiceSID  = adRel(1105)
)

func adRel(rid uint32) secdesc.SID {
	s, err := secdesc.DomainRelativeSID(adDomainSID, rid)
	if err != nil {
		panic(err)
	}
	return s
}

// newFakeAD returns a directory holding the domain root and CN=System, with the operator
// (DEMO\op) and one service account (DEMO\svc-vmm).
func newFakeAD(now func() time.Time) *fakeAD {
	tree := &adTree{nodes: map[string]*adNode{}, now: now}
	root, _, depth, err := adKey(adDomain.DN)
	if err != nil {
		panic(err)
	}
	tree.nodes[root] = &adNode{dn: adDomain.DN, depth: depth, guid: newGUID(), class: "domainDNS", sd: secdesc.ChildDescriptor()}
	if err := tree.add("CN=System,"+adDomain.DN, "container", "", secdesc.ChildDescriptor(), nil); err != nil {
		panic(err)
	}
	return newFakeADOn(tree)
}

func newFakeADOn(tree *adTree) *fakeAD {
	pdc := ntdsSettings("DC1")
	return &fakeAD{
		tree:   tree,
		name:   "DC1",
		pdc:    &pdc,
		domain: adDomain,
		principals: map[string]secdesc.SID{
			`demo\op`:      adOperatorSID,
			`demo\svc-vmm`: adServiceSID,
		},
		rights: directory.Rights{Read: true, WriteProperties: true, WriteDACL: true, SDRights: 0x7,
			CreateChild: map[string]bool{"container": true, "contact": true}},
		calls:  map[string]int{},
		writes: map[string]int{},
		faults: map[string]map[int]*adFault{},
	}
}

// peer is another client of the same directory (another operator, another cluster).
func (f *fakeAD) peer() *fakeAD { return newFakeADOn(f.tree) }

func (f *fakeAD) fault(method string, n int) *adFault {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.faults[method] == nil {
		f.faults[method] = map[int]*adFault{}
	}
	if f.faults[method][n] == nil {
		f.faults[method][n] = &adFault{}
	}
	return f.faults[method][n]
}

// failOn makes the nth call of method fail with err, changing nothing.
func (f *fakeAD) failOn(method string, n int, err error) { f.fault(method, n).err = err }

// loseAnswer makes the nth call of method take effect and then fail with err.
func (f *fakeAD) loseAnswer(method string, n int, err error) {
	ft := f.fault(method, n)
	ft.err, ft.applied = err, true
}

// before runs fn at the start of the nth call of method.
func (f *fakeAD) before(method string, n int, fn func()) { f.fault(method, n).before = fn }

// enter counts a call and returns its fault (nil: none), having run its before hook. A DC that
// is down fails every call, changing nothing.
func (f *fakeAD) enter(method string) *adFault {
	f.mu.Lock()
	f.calls[method]++
	ft := f.faults[method][f.calls[method]]
	down := f.down
	f.mu.Unlock()
	if down {
		return &adFault{err: transientErr("dial", "ldaps://"+strings.ToLower(f.name)+".demo.local")}
	}
	if ft != nil && ft.before != nil {
		ft.before()
	}
	return ft
}

// write runs a write with the call's fault applied, counting it when AD changed.
func (f *fakeAD) write(method string, do func() error) error {
	ft := f.enter(method)
	if ft != nil && ft.err != nil && !ft.applied {
		return ft.err
	}
	if err := do(); err != nil {
		return err
	}
	f.mu.Lock()
	f.writes[method]++
	f.mu.Unlock()
	if ft != nil && ft.err != nil {
		return ft.err
	}
	return nil
}

// read runs a read with the call's injected failure (if any).
func (f *fakeAD) read(method string) error {
	if ft := f.enter(method); ft != nil && ft.err != nil {
		return ft.err
	}
	return nil
}

// callCount is how often method was called (failed calls too).
func (f *fakeAD) callCount(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// writeCount is how many calls of method changed the directory.
func (f *fakeAD) writeCount(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes[method]
}

// writeCalls counts the calls of every write method, failed ones included, by method.
func (f *fakeAD) writeCalls() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for _, m := range adWriteMethods {
		if n := f.calls[m]; n > 0 {
			out[m] = n
		}
	}
	return out
}

// totalWrites is the number of calls that changed the directory.
func (f *fakeAD) totalWrites() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, v := range f.writes {
		n += v
	}
	return n
}

// adErr builds the *directory.Error the real client returns.
func adErr(op, dn string, kind directory.Kind, code uint16, msg string) error {
	return &directory.Error{Op: op, DN: dn, Kind: kind, Code: int(code), Err: errors.New(msg)}
}

// transientErr is what a dropped connection looks like.
func transientErr(op, dn string) error {
	return adErr(op, dn, directory.KindTransient, ldap.LDAPResultUnavailable, "connection reset by peer")
}

// --- Directory ---

func (f *fakeAD) Domain(context.Context) (directory.Domain, error) {
	if err := f.read("Domain"); err != nil {
		return directory.Domain{}, err
	}
	return f.domain, nil
}

func (f *fakeAD) ServerInfo(context.Context) (directory.ServerInfo, error) {
	if err := f.read("ServerInfo"); err != nil {
		return directory.ServerInfo{}, err
	}
	return directory.ServerInfo{ServiceName: ntdsSettings(f.name), PDC: *f.pdc}, nil
}

func (f *fakeAD) ResolvePrincipal(_ context.Context, name string) (directory.Principal, error) {
	if err := f.read("ResolvePrincipal"); err != nil {
		return directory.Principal{}, err
	}
	if sid, ok := f.principals[strings.ToLower(strings.TrimSpace(name))]; ok {
		return directory.Principal{Name: name, SID: sid}, nil
	}
	return directory.Principal{}, adErr("resolve", f.domain.DN, directory.KindUnknownPrincipal, 0, "no object matches "+name)
}

func (f *fakeAD) Observe(_ context.Context, containerDN string) (*directory.Observation, error) {
	if err := f.read("Observe"); err != nil {
		return nil, err
	}
	if _, err := directory.ParseDN(containerDN); err != nil {
		return nil, &directory.Error{Op: "search", DN: containerDN, Kind: directory.KindInvalidDN, Err: err}
	}
	return f.tree.observe(containerDN), nil
}

func (f *fakeAD) EffectiveRights(_ context.Context, dn string) (directory.Rights, error) {
	if err := f.read("EffectiveRights"); err != nil {
		return directory.Rights{}, err
	}
	if f.tree.get(dn) == nil {
		return directory.Rights{}, adErr("search", dn, directory.KindNoSuchObject, ldap.LDAPResultNoSuchObject, "no such object")
	}
	return f.rights, nil
}

func (f *fakeAD) CreateContainer(_ context.Context, dn string, sd *secdesc.SecurityDescriptor, owner directory.Owner) (directory.Object, error) {
	var obj directory.Object
	err := f.write("CreateContainer", func() error {
		if err := f.tree.addOwned(dn, "container", owner, sd, nil); err != nil {
			return err
		}
		obj = f.tree.object(dn)
		return nil
	})
	if err != nil {
		return directory.Object{}, err
	}
	return obj, nil
}

func (f *fakeAD) SetOwner(_ context.Context, dn, from string, to directory.Owner) error {
	return f.write("SetOwner", func() error {
		if err := to.Validate(); err != nil {
			return adErr("modify", dn, directory.KindConstraint, 0, err.Error())
		}
		return f.tree.swap(dn, func(n *adNode) *string { return &n.owner }, from, to.String())
	})
}

func (f *fakeAD) ReplaceDACL(_ context.Context, dn string, sd *secdesc.SecurityDescriptor) error {
	return f.write("ReplaceDACL", func() error {
		f.tree.mu.Lock()
		defer f.tree.mu.Unlock()
		n, err := f.tree.lookupLocked("modify", dn)
		if err != nil {
			return err
		}
		n.sd = secdesc.RepairDescriptor(sd)
		f.tree.touchLocked(n)
		return nil
	})
}

func (f *fakeAD) CreateManager(_ context.Context, containerDN, managerGUID string, owner directory.Owner) (directory.Object, error) {
	dn := directory.ChildDN(containerDN, directory.ManagerPrefix+managerGUID)
	var obj directory.Object
	err := f.write("CreateManager", func() error {
		if err := f.tree.addOwned(dn, "container", owner, secdesc.ChildDescriptor(), nil); err != nil {
			return err
		}
		obj = f.tree.object(dn)
		return nil
	})
	if err != nil {
		return directory.Object{}, err
	}
	return obj, nil
}

func (f *fakeAD) AddKey(_ context.Context, managerDN, keyID string, blob []byte, owner directory.Owner) (directory.KeyObject, error) {
	dn := directory.ChildDN(managerDN, keyID)
	var key directory.KeyObject
	err := f.write("AddKey", func() error {
		switch {
		case keyID == "":
			return adErr("add", managerDN, directory.KindConstraint, 0, "empty key ID")
		case strings.EqualFold(keyID, directory.PolicyName):
			return adErr("add", dn, directory.KindConstraint, 0, "reserved for the policy contact")
		case len(blob) == 0:
			return adErr("add", dn, directory.KindConstraint, 0, "empty key blob")
		}
		if err := f.tree.addOwned(dn, "contact", owner, secdesc.ChildDescriptor(), func(n *adNode) {
			n.l, n.photo = keyID, slices.Clone(blob)
		}); err != nil {
			return err
		}
		key = directory.KeyObject{Object: f.tree.object(dn), ID: keyID, Blob: slices.Clone(blob)}
		return nil
	})
	if err != nil {
		return directory.KeyObject{}, err
	}
	return key, nil
}

func (f *fakeAD) SetActiveKey(_ context.Context, managerDN, fromID, toID string, owner directory.Owner) error {
	dn := directory.ChildDN(managerDN, directory.PolicyName)
	return f.write("SetActiveKey", func() error {
		if toID == "" {
			return adErr("modify", managerDN, directory.KindConstraint, 0, "empty key ID")
		}
		if fromID == "" {
			return f.tree.addOwned(dn, "contact", owner, secdesc.ChildDescriptor(), func(n *adNode) { n.displayName = toID })
		}
		return f.tree.swap(dn, func(n *adNode) *string { return &n.displayName }, fromID, toID)
	})
}

func (f *fakeAD) ReplaceKeyBlob(_ context.Context, keyDN string, blob []byte) error {
	return f.write("ReplaceKeyBlob", func() error {
		if _, err := directory.ParseDN(keyDN); err != nil {
			return &directory.Error{Op: "modify", DN: keyDN, Kind: directory.KindInvalidDN, Err: err}
		}
		if len(blob) == 0 {
			return adErr("modify", keyDN, directory.KindConstraint, 0, "empty key blob")
		}
		f.tree.mu.Lock()
		defer f.tree.mu.Unlock()
		n, err := f.tree.lookupLocked("modify", keyDN)
		if err != nil {
			return err
		}
		n.photo = slices.Clone(blob)
		f.tree.touchLocked(n)
		return nil
	})
}

func (f *fakeAD) DeleteOwned(_ context.Context, root secdesc.GUID, owner directory.Owner) ([]string, error) {
	var left []string
	err := f.write("DeleteOwned", func() error {
		left = f.tree.deleteOwned(root, owner)
		return nil
	})
	return left, err
}

var _ Directory = (*fakeAD)(nil)

// --- the tree ---

// adTree is the directory's objects by normalised DN.
type adTree struct {
	mu    sync.Mutex
	nodes map[string]*adNode
	usn   int64
	now   func() time.Time
}

// adNode is one object: what the operator reads and writes of it.
type adNode struct {
	dn          string
	depth       int
	guid        secdesc.GUID
	class       string // container or contact
	owner       string // adminDescription, raw
	sd          *secdesc.SecurityDescriptor
	l           string
	photo       []byte // thumbnailPhoto
	displayName string
	created     time.Time
	usn         int64
	ver         int64 // the object's version, carried by replication (last writer wins)
}

// adKey normalises a DN for lookups (AD compares DNs case-insensitively, spaces around
// separators ignored).
func adKey(dn string) (key string, parent string, depth int, err error) {
	parsed, err := directory.ParseDN(dn)
	if err != nil {
		return "", "", 0, err
	}
	key = strings.ToLower(directory.FormatDN(parsed))
	if len(parsed.RDNs) > 1 {
		parent = strings.ToLower(directory.FormatDN(&ldap.DN{RDNs: parsed.RDNs[1:]}))
	}
	return key, parent, len(parsed.RDNs), nil
}

func adCN(dn string) string {
	parsed, err := directory.ParseDN(dn)
	if err != nil || len(parsed.RDNs) == 0 || len(parsed.RDNs[0].Attributes) == 0 {
		return ""
	}
	return parsed.RDNs[0].Attributes[0].Value
}

func newGUID() secdesc.GUID {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	g, err := secdesc.GUIDFromBytes(b)
	if err != nil {
		panic(err)
	}
	return g
}

func (t *adTree) touchLocked(n *adNode) {
	t.usn++
	n.usn = t.usn
	n.ver++
}

// addOwned is an add as addWithSD makes it: a security descriptor and a valid record required.
func (t *adTree) addOwned(dn, class string, owner directory.Owner, sd *secdesc.SecurityDescriptor, set func(*adNode)) error {
	if _, err := directory.ParseDN(dn); err != nil {
		return &directory.Error{Op: "add", DN: dn, Kind: directory.KindInvalidDN, Err: err}
	}
	if sd == nil {
		return adErr("add", dn, directory.KindOther, 0, "no security descriptor for the new object")
	}
	if err := owner.Validate(); err != nil {
		return adErr("add", dn, directory.KindOther, 0, err.Error())
	}
	return t.add(dn, class, owner.String(), sd, set)
}

// add creates an object (any record, for seeding objects a person or another product made).
func (t *adTree) add(dn, class, record string, sd *secdesc.SecurityDescriptor, set func(*adNode)) error {
	key, parent, depth, err := adKey(dn)
	if err != nil {
		return &directory.Error{Op: "add", DN: dn, Kind: directory.KindInvalidDN, Err: err}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.nodes[key] != nil {
		return adErr("add", dn, directory.KindAlreadyExists, ldap.LDAPResultEntryAlreadyExists, "entry already exists")
	}
	if parent == "" || t.nodes[parent] == nil {
		return adErr("add", dn, directory.KindParentMissing, ldap.LDAPResultNoSuchObject, "parent does not exist")
	}
	n := &adNode{dn: dn, depth: depth, guid: newGUID(), class: class, owner: record, created: t.now().UTC().Truncate(time.Second)}
	if sd != nil {
		n.sd = sd.Clone()
	}
	if set != nil {
		set(n)
	}
	t.touchLocked(n)
	t.nodes[key] = n
	return nil
}

func (t *adTree) lookupLocked(op, dn string) (*adNode, error) {
	key, _, _, err := adKey(dn)
	if err != nil {
		return nil, &directory.Error{Op: op, DN: dn, Kind: directory.KindInvalidDN, Err: err}
	}
	n := t.nodes[key]
	if n == nil {
		return nil, adErr(op, dn, directory.KindNoSuchObject, ldap.LDAPResultNoSuchObject, "no such object")
	}
	return n, nil
}

// swap is swapValue: delete the value from (when set) and add to, in one modify. AD refuses
// when from is no longer the value (noSuchAttribute) or, with from empty, when there is a
// value already (attributeOrValueExists): both are KindConflict. Values compare
// case-insensitively (displayName and adminDescription are Unicode strings, matched
// case-insensitively).
func (t *adTree) swap(dn string, attr func(*adNode) *string, from, to string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, err := t.lookupLocked("modify", dn)
	if err != nil {
		return err
	}
	v := attr(n)
	switch {
	case from == "" && *v != "":
		return adErr("modify", dn, directory.KindConflict, ldap.LDAPResultAttributeOrValueExists, "attribute or value exists")
	case from != "" && !strings.EqualFold(*v, from):
		return adErr("modify", dn, directory.KindConflict, ldap.LDAPResultNoSuchAttribute, "no such attribute")
	}
	*v = to
	t.touchLocked(n)
	return nil
}

func (t *adTree) get(dn string) *adNode {
	key, _, _, err := adKey(dn)
	if err != nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.nodes[key]; n != nil {
		c := *n
		c.photo = slices.Clone(n.photo)
		return &c
	}
	return nil
}

// object is dn as readObject returns it.
func (t *adTree) object(dn string) directory.Object {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, err := t.lookupLocked("search", dn)
	if err != nil {
		panic(err)
	}
	return n.object()
}

func (n *adNode) object() directory.Object {
	o := directory.Object{DN: n.dn, GUID: n.guid, USNChanged: n.usn, Created: n.created, OwnerRecord: n.owner}
	if n.sd != nil {
		o.SD = n.sd.Clone()
	}
	switch n.class {
	case "contact":
		o.Classes = []string{"top", "person", "organizationalPerson", "contact"}
	default:
		o.Classes = []string{"top", n.class}
	}
	if n.owner != "" {
		if owner, err := directory.ParseOwner(n.owner); err == nil {
			o.Owner = &owner
		}
	}
	return o
}

// under lists the objects below dn (not dn itself), shallowest first.
func (t *adTree) underLocked(dn string) []*adNode {
	key, _, _, err := adKey(dn)
	if err != nil {
		return nil
	}
	var out []*adNode
	for k, n := range t.nodes {
		if strings.HasSuffix(k, ","+key) {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b *adNode) int { return cmp.Or(cmp.Compare(a.depth, b.depth), strings.Compare(a.dn, b.dn)) })
	return out
}

func isDirectChild(child *adNode, parentDN string) bool {
	_, parent, _, err := adKey(child.dn)
	pk, _, _, perr := adKey(parentDN)
	return err == nil && perr == nil && parent == pk
}

// observe builds the Observation exactly as buildObservation does from a subtree search.
func (t *adTree) observe(containerDN string) *directory.Observation {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := t.lookupLocked("search", containerDN)
	if err != nil {
		return &directory.Observation{}
	}
	obs := &directory.Observation{Exists: true, Container: c.object()}
	below := t.underLocked(containerDN)
	var managers []*adNode
	for _, n := range below {
		if inConflictBelow(n.dn, c.depth) {
			o := n.object()
			cf := directory.Conflict{Object: o}
			if n.class == "contact" && !strings.EqualFold(adCN(n.dn), directory.PolicyName) {
				cf.KeyID = n.l
			}
			obs.Conflicts = append(obs.Conflicts, cf)
		}
	}
	below = slices.DeleteFunc(below, func(n *adNode) bool { return inConflictBelow(n.dn, c.depth) })
	for _, n := range below {
		if isDirectChild(n, c.dn) && n.class == "container" && strings.HasPrefix(strings.ToLower(adCN(n.dn)), strings.ToLower(directory.ManagerPrefix)) {
			managers = append(managers, n)
			obs.Managers = append(obs.Managers, directory.Manager{Object: n.object()})
		}
	}
	for _, n := range below {
		if slices.Contains(managers, n) {
			continue
		}
		i := slices.IndexFunc(managers, func(m *adNode) bool { return isDirectChild(n, m.dn) })
		if i < 0 || n.class != "contact" {
			obs.Foreign = append(obs.Foreign, n.dn)
			continue
		}
		m := &obs.Managers[i]
		if strings.EqualFold(adCN(n.dn), directory.PolicyName) {
			m.Policy = &directory.PolicyObject{Object: n.object(), ActiveKeyID: n.displayName}
			continue
		}
		id := n.l
		if id == "" {
			id = adCN(n.dn)
		}
		m.Keys = append(m.Keys, directory.KeyObject{Object: n.object(), ID: id, Blob: slices.Clone(n.photo)})
	}
	slices.SortFunc(obs.Managers, func(a, b directory.Manager) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.DN, b.DN))
	})
	for i := range obs.Managers {
		slices.SortFunc(obs.Managers[i].Keys, func(a, b directory.KeyObject) int {
			return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
		})
	}
	return obs
}

// inConflictBelow: dn, or an ancestor deeper than depth, has a replication conflict name.
func inConflictBelow(dn string, depth int) bool {
	parsed, err := directory.ParseDN(dn)
	if err != nil {
		return false
	}
	for i := 0; i < len(parsed.RDNs)-depth; i++ {
		for _, a := range parsed.RDNs[i].Attributes {
			if directory.IsConflictName(a.Value) {
				return true
			}
		}
	}
	return false
}

// deleteOwned is DeleteOwned: objects whose record names owner with origin created, deepest
// first; anything else, and anything that still holds something, is left.
func (t *adTree) deleteOwned(root secdesc.GUID, owner directory.Owner) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var rootNode *adNode
	for _, n := range t.nodes {
		if n.guid == root {
			rootNode = n
		}
	}
	if rootNode == nil {
		return nil
	}
	items := append(t.underLocked(rootNode.dn), rootNode)
	slices.SortStableFunc(items, func(a, b *adNode) int { return cmp.Compare(b.depth, a.depth) })
	var left []string
	for _, n := range items {
		rec, err := directory.ParseOwner(n.owner)
		if err != nil || !rec.Equal(owner) || rec.Claimed || inConflictBelow(n.dn, 0) {
			left = append(left, n.dn)
			continue
		}
		if len(t.underLocked(n.dn)) > 0 { // notAllowedOnNonLeaf
			left = append(left, n.dn)
			continue
		}
		key, _, _, _ := adKey(n.dn)
		delete(t.nodes, key)
	}
	return left
}

// --- inspection and seeding, for tests ---

// adView is a directory object as a test inspects it.
type adView struct {
	DN, Class, Owner, L, DisplayName string
	GUID                             secdesc.GUID
	Photo                            []byte
	SD                               *secdesc.SecurityDescriptor
}

func (n *adNode) view() adView {
	return adView{DN: n.dn, Class: n.class, Owner: n.owner, L: n.l, DisplayName: n.displayName, GUID: n.guid,
		Photo: slices.Clone(n.photo), SD: n.sd.Clone()}
}

// lookup returns dn's object, or false.
func (f *fakeAD) lookup(dn string) (adView, bool) {
	n := f.tree.get(dn)
	if n == nil {
		return adView{}, false
	}
	return n.view(), true
}

// below lists every object below dn, shallowest first.
func (f *fakeAD) below(dn string) []adView {
	f.tree.mu.Lock()
	defer f.tree.mu.Unlock()
	var out []adView
	for _, n := range f.tree.underLocked(dn) {
		out = append(out, n.view())
	}
	return out
}

// layout summarises a container's DKM objects: the DC Managers, the key IDs of each (sorted)
// and CryptoPolicy's displayName ("" when absent).
type adLayout struct {
	Managers []string
	Keys     map[string][]string // manager DN → key IDs
	Policy   map[string]string   // manager DN → active key ID
	Foreign  []string
}

func (f *fakeAD) layout(containerDN string) adLayout {
	obs := f.tree.observe(containerDN)
	out := adLayout{Keys: map[string][]string{}, Policy: map[string]string{}, Foreign: obs.Foreign}
	for _, m := range obs.Managers {
		out.Managers = append(out.Managers, m.DN)
		ids := []string{}
		for _, k := range m.Keys {
			ids = append(ids, k.ID)
		}
		slices.Sort(ids)
		out.Keys[m.DN] = ids
		if m.Policy != nil {
			out.Policy[m.DN] = m.Policy.ActiveKeyID
		}
	}
	return out
}

// seed adds an object as a person, another product or another operator would, bypassing
// the counts and faults; record is the raw adminDescription ("" for none).
func (f *fakeAD) seed(t testing.TB, dn, class, record string, sd *secdesc.SecurityDescriptor, set func(*adNode)) adView {
	t.Helper()
	if sd == nil {
		sd = secdesc.ChildDescriptor()
	}
	if err := f.tree.add(dn, class, record, sd, set); err != nil {
		t.Fatalf("seeding %s: %v", dn, err)
	}
	v, _ := f.lookup(dn)
	return v
}

// setAttr changes an object behind the operator's back (a person, another writer).
func (f *fakeAD) setAttr(t testing.TB, dn string, change func(*adNode)) {
	t.Helper()
	f.tree.mu.Lock()
	defer f.tree.mu.Unlock()
	n, err := f.tree.lookupLocked("modify", dn)
	if err != nil {
		t.Fatalf("changing %s: %v", dn, err)
	}
	change(n)
	f.tree.touchLocked(n)
}

// remove deletes dn and everything below it behind the operator's back.
func (f *fakeAD) remove(t testing.TB, dn string) {
	t.Helper()
	f.tree.mu.Lock()
	defer f.tree.mu.Unlock()
	n, err := f.tree.lookupLocked("delete", dn)
	if err != nil {
		t.Fatalf("removing %s: %v", dn, err)
	}
	for _, c := range append(f.tree.underLocked(dn), n) {
		key, _, _, _ := adKey(c.dn)
		delete(f.tree.nodes, key)
	}
}

func (v adView) String() string { return fmt.Sprintf("%s (%s, %s)", v.DN, v.Class, v.Owner) }

// --- several DCs of one domain ---

// replicatedAD is several DCs of one domain, each with its own copy of the directory (the same
// objects, the same GUIDs, as a DC joined to the domain has). Nothing replicates until a test
// calls replicate, so replication lag is whatever the test makes it. Each DC counts its own
// calls and can be stopped (down) and started.
type replicatedAD struct {
	dcs  []*fakeAD
	urls []string
	pdc  string
}

// ntdsSettings is a DC's dsServiceName.
func ntdsSettings(name string) string {
	return "CN=NTDS Settings,CN=" + name + ",CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration," + adDomain.DN
}

// newReplicatedAD returns n DCs (DC1 … DCn at ldaps://dcN.demo.local); DC1 is the PDC emulator.
func newReplicatedAD(now func() time.Time, n int) *replicatedAD {
	d := &replicatedAD{pdc: ntdsSettings("DC1")}
	first := newFakeAD(now)
	for i := 1; i <= n; i++ {
		dc := first
		if i > 1 {
			dc = newFakeADOn(first.tree.clone())
		}
		dc.name, dc.pdc = fmt.Sprintf("DC%d", i), &d.pdc
		d.dcs = append(d.dcs, dc)
		d.urls = append(d.urls, fmt.Sprintf("ldaps://dc%d.demo.local", i))
	}
	return d
}

// dc is DC number i (1-based, as the names).
func (d *replicatedAD) dc(i int) *fakeAD { return d.dcs[i-1] }

// factory hands out each DC for a config naming its URL alone, as the reconciler asks for them.
func (d *replicatedAD) factory(t testing.TB) DirectoryFactory {
	return func(cfg directory.Config) (Directory, error) {
		if len(cfg.URLs) != 1 {
			t.Errorf("a Directory for several URLs %v: each DC must be read on its own", cfg.URLs)
			return nil, errors.New("several URLs")
		}
		i := slices.Index(d.urls, cfg.URLs[0])
		if i < 0 {
			t.Errorf("unknown URL %s", cfg.URLs[0])
			return nil, errors.New("unknown URL")
		}
		return d.dcs[i], nil
	}
}

// setDown stops (true) or starts DC i.
func (d *replicatedAD) setDown(i int, down bool) {
	f := d.dc(i)
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

// replicate copies what DC from holds and DC to lacks or holds an older version of (by
// objectGUID, last writer wins per object), as one inbound replication on to does. An added
// object whose name DC to already gives another object loses the name: it is renamed
// "<name>\nCNF:<objectGUID>", as AD's conflict resolution does (simplified: the incoming one
// always loses). Deletions are not replicated.
func (d *replicatedAD) replicate(from, to int) {
	src, dst := d.dc(from).tree, d.dc(to).tree
	src.mu.Lock()
	nodes := make([]*adNode, 0, len(src.nodes))
	byKey := map[string]*adNode{}
	for k, n := range src.nodes {
		c := *n
		c.photo = slices.Clone(n.photo)
		if n.sd != nil {
			c.sd = n.sd.Clone()
		}
		nodes = append(nodes, &c)
		byKey[k] = &c
	}
	src.mu.Unlock()
	slices.SortFunc(nodes, func(a, b *adNode) int { return cmp.Compare(a.depth, b.depth) })

	dst.mu.Lock()
	defer dst.mu.Unlock()
	byGUID := map[secdesc.GUID]*adNode{}
	for _, n := range dst.nodes {
		byGUID[n.guid] = n
	}
	for _, n := range nodes {
		if have := byGUID[n.guid]; have != nil {
			if n.ver > have.ver {
				dn := have.dn
				*have = *n
				have.dn = dn
				dst.usn++
				have.usn = dst.usn
			}
			continue
		}
		_, srcParent, _, _ := adKey(n.dn)
		sp := byKey[srcParent]
		if sp == nil || byGUID[sp.guid] == nil {
			continue
		}
		parent := byGUID[sp.guid]
		c := *n
		c.dn = directory.ChildDN(parent.dn, adCN(n.dn))
		if key, _, _, _ := adKey(c.dn); dst.nodes[key] != nil {
			c.dn = directory.ChildDN(parent.dn, adCN(n.dn)+"\nCNF:"+n.guid.String())
		}
		key, _, _, _ := adKey(c.dn)
		dst.usn++
		c.usn = dst.usn
		dst.nodes[key] = &c
		byGUID[c.guid] = &c
	}
}

// clone copies the tree (a DC joined from this one).
func (t *adTree) clone() *adTree {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := &adTree{nodes: map[string]*adNode{}, usn: t.usn, now: t.now}
	for k, n := range t.nodes {
		c := *n
		c.photo = slices.Clone(n.photo)
		if n.sd != nil {
			c.sd = n.sd.Clone()
		}
		out.nodes[k] = &c
	}
	return out
}
