package keys

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"
)

// StoredKey is one key version as it lives in AD, without any LDAP: the key
// ID (attribute l of the key contact), the blob (thumbnailPhoto) and when the
// version was created (whenCreated).
type StoredKey struct {
	ID      string
	Blob    []byte
	Created time.Time
}

// Version is one opened key version.
type Version struct {
	ID          KeyID
	Material    Material
	Fingerprint Fingerprint
	Created     time.Time
	// KEK names the KEK that opened the version; zero for Plain.
	KEK Fingerprint
	// NeedsRewrap is true when the version is wrapped under a retired KEK.
	NeedsRewrap bool
}

// Ring is the key ring of one DKM container: the active version and every
// retained one, oldest first. A Ring is immutable: Rotate and Rewrap return a
// new Ring, so one can be shared between goroutines (the projector serves
// new pods from a Ring held in memory).
type Ring struct {
	container ObjectGUID
	active    KeyID
	versions  []Version
}

// NewRing creates the first key version of a container that has none. It
// must only be called when AD holds no key for the container: an existing
// key is adopted with LoadRing, never replaced.
func NewRing(container ObjectGUID, p Protector, now time.Time) (*Ring, StoredKey, error) {
	empty := &Ring{container: container}
	return empty.Rotate(p, now)
}

// LoadRing opens every stored version of a container, bound to the
// container's objectGUID and each version's key ID. activeID is the
// CryptoPolicy displayName.
//
// It fails if any version does not open, rather than hand out an incomplete
// ring: a replica without an old version cannot read data encrypted under
// it. All failures are reported together.
func LoadRing(container ObjectGUID, activeID string, stored []StoredKey, p Protector) (*Ring, error) {
	if container.IsZero() {
		return nil, fmt.Errorf("loading key ring: %w: no container objectGUID", ErrUnbound)
	}
	active, err := ParseKeyID(activeID)
	if err != nil {
		return nil, fmt.Errorf("loading key ring: CryptoPolicy displayName: %w", err)
	}

	var errs []error
	seen := make(map[KeyID]bool, len(stored))
	versions := make([]Version, 0, len(stored))
	for _, sk := range stored {
		id, err := ParseKeyID(sk.ID)
		if err != nil {
			errs = append(errs, fmt.Errorf("key object attribute l: %w", err))
			continue
		}
		if seen[id] {
			errs = append(errs, fmt.Errorf("%w: more than one key object carries key ID %s", ErrDuplicateKeyID, id))
			continue
		}
		seen[id] = true
		opened, err := p.Open(sk.Blob, Binding{Container: container, KeyID: id})
		if err != nil {
			errs = append(errs, fmt.Errorf("key version %s: %w", id, err))
			continue
		}
		versions = append(versions, newVersion(id, sk.Created, opened))
	}
	if !seen[active] {
		errs = append(errs, fmt.Errorf("%w: CryptoPolicy names key %s, but none of the %d key objects carries that ID",
			ErrActiveKeyNotFound, active, len(stored)))
	}
	if err := joinErrors(errs); err != nil {
		return nil, fmt.Errorf("loading key ring of container %s: %w", container, err)
	}

	sortVersions(versions)
	return &Ring{container: container, active: active, versions: versions}, nil
}

func newVersion(id KeyID, created time.Time, opened Opened) Version {
	return Version{
		ID:          id,
		Material:    opened.Material,
		Fingerprint: opened.Material.Fingerprint(),
		Created:     created,
		KEK:         opened.KEK,
		NeedsRewrap: opened.NeedsRewrap,
	}
}

// sortVersions orders versions oldest first; the key ID breaks ties so the
// order is stable when AD reports no creation times.
func sortVersions(versions []Version) {
	slices.SortFunc(versions, func(a, b Version) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return cmp.Compare(a.ID.String(), b.ID.String())
	})
}

// Rotate adds a fresh key version and makes it active. It returns the new
// ring and the StoredKey to write to AD; the caller creates the key object
// first and moves CryptoPolicy after, so AD never names a key that does not
// exist. The receiver is not changed, and no version is ever removed.
func (r *Ring) Rotate(p Protector, now time.Time) (*Ring, StoredKey, error) {
	return r.rotate(p, now, randomSource{})
}

// randomSource lets tests fix key material and key IDs.
type randomSource struct{ r io.Reader }

func (s randomSource) material() (Material, error) {
	if s.r == nil {
		return GenerateMaterial()
	}
	return generateMaterial(s.r)
}

