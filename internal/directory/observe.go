package directory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dkm-operator/dkm-operator/internal/secdesc"
	"github.com/go-ldap/ldap/v3"
)

// Names of the DKM objects inside a container.
const (
	// ManagerPrefix starts the CN of the container that holds the keys: "DC Manager <GUID>".
	ManagerPrefix = "DC Manager "
	// PolicyName is the CN of the contact whose displayName is the active key ID.
	PolicyName = "CryptoPolicy"
)

// Observation is everything the reconciler needs to know about one DKM container.
type Observation struct {
	Exists    bool
	Container Object
	// Managers has one entry per "DC Manager <GUID>" child, oldest first. There should be
	// one; the caller decides what several mean.
	Managers []Manager
	// Foreign lists the DNs below the container that are not DKM objects (a DC Manager and the
	// contacts in it). A DKM container holds nothing else, so any entry here means spec.path
	// names some other container (a typo such as CN=System): the operator must not claim it.
	Foreign []string
	// Conflicts lists the objects below the container that AD's replication conflict resolution
	// renamed (IsConflictName), and everything inside them: two DCs each accepted an add of the
	// same name before replicating. They are never a key source; the caller reports them.
	Conflicts []Conflict
}

// Conflict is an object renamed by replication conflict resolution, or one inside such an object.
type Conflict struct {
	Object
	// KeyID is the key ID (attribute l) when the object is a key contact.
	KeyID string
}

// conflictMark is what AD (and Samba, repl_meta_data.c) puts into the RDN value of the object
// that loses a name conflict: "<name>\nCNF:<objectGUID>", shown in DNs as "\0ACNF:".
const conflictMark = "\nCNF:"

// IsConflictName reports whether an RDN value carries the replication conflict mark.
func IsConflictName(rdn string) bool { return strings.Contains(rdn, conflictMark) }

// inConflict reports whether dn, or one of its ancestors below base, is a conflict object.
func inConflict(dn, base *ldap.DN) bool {
	for i := 0; i < len(dn.RDNs)-len(base.RDNs); i++ {
		for _, a := range dn.RDNs[i].Attributes {
			if IsConflictName(a.Value) {
				return true
			}
		}
	}
	return false
}

// Object is what every observed object carries.
type Object struct {
	DN         string
	GUID       secdesc.GUID
	USNChanged int64
	Created    time.Time
	// SD holds the DACL only (read with SD flags 0x4); nil when the bound identity cannot
	// read it (no READ_CONTROL).
	SD *secdesc.SecurityDescriptor
	// Classes is objectClass, most general first (top, ..., the structural class).
	Classes []string
	// OwnerRecord is the raw adminDescription; Owner is set when it is a valid ownership record.
	OwnerRecord string
	Owner       *Owner
}

// Class is the object's structural class (the last objectClass value AD returns).
func (o Object) Class() string {
	if len(o.Classes) == 0 {
		return ""
	}
	return o.Classes[len(o.Classes)-1]
}

// OwnedBy reports whether the object carries owner's record.
func (o Object) OwnedBy(owner Owner) bool { return o.Owner != nil && o.Owner.Equal(owner) }

// Manager is a "DC Manager <GUID>" container and the contacts in it.
type Manager struct {
	Object
	Policy *PolicyObject // the CryptoPolicy contact, nil if absent
	Keys   []KeyObject   // every other contact, sorted by Created then ID
}

// PolicyObject is the CryptoPolicy contact.
type PolicyObject struct {
	Object
	ActiveKeyID string // displayName
}

// KeyObject is one key contact.
type KeyObject struct {
	Object
	ID   string // attribute l (the CN when l is absent)
	Blob []byte // thumbnailPhoto; nil when absent or unreadable
}

var observeAttrs = []string{
	"nTSecurityDescriptor", "objectGUID", "uSNChanged", "whenCreated", "objectClass",
	"name", "displayName", "l", "thumbnailPhoto", OwnerAttribute,
}

