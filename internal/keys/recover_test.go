package keys

import (
	"bytes"
	"errors"
	"testing"
)

func TestRecoverRing(t *testing.T) {
	ring, _ := storedAfterRotations(t, Plain{}, 3)
	var recorded []Recorded
	for _, v := range ring.Versions() {
		recorded = append(recorded, Recorded{ID: v.ID.String(), Fingerprint: v.Fingerprint.String(), Created: v.Created})
	}
	oldest := ring.Versions()[0]
	forgedBytes := bytes.Repeat([]byte{0x42}, KeySize)
	forged := NewVersion(oldest.ID, mustMaterial(t, forgedBytes), t0)
	// copies are what replica Secrets hold: NewVersion of their bytes, creation time unknown.
	copies := func(extra ...Version) []Version {
		out := append([]Version{}, extra...)
		for _, v := range ring.Versions() {
			out = append(out, NewVersion(v.ID, v.Material, t0))
		}
		return out
	}
	without := func(id KeyID, vs []Version) []Version {
		var out []Version
		for _, v := range vs {
			if v.ID != id {
				out = append(out, v)
			}
		}
		return out
	}
	// liar claims the recorded fingerprint for bytes that do not have it.
	liar := forged
	liar.Fingerprint = oldest.Fingerprint

	tests := []struct {
		name     string
		activeID string
		recorded []Recorded
		copies   []Version
		want     error
	}{
		{"every version has a matching copy", ring.ActiveID().String(), recorded, copies(), nil},
		{"a forged copy before the good one is skipped", ring.ActiveID().String(), recorded, copies(forged, liar), nil},
		{"only a forged copy of one version", ring.ActiveID().String(), recorded, append(without(oldest.ID, copies()), forged), ErrNoMatchingCopy},
		{"a copy claiming the recorded fingerprint for other bytes", ring.ActiveID().String(), recorded, append(without(oldest.ID, copies()), liar), ErrNoMatchingCopy},
		{"a version without any copy", ring.ActiveID().String(), recorded, without(oldest.ID, copies()), ErrNoMatchingCopy},
		{"a forged fingerprint recorded", ring.ActiveID().String(),
			append([]Recorded{{ID: oldest.ID.String(), Fingerprint: forged.Fingerprint.String()}}, recorded[1:]...),
			copies(), ErrNoMatchingCopy},
		{"no fingerprint recorded", ring.ActiveID().String(),
			append([]Recorded{{ID: oldest.ID.String()}}, recorded[1:]...), copies(), ErrNoMatchingCopy},
		{"the active key is not recorded", ring.ActiveID().String(), recorded[:2], copies(), ErrActiveKeyNotFound},
		{"no active key ID", "", recorded, copies(), ErrInvalidKeyID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RecoverRing(tc.activeID, tc.recorded, tc.copies)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				assertNoSecrets(t, err.Error(), forgedBytes, oldest.Material.Reveal())
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertSameKeys(t, got, ring) // creation times from the record, not from the copies
			if _, _, err := got.Rotate(Plain{}, t0); !errors.Is(err, ErrUnbound) {
				t.Fatalf("a recovered ring rotated (err %v): it must never seal a version", err)
			}
		})
	}
}