func (s randomSource) keyID() (KeyID, error) {
	if s.r == nil {
		return NewKeyID()
	}
	return newKeyID(s.r)
}

// NewRingWithID is NewRing with the first key's ID chosen by the caller. The operator names a
// container's first key after its DC Manager object (FirstKeyID), so two writers racing to create
// it collide on the same key object in AD instead of leaving two keys.
func NewRingWithID(container ObjectGUID, id KeyID, p Protector, now time.Time) (*Ring, StoredKey, error) {
	if id.IsZero() {
		return nil, StoredKey{}, fmt.Errorf("creating key version: %w", ErrInvalidKeyID)
	}
	empty := &Ring{container: container}
	return empty.addVersion(id, p, now, randomSource{})
}

func (r *Ring) rotate(p Protector, now time.Time, random randomSource) (*Ring, StoredKey, error) {
	id, err := r.unusedKeyID(random)
	if err != nil {
		return nil, StoredKey{}, err
	}
	return r.addVersion(id, p, now, random)
}

// addVersion seals fresh key material under id and returns the ring with it active.
func (r *Ring) addVersion(id KeyID, p Protector, now time.Time, random randomSource) (*Ring, StoredKey, error) {
	if r.container.IsZero() {
		return nil, StoredKey{}, fmt.Errorf("creating key version: %w: no container objectGUID", ErrUnbound)
	}
	m, err := random.material()
	if err != nil {
		return nil, StoredKey{}, err
	}
	blob, opened, err := sealVerified(p, m, Binding{Container: r.container, KeyID: id})
	if err != nil {
		return nil, StoredKey{}, fmt.Errorf("creating key version %s: %w", id, err)
	}

	next := &Ring{container: r.container, active: id, versions: slices.Clone(r.versions)}
	next.versions = append(next.versions, newVersion(id, now, opened))
	sortVersions(next.versions)
	return next, StoredKey{ID: id.String(), Blob: blob, Created: now}, nil
}

// unusedKeyID draws key IDs until one is not in the ring. A collision of
// random GUIDs is all but impossible, but a reused ID would make two key
// objects claim the same name.
func (r *Ring) unusedKeyID(random randomSource) (KeyID, error) {
	for {
		id, err := random.keyID()
		if err != nil {
			return KeyID{}, err
		}
		if _, taken := r.Version(id); !taken && !id.IsZero() {
			return id, nil
		}
	}
}

// sealVerified seals m and opens the result again before anyone writes it to
// AD: a blob that does not give the key back must never replace one that does.
func sealVerified(p Protector, m Material, b Binding) ([]byte, Opened, error) {
	blob, err := p.Seal(m, b)
	if err != nil {
		return nil, Opened{}, err
	}
	opened, err := p.Open(blob, b)
	if err != nil {
		return nil, Opened{}, fmt.Errorf("verifying the sealed blob: %w", err)
	}
	if !opened.Material.Equal(m) {
		return nil, Opened{}, fmt.Errorf("verifying the sealed blob: it opens to key %s, want %s",
			opened.Material.Fingerprint(), m.Fingerprint())
	}
	return blob, opened, nil
}

// Rewrap re-seals, under p, every version that NeedsRewrap (the ones wrapped
// under a retired KEK), for use after a KEK rotation. p should be the
// protector that loaded the ring. It returns the new ring and the StoredKeys
// whose blobs the caller must replace in AD, none when nothing is due. Each
// new blob is verified to open to the same key before it is returned. Once
// they are written, the retired KEK is no longer needed.
//
// Re-wrapping replaces a blob, never a key: the material, key ID and
// creation time of every version stay the same.
func (r *Ring) Rewrap(p Protector) (*Ring, []StoredKey, error) {
	next := &Ring{container: r.container, active: r.active, versions: slices.Clone(r.versions)}
	var rewrapped []StoredKey
	for i, v := range next.versions {
		if !v.NeedsRewrap {
			continue
		}
		blob, opened, err := sealVerified(p, v.Material, Binding{Container: r.container, KeyID: v.ID})
		if err != nil {
			return nil, nil, fmt.Errorf("re-wrapping key version %s: %w", v.ID, err)
		}
		next.versions[i] = newVersion(v.ID, v.Created, opened)
		rewrapped = append(rewrapped, StoredKey{ID: v.ID.String(), Blob: blob, Created: v.Created})
	}
	return next, rewrapped, nil
}

// Container is the objectGUID every version is bound to.
func (r *Ring) Container() ObjectGUID { return r.container }

