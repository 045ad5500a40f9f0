package chaos

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/keys"
)

// adView is what one DC holds under a schedule's path, read as Administrator with the
// operator's own Observe (one subtree search) and opened with every KEK the schedule used.
type adView struct {
	exists   bool
	managers []string // DNs of the DC Manager objects (an ACNF-renamed copy counts: it is live)
	// keys maps each key ID (lower case) to the fingerprints of the key objects carrying it:
	// one, unless a conflict left two objects with one ID.
	keys map[string][]string
	// created is each key object's whenCreated, by ID.
	created map[string]time.Time
	// firstKeys are the IDs derived from each DC Manager's objectGUID (keys.FirstKeyID): the
	// only keys created without a rotation.
	firstKeys []string
	active    string // CryptoPolicy's displayName (lower case)
	conflicts []string
}

// fingerprint of one key on this DC ("" when absent).
func (v adView) has(id, fp string) bool {
	return slices.Contains(v.keys[id], fp)
}

// summary is the view for a log line: managers, keys and the active one, never key bytes.
func (v adView) summary() string {
	if !v.exists {
		return "no container"
	}
	ids := slices.Sorted(maps.Keys(v.keys))
	var parts []string
	for _, id := range ids {
		parts = append(parts, fmt.Sprintf("%s=%s", short(id), strings.Join(shortAll(v.keys[id]), "|")))
	}
	return fmt.Sprintf("%d manager(s), active %s, keys [%s]", len(v.managers), short(v.active), strings.Join(parts, " "))
}

// equal: the two DCs hold the same thing (replication converged for the path).
func (v adView) equal(o adView) bool {
	return v.exists == o.exists && slices.Equal(v.managers, o.managers) && v.active == o.active &&
		maps.EqualFunc(v.keys, o.keys, slices.Equal)
}

func short(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func shortAll(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = short(id)
	}
	return out
}

// readDC observes path on one DC through c (a Client bound to that DC alone) and opens each
// blob with p. A blob that does not open is recorded under the fingerprint "unopenable".
func readDC(ctx context.Context, c *directory.Client, path string, p keys.Protector) (adView, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	obs, err := c.Observe(ctx, path)
	if err != nil {
		return adView{}, err
	}
	v := adView{exists: obs.Exists, keys: map[string][]string{}, created: map[string]time.Time{}}
	if !obs.Exists {
		return v, nil
	}
	container, err := keys.ObjectGUIDFromBytes(obs.Container.GUID.Bytes())
	if err != nil {
		return adView{}, err
	}
	for _, m := range obs.Managers {
		v.managers = append(v.managers, strings.ToLower(m.DN))
		if mg, err := keys.ObjectGUIDFromBytes(m.GUID.Bytes()); err == nil {
			v.firstKeys = append(v.firstKeys, strings.ToLower(keys.FirstKeyID(mg).String()))
		}
		if strings.Contains(m.DN, "ACNF:") {
			v.conflicts = append(v.conflicts, m.DN)
		}
		if m.Policy != nil && m.Policy.ActiveKeyID != "" {
			v.active = strings.ToLower(m.Policy.ActiveKeyID)
		}
		for _, k := range m.Keys {
			id := strings.ToLower(k.ID)
			fp := "unopenable"
			if kid, err := keys.ParseKeyID(k.ID); err == nil {
				if opened, err := p.Open(k.Blob, keys.Binding{Container: container, KeyID: kid}); err == nil {
					fp = opened.Material.Fingerprint().String()
				}
			}
			v.keys[id] = append(v.keys[id], fp)
			v.created[id] = k.Created
			if strings.Contains(k.DN, "ACNF:") {
				v.conflicts = append(v.conflicts, k.DN)
			}
		}
	}
	slices.Sort(v.managers)
	for id := range v.keys {
		slices.Sort(v.keys[id])
	}
	return v, nil
}

// materialFingerprint is the fingerprint the operator shows for key bytes (status, events).
func materialFingerprint(b []byte) string {
	m, err := keys.NewMaterial(b)
	if err != nil {
		return "invalid"
	}
	return m.Fingerprint().String()
}
