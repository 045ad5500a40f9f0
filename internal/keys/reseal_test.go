package keys

import (
	"errors"
	"testing"
)

// Reseal gives a ring's versions back bound to another container: the same IDs and bytes, blobs
// that open there and nowhere else, under the KEK of the protector given.
func TestReseal(t *testing.T) {
	old := wrappedUnder(t, testKEKA)
	ring, _ := storedAfterRotations(t, old, 3)
	next := wrappedUnder(t, testKEKB)

	got, stored, err := Reseal(otherContainer, ring.ActiveID(), ring.Versions(), next)
	if err != nil {
		t.Fatal(err)
	}
	assertSameKeys(t, got, ring)
	if got.Container() != otherContainer {
		t.Fatalf("bound to %s, want %s", got.Container(), otherContainer)
	}
	reloaded, err := LoadRing(otherContainer, ring.ActiveID().String(), stored, next)
	if err != nil {
		t.Fatalf("the resealed blobs do not open in the new container: %v", err)
	}
	assertSameKeys(t, reloaded, ring)
	if _, err := LoadRing(testContainer, ring.ActiveID().String(), stored, next); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("resealed blobs open in the old container: %v", err)
	}
	if _, err := LoadRing(otherContainer, ring.ActiveID().String(), stored, old); !errors.Is(err, ErrUnknownKEK) {
		t.Fatalf("resealed blobs open under the old KEK: %v", err)
	}
}

func TestResealRefuses(t *testing.T) {
	p := wrappedUnder(t, testKEKA)
	ring, _ := storedAfterRotations(t, p, 2)
	versions := ring.Versions()
	cases := []struct {
		name     string
		guid     ObjectGUID
		active   KeyID
		versions []Version
		want     error
	}{
		{"no container", ObjectGUID{}, ring.ActiveID(), versions, ErrUnbound},
		{"active missing", otherContainer, otherKeyID, versions, ErrActiveKeyNotFound},
		{"duplicate", otherContainer, ring.ActiveID(), append(versions, versions[0]), ErrDuplicateKeyID},
		{"no material", otherContainer, versions[0].ID, []Version{{ID: versions[0].ID}}, ErrKeyLength},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := Reseal(tc.guid, tc.active, tc.versions, p); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestNewVersionComputesFingerprint(t *testing.T) {
	m := mustMaterial(t, testKeyBytes)
	v := NewVersion(testKeyID, m, t0)
	if v.Fingerprint != m.Fingerprint() || v.ID != testKeyID || !v.Created.Equal(t0) {
		t.Fatalf("got %+v", v)
	}
}