// Observe reads the container, its DC Manager children and their contacts with exactly one
// subtree search (DACLs only, via the SD flags control). A missing container is
// Observation{Exists: false} and no error. (AD answers "no such object" also when the
// container exists but is invisible to the bound identity; nothing can tell the two apart.)
// A container that is visible but whose attributes cannot be read is KindInsufficientAccess.
func (c *Client) Observe(ctx context.Context, containerDN string) (*Observation, error) {
	base, err := ParseDN(containerDN)
	if err != nil {
		return nil, &Error{Op: "search", DN: containerDN, Kind: KindInvalidDN, Err: err}
	}
	// (objectClass=*) rather than a class filter: an entry whose objectClass the identity
	// cannot read still matches a presence filter, so "unreadable" is not mistaken for "missing".
	req := ldap.NewSearchRequest(containerDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", observeAttrs, []ldap.Control{sdFlagsDACL()})
	res, err := c.search(ctx, req)
	if errors.Is(err, ErrNoSuchObject) {
		return &Observation{}, nil
	}
	if err != nil {
		return nil, err
	}
	return buildObservation(base, containerDN, res.Entries)
}

// buildObservation sorts the entries of the subtree search into the DKM layout.
func buildObservation(base *ldap.DN, containerDN string, entries []*ldap.Entry) (*Observation, error) {
	type parsed struct {
		entry *ldap.Entry
		dn    *ldap.DN
	}
	var all []parsed
	obs := &Observation{}
	found := false
	for _, e := range entries {
		dn, err := ParseDN(e.DN)
		if err != nil {
			return nil, &Error{Op: "search", DN: containerDN, Kind: KindOther, Err: fmt.Errorf("the server returned a DN we cannot parse: %w", err)}
		}
		if dn.EqualFold(base) {
			if rawAttr(e, "objectGUID") == nil {
				return nil, &Error{Op: "search", DN: e.DN, Kind: KindInsufficientAccess,
					Err: errors.New("the container is visible but its attributes cannot be read by the bind identity")}
			}
			obj, err := objectOf(e)
			if err != nil {
				return nil, err
			}
			obs.Exists, obs.Container, found = true, obj, true
			continue
		}
		if inConflict(dn, base) {
			obj, err := objectOf(e)
			if err != nil {
				return nil, err
			}
			c := Conflict{Object: obj}
			if hasClass(e, "contact") && !strings.HasPrefix(strings.ToLower(rdnValue(dn)), strings.ToLower(PolicyName)) {
				c.KeyID = attrValue(e, "l")
			}
			obs.Conflicts = append(obs.Conflicts, c)
			continue
		}
		all = append(all, parsed{e, dn})
	}
	if !found {
		return nil, &Error{Op: "search", DN: containerDN, Kind: KindInsufficientAccess,
			Err: errors.New("the search succeeded but did not return the container itself")}
	}
	var mgrDNs []*ldap.DN
	for _, p := range all {
		if isChildOf(p.dn, base) && hasClass(p.entry, "container") &&
			hasPrefixFold(rdnValue(p.dn), ManagerPrefix) {
			obj, err := objectOf(p.entry)
			if err != nil {
				return nil, err
			}
			obs.Managers = append(obs.Managers, Manager{Object: obj})
			mgrDNs = append(mgrDNs, p.dn)
		}
	}
	for _, p := range all {
		i := managerOf(p.dn, mgrDNs)
		switch {
		case i == isManager:
			continue
		case i == notInManager || !hasClass(p.entry, "contact"):
			obs.Foreign = append(obs.Foreign, p.entry.DN)
			continue
		}
		obj, err := objectOf(p.entry)
		if err != nil {
			return nil, err
		}
		mgr := &obs.Managers[i]
		cn := rdnValue(p.dn)
		if strings.EqualFold(cn, PolicyName) {
			mgr.Policy = &PolicyObject{Object: obj, ActiveKeyID: attrValue(p.entry, "displayName")}
			continue
		}
		id := attrValue(p.entry, "l")
		if id == "" {
			id = cn
		}
		mgr.Keys = append(mgr.Keys, KeyObject{Object: obj, ID: id, Blob: rawAttr(p.entry, "thumbnailPhoto")})
	}
	slices.SortFunc(obs.Managers, func(a, b Manager) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.DN, b.DN))
	})
	for i := range obs.Managers {
		slices.SortFunc(obs.Managers[i].Keys, func(a, b KeyObject) int {
			return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
		})
	}
	return obs, nil
}

const (
	isManager    = -2
	notInManager = -1
)

// managerOf says where dn sits: the index of the manager it is a direct child of, isManager when
// it is one of the managers, notInManager otherwise.
func managerOf(dn *ldap.DN, managers []*ldap.DN) int {
	for i, m := range managers {
		if dn.EqualFold(m) {
			return isManager
		}
		if isChildOf(dn, m) {
			return i
		}
	}
	return notInManager
}

// objectOf decodes the attributes every object carries. Absent attributes stay zero (an
// identity may be allowed to see an object but not read all of it).
func objectOf(e *ldap.Entry) (Object, error) {
	obj := Object{DN: e.DN}
	bad := func(attr string, err error) (Object, error) {
		return Object{}, &Error{Op: "search", DN: e.DN, Kind: KindOther, Err: fmt.Errorf("malformed %s: %w", attr, err)}
	}
	var err error
	if raw := rawAttr(e, "objectGUID"); raw != nil {
		if obj.GUID, err = secdesc.GUIDFromBytes(raw); err != nil {
			return bad("objectGUID", err)
		}
	}
	if v := attrValue(e, "uSNChanged"); v != "" {
		if obj.USNChanged, err = strconv.ParseInt(v, 10, 64); err != nil {
			return bad("uSNChanged", err)
		}
	}
	if v := attrValue(e, "whenCreated"); v != "" {
		if obj.Created, err = parseGeneralizedTime(v); err != nil {
			return bad("whenCreated", err)
		}
	}
	if raw := rawAttr(e, "nTSecurityDescriptor"); raw != nil {
		if obj.SD, err = secdesc.ParseDescriptor(raw); err != nil {
			return bad("nTSecurityDescriptor", err)
		}
	}
	obj.Classes = attrValues(e, "objectClass")
	if obj.OwnerRecord = attrValue(e, OwnerAttribute); obj.OwnerRecord != "" {
		if owner, err := ParseOwner(obj.OwnerRecord); err == nil {
			obj.Owner = &owner
		}
	}
	return obj, nil
}

// parseGeneralizedTime reads AD's GeneralizedTime, e.g. 20240102030405.0Z.
func parseGeneralizedTime(v string) (time.Time, error) {
	t, err := time.Parse("20060102150405Z0700", v)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

func hasClass(e *ldap.Entry, class string) bool {
	for _, v := range attrValues(e, "objectClass") {
		if strings.EqualFold(v, class) {
			return true
		}
	}
	return false
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// Attribute accessors that match names case-insensitively (AD returns the schema's spelling,
// which need not be ours) and give nil for an absent binary value.
func attrValue(e *ldap.Entry, name string) string { return e.GetEqualFoldAttributeValue(name) }

func attrValues(e *ldap.Entry, name string) []string { return e.GetEqualFoldAttributeValues(name) }

func rawAttr(e *ldap.Entry, name string) []byte {
	if v := e.GetEqualFoldRawAttributeValues(name); len(v) > 0 {
		return v[0]
	}
	return nil
}
