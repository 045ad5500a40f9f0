package keys

import (
	"fmt"
	"time"
)

// Recorded is a key version as the operator recorded it outside AD (a DKMContainer's status):
// its ID, fingerprint and creation time, never its bytes.
type Recorded struct {
	ID          string
	Fingerprint string
	Created     time.Time
}

// RecoverRing rebuilds a ring from copies of its versions kept outside AD (the replica Secrets,
// each read with NewVersion, so its fingerprint is computed from its bytes), for serving new
// replicas while AD cannot be read. Each recorded version is taken from the first copy with
// its ID and the recorded fingerprint; a copy that does not match is never used. Every
// recorded version must be found, or nothing is returned: a replica without an old version
// could not read data encrypted under it.
//
// The ring is bound to no container, so it can never seal a version (Rotate fails with
// ErrUnbound): a recovered ring is served, never written to AD.
func RecoverRing(activeID string, recorded []Recorded, copies []Version) (*Ring, error) {
	active, err := ParseKeyID(activeID)
	if err != nil {
		return nil, fmt.Errorf("recovering key ring: active key ID: %w", err)
	}
	var errs []error
	seen := make(map[KeyID]bool, len(recorded))
	versions := make([]Version, 0, len(recorded))
	for _, rec := range recorded {
		v, err := recoverVersion(rec, copies)
		switch {
		case err != nil:
			errs = append(errs, err)
		case seen[v.ID]:
			errs = append(errs, fmt.Errorf("%w: key ID %s is recorded twice", ErrDuplicateKeyID, v.ID))
		default:
			seen[v.ID] = true
			versions = append(versions, v)
		}
	}
	if !seen[active] && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%w: the active key %s is not among the %d recorded versions",
			ErrActiveKeyNotFound, active, len(recorded)))
	}
	if err := joinErrors(errs); err != nil {
		return nil, fmt.Errorf("recovering key ring: %w", err)
	}
	sortVersions(versions)
	return &Ring{active: active, versions: versions}, nil
}

// recoverVersion finds the copy of one recorded version whose fingerprint matches.
func recoverVersion(rec Recorded, copies []Version) (Version, error) {
	id, err := ParseKeyID(rec.ID)
	if err != nil {
		return Version{}, fmt.Errorf("recorded key version: %w", err)
	}
	found := 0
	for _, c := range copies {
		if c.ID != id {
			continue
		}
		found++
		if !c.Material.IsZero() && c.Fingerprint == c.Material.Fingerprint() && c.Fingerprint.String() == rec.Fingerprint {
			return NewVersion(id, c.Material, rec.Created), nil
		}
	}
	return Version{}, fmt.Errorf("key version %s (recorded %s): %w (%d copies)", id, quoteShort(rec.Fingerprint), ErrNoMatchingCopy, found)
}