// ActiveID is the key ID CryptoPolicy names.
func (r *Ring) ActiveID() KeyID { return r.active }

// Active returns the active version.
func (r *Ring) Active() Version {
	v, _ := r.Version(r.active)
	return v
}

// Versions returns every version, oldest first.
func (r *Ring) Versions() []Version { return slices.Clone(r.versions) }

// Version finds a version by key ID.
func (r *Ring) Version(id KeyID) (Version, bool) {
	for _, v := range r.versions {
		if v.ID == id {
			return v, true
		}
	}
	return Version{}, false
}

// Len is the number of versions.
func (r *Ring) Len() int { return len(r.versions) }

// NeedsRewrap reports whether any version is wrapped under a retired KEK.
func (r *Ring) NeedsRewrap() bool {
	return slices.ContainsFunc(r.versions, func(v Version) bool { return v.NeedsRewrap })
}

// String describes the ring without any key bytes.
func (r *Ring) String() string {
	return fmt.Sprintf("key ring of container %s: active %s, versions: %d", r.container, r.active, len(r.versions))
}

// GoString implements fmt.GoStringer.
func (r *Ring) GoString() string { return "&keys.Ring{" + r.String() + "}" }

// Format implements fmt.Formatter: every verb prints the description.
func (r *Ring) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, r.GoString())
		return
	}
	io.WriteString(f, r.String())
}

// MarshalJSON implements json.Marshaler.
func (r *Ring) MarshalJSON() ([]byte, error) { return json.Marshal(r.String()) }

// LogValue implements slog.LogValuer.
func (r *Ring) LogValue() slog.Value { return slog.StringValue(r.String()) }

// RotationDue reports whether the active version, created at activeCreated,
// is due for rotation at now under a rotation period. A period of zero (or
// less) means never. A version with no known creation time is due.
func RotationDue(activeCreated time.Time, period time.Duration, now time.Time) bool {
	next, ok := NextRotation(activeCreated, period)
	return ok && !now.Before(next)
}

// NextRotation is when the active version, created at activeCreated, becomes
// due; ok is false when the period means never. Controllers requeue for it.
func NextRotation(activeCreated time.Time, period time.Duration) (next time.Time, ok bool) {
	if period <= 0 {
		return time.Time{}, false
	}
	return activeCreated.Add(period), true
}

// Reseal binds existing key versions to a container: the same IDs and the same key bytes,
// sealed under p for container's objectGUID. It is how a lost key goes back into AD (a container
// deleted and created again has a new objectGUID, so its old Wrapped blobs no longer open) and
// how a backup is restored into another container. It returns the ring of versions (active
// naming the active one, which must be among them) and the StoredKeys to write, each verified
// to open to the same key. Nothing is generated: a version without material is an error.
func Reseal(container ObjectGUID, active KeyID, versions []Version, p Protector) (*Ring, []StoredKey, error) {
	if container.IsZero() {
		return nil, nil, fmt.Errorf("resealing keys: %w: no container objectGUID", ErrUnbound)
	}
	next := &Ring{container: container, active: active, versions: make([]Version, 0, len(versions))}
	stored := make([]StoredKey, 0, len(versions))
	seen := make(map[KeyID]bool, len(versions))
	for _, v := range versions {
		if seen[v.ID] {
			return nil, nil, fmt.Errorf("resealing keys: %w: key ID %s twice", ErrDuplicateKeyID, v.ID)
		}
		seen[v.ID] = true
		if v.Material.IsZero() {
			return nil, nil, fmt.Errorf("resealing key %s: %w: no key material", v.ID, ErrKeyLength)
		}
		blob, opened, err := sealVerified(p, v.Material, Binding{Container: container, KeyID: v.ID})
		if err != nil {
			return nil, nil, fmt.Errorf("resealing key %s: %w", v.ID, err)
		}
		next.versions = append(next.versions, newVersion(v.ID, v.Created, opened))
		stored = append(stored, StoredKey{ID: v.ID.String(), Blob: blob, Created: v.Created})
	}
	if !seen[active] {
		return nil, nil, fmt.Errorf("resealing keys: %w: the active key %s is not among the %d version(s)",
			ErrActiveKeyNotFound, active, len(versions))
	}
	sortVersions(next.versions)
	return next, stored, nil
}

// NewVersion is a key version held outside AD (a replica's Secret, a backup): its fingerprint
// is computed from the material, never taken on trust.
func NewVersion(id KeyID, m Material, created time.Time) Version {
	return Version{ID: id, Material: m, Fingerprint: m.Fingerprint(), Created: created}
}
