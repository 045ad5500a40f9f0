package directory

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// OwnerAttribute holds the ownership record on every object the operator creates. It is on
// `top`, so every class has it, and it is written in the add request itself: an object the
// operator made is never without its record, and an object without one was not made by it.
const OwnerAttribute = "adminDescription"

// ownerPrefix starts every record, so a record is told apart from whatever a person or another
// product wrote into adminDescription.
const ownerPrefix = "dkm-operator/v1 "

// Owner identifies the DKMContainer that made (and alone may change) an object in AD: the
// cluster (the UID of its kube-system namespace, which a second cluster cannot share), and the
// resource's namespace, name and UID (a re-created resource of the same name is a new owner).
type Owner struct {
	Cluster   string
	Namespace string
	Name      string
	UID       string
	// Claimed marks a record the operator put on an object it did not create (an adopted
	// container): it may manage that object, but never deletes it.
	Claimed bool
}

// IsZero reports whether o is the empty owner.
func (o Owner) IsZero() bool { return o == Owner{} }

// Equal compares the owning DKMContainer: same cluster, namespace, name and UID.
func (o Owner) Equal(p Owner) bool {
	return o.Cluster == p.Cluster && o.Namespace == p.Namespace && o.Name == p.Name && o.UID == p.UID
}

// AsClaim is o as recorded on an object it claims rather than creates.
func (o Owner) AsClaim() Owner { o.Claimed = true; return o }

func (o Owner) origin() string {
	if o.Claimed {
		return "claimed"
	}
	return "created"
}

// String is the record as written to AD, e.g.
// "dkm-operator/v1 cluster=0f1e... namespace=vmm name=vmm uid=7c2a... origin=created". Values
// are query-escaped, so a record always parses back to the same owner.
func (o Owner) String() string {
	return ownerPrefix + "cluster=" + url.QueryEscape(o.Cluster) + " namespace=" + url.QueryEscape(o.Namespace) +
		" name=" + url.QueryEscape(o.Name) + " uid=" + url.QueryEscape(o.UID) + " origin=" + o.origin()
}

// Short names the owner for people: "namespace/name in cluster <cluster> (uid <uid>)".
func (o Owner) Short() string {
	return fmt.Sprintf("%s/%s in cluster %s (uid %s)", o.Namespace, o.Name, o.Cluster, o.UID)
}

// Validate says whether o can be written: every field set and free of characters that would
// make the record ambiguous to read by eye (the escaping keeps it unambiguous to parse anyway).
func (o Owner) Validate() error {
	for name, v := range map[string]string{"cluster": o.Cluster, "namespace": o.Namespace, "name": o.Name, "uid": o.UID} {
		if v == "" {
			return fmt.Errorf("ownership record: empty %s", name)
		}
	}
	return nil
}

// ErrNotOwnerRecord: the attribute holds something other than an ownership record.
var ErrNotOwnerRecord = errors.New("not a dkm-operator ownership record")

// ParseOwner reads a record written by Owner.String. Anything else (a person's note, another
// product's value) is ErrNotOwnerRecord; a record that starts like ours but is malformed is an
// error naming what is wrong.
func ParseOwner(s string) (Owner, error) {
	rest, ok := strings.CutPrefix(s, ownerPrefix)
	if !ok {
		return Owner{}, ErrNotOwnerRecord
	}
	fields := strings.Split(rest, " ")
	want := []string{"cluster", "namespace", "name", "uid", "origin"}
	if len(fields) != len(want) {
		return Owner{}, fmt.Errorf("ownership record %q: want %d fields, got %d", s, len(want), len(fields))
	}
	values := make([]string, len(want))
	for i, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k != want[i] {
			return Owner{}, fmt.Errorf("ownership record %q: field %d should be %s=", s, i+1, want[i])
		}
		dec, err := url.QueryUnescape(v)
		if err != nil {
			return Owner{}, fmt.Errorf("ownership record %q: %s: %w", s, k, err)
		}
		values[i] = dec
	}
	o := Owner{Cluster: values[0], Namespace: values[1], Name: values[2], UID: values[3]}
	switch values[4] {
	case "created":
	case "claimed":
		o.Claimed = true
	default:
		return Owner{}, fmt.Errorf("ownership record %q: origin must be created or claimed", s)
	}
	if err := o.Validate(); err != nil {
		return Owner{}, fmt.Errorf("ownership record %q: %w", s, err)
	}
	return o, nil
}
