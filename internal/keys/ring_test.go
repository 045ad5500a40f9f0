package keys

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// storedAfterRotations creates a ring and rotates it n-1 times, one day
// apart, returning the final ring and everything that would be in AD.
func storedAfterRotations(t *testing.T, p Protector, n int) (*Ring, []StoredKey) {
	t.Helper()
	ring, first, err := NewRing(testContainer, p, t0)
	if err != nil {
		t.Fatal(err)
	}
	stored := []StoredKey{first}
	for i := 1; i < n; i++ {
		var sk StoredKey
		ring, sk, err = ring.Rotate(p, t0.Add(time.Duration(i)*24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, sk)
	}
	return ring, stored
}

func assertSameKeys(t *testing.T, got, want *Ring) {
	t.Helper()
	if got.ActiveID() != want.ActiveID() {
		t.Fatalf("active %s, want %s", got.ActiveID(), want.ActiveID())
	}
	if got.Len() != want.Len() {
		t.Fatalf("%d versions, want %d", got.Len(), want.Len())
	}
	for i, w := range want.Versions() {
		g := got.Versions()[i]
		if g.ID != w.ID || !g.Material.Equal(w.Material) || g.Fingerprint != w.Fingerprint || !g.Created.Equal(w.Created) {
			t.Fatalf("version %d: got %s %s %s, want %s %s %s", i, g.ID, g.Fingerprint, g.Created, w.ID, w.Fingerprint, w.Created)
		}
	}
}

func TestNewRing(t *testing.T) {
	for _, p := range []Protector{wrappedUnder(t, testKEKA), Plain{}} {
		t.Run(string(p.Mode()), func(t *testing.T) {
			ring, sk, err := NewRing(testContainer, p, t0)
			if err != nil {
				t.Fatal(err)
			}
			if ring.Len() != 1 || ring.Active().ID.String() != sk.ID || !ring.Active().Created.Equal(t0) || !sk.Created.Equal(t0) {
				t.Fatalf("got %s and stored key %s", ring, sk.ID)
			}
			if !canonicalV4.MatchString(sk.ID) {
				t.Fatalf("key ID %s is not canonical", sk.ID)
			}
			if ring.Container() != testContainer {
				t.Fatalf("container %s", ring.Container())
			}
			if ring.Active().Fingerprint != ring.Active().Material.Fingerprint() {
				t.Fatal("version fingerprint does not match its material")
			}
			loaded, err := LoadRing(testContainer, sk.ID, []StoredKey{sk}, p)
			if err != nil {
				t.Fatal(err)
			}
			assertSameKeys(t, loaded, ring)
		})
	}
}

func TestRotateAddsAVersionAndKeepsEveryOldOne(t *testing.T) {
	p := wrappedUnder(t, testKEKA)
	ring, stored := storedAfterRotations(t, p, 3)
	before := ring.Versions()

	rotated, sk, err := ring.Rotate(p, t0.Add(72*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if rotated.ActiveID().String() != sk.ID {
		t.Fatalf("active %s, new version %s", rotated.ActiveID(), sk.ID)
	}
	if rotated.Len() != 4 {
		t.Fatalf("%d versions after rotation, want 4", rotated.Len())
	}
	for _, old := range before {
		v, ok := rotated.Version(old.ID)
		if !ok || !v.Material.Equal(old.Material) {
			t.Fatalf("rotation lost or changed version %s", old.ID)
		}
		if v.Material.Equal(rotated.Active().Material) {
			t.Fatal("rotation reused key material")
		}
	}
	if ring.Len() != 3 || ring.ActiveID() == rotated.ActiveID() {
		t.Fatal("Rotate changed the ring it was called on")
	}

	loaded, err := LoadRing(testContainer, sk.ID, append(stored, sk), p)
	if err != nil {
		t.Fatal(err)
	}
	assertSameKeys(t, loaded, rotated)
}

func TestRotateWithFixedRandomness(t *testing.T) {
	ring := &Ring{container: testContainer}
	random := randomSource{fixedReader(make([]byte, 16), testKeyBytes)}
	rotated, sk, err := ring.rotate(Plain{}, t0, random)
	if err != nil {
		t.Fatal(err)
	}
	if sk.ID != "00000000-0000-4000-8000-000000000000" || string(sk.Blob) != string(testKeyBytes) {
		t.Fatalf("got key %s", sk.ID)
	}
	// The same randomness again would reuse the key ID: a new one is drawn.
	random = randomSource{fixedReader(make([]byte, 16), []byte("0123456789abcdef"), testKeyBytes)}
	_, sk2, err := rotated.rotate(Plain{}, t0, random)
	if err != nil {
		t.Fatal(err)
	}
	if sk2.ID == sk.ID {
		t.Fatal("Rotate reused a key ID")
	}
}

func TestLoadRingOrdersVersionsOldestFirst(t *testing.T) {
	p := Plain{}
	ring, stored := storedAfterRotations(t, p, 4)
	reversed := []StoredKey{stored[3], stored[1], stored[2], stored[0]}
	loaded, err := LoadRing(testContainer, ring.ActiveID().String(), reversed, p)
	if err != nil {
		t.Fatal(err)
	}
	assertSameKeys(t, loaded, ring)

	// Without creation times, the key ID decides, so the order is still stable.
	for i := range reversed {
		reversed[i].Created = time.Time{}
	}
	loaded, err = LoadRing(testContainer, ring.ActiveID().String(), reversed, p)
	if err != nil {
		t.Fatal(err)
	}
	versions := loaded.Versions()
	for i := 1; i < len(versions); i++ {
		if versions[i-1].ID.String() >= versions[i].ID.String() {
			t.Fatalf("versions not ordered by key ID: %s before %s", versions[i-1].ID, versions[i].ID)
		}
	}
}

func TestLoadRingAcceptsUpperCaseKeyIDs(t *testing.T) {
	p := wrappedUnder(t, testKEKA)
	ring, stored := storedAfterRotations(t, p, 2)
	for i := range stored {
		stored[i].ID = strings.ToUpper(stored[i].ID)
	}
	loaded, err := LoadRing(testContainer, strings.ToUpper(ring.ActiveID().String()), stored, p)
	if err != nil {
		t.Fatal(err)
	}
	assertSameKeys(t, loaded, ring)
}

func TestLoadRingErrors(t *testing.T) {
	p := wrappedUnder(t, testKEKA)
	ring, stored := storedAfterRotations(t, p, 2)
	activeID := ring.ActiveID().String()
	oldID := stored[0].ID
	secrets := [][]byte{testKEKA, ring.Versions()[0].Material.Reveal(), ring.Versions()[1].Material.Reveal()}

	otherContainerRing, otherStored := func() (*Ring, []StoredKey) {
		r, sk, err := NewRing(otherContainer, p, t0)
		if err != nil {
			t.Fatal(err)
		}
		return r, []StoredKey{sk}
	}()
	secrets = append(secrets, otherContainerRing.Active().Material.Reveal())

	tests := []struct {
		name      string
		container ObjectGUID
		activeID  string
		stored    []StoredKey
		protector Protector
		want      []error
		fragments []string
	}{
		{
			name:      "CryptoPolicy names a missing key",
			container: testContainer,
			activeID:  "11111111-2222-4333-8444-555555555555",
			stored:    stored,
			protector: p,
			want:      []error{ErrActiveKeyNotFound},
			fragments: []string{"CryptoPolicy names key 11111111-2222-4333-8444-555555555555, but none of the 2 key objects carries that ID"},
		},
		{
			name:      "no key objects at all",
			container: testContainer,
			activeID:  activeID,
			stored:    nil,
			protector: p,
			want:      []error{ErrActiveKeyNotFound},
		},
		{
			name:      "CryptoPolicy displayName is not a GUID",
			container: testContainer,
			activeID:  "primary",
			stored:    stored,
			protector: p,
			want:      []error{ErrInvalidKeyID},
			fragments: []string{`CryptoPolicy displayName: invalid key ID "primary"`},
		},
		{
			name:      "a key object's l is not a GUID",
			container: testContainer,
			activeID:  activeID,
			stored:    []StoredKey{{ID: "", Blob: stored[0].Blob}, stored[1]},
			protector: p,
			want:      []error{ErrInvalidKeyID},
			fragments: []string{"key object attribute l"},
		},
		{
			name:      "two key objects with one ID",
			container: testContainer,
			activeID:  activeID,
			stored:    []StoredKey{stored[0], stored[1], {ID: oldID, Blob: stored[1].Blob}},
			protector: p,
			want:      []error{ErrDuplicateKeyID},
			fragments: []string{"more than one key object carries key ID " + oldID},
		},
		{
			name:      "blobs swapped between key objects",
			container: testContainer,
			activeID:  activeID,
			stored:    []StoredKey{{ID: stored[0].ID, Blob: stored[1].Blob}, {ID: stored[1].ID, Blob: stored[0].Blob}},
			protector: p,
			want:      []error{ErrAuthentication},
			fragments: []string{"key version " + oldID, "key version " + activeID, "belongs to another container or key"},
		},
		{
			name:      "ring copied from another container",
			container: testContainer,
			activeID:  otherStored[0].ID,
			stored:    otherStored,
			protector: p,
			want:      []error{ErrAuthentication},
			fragments: []string{"loading key ring of container 00112233-4455-6677-8899-aabbccddeeff", "for container 00112233-4455-6677-8899-aabbccddeeff key " + otherStored[0].ID},
		},
		{
			name:      "the KEK is gone",
			container: testContainer,
			activeID:  activeID,
			stored:    stored,
			protector: wrappedUnder(t, testKEKB),
			want:      []error{ErrUnknownKEK},
			fragments: []string{"it names KEK " + fingerprint(fingerprintKindKEK, testKEKA).String()},
		},
		{
			name:      "Plain protector on wrapped blobs",
			container: testContainer,
			activeID:  activeID,
			stored:    stored,
			protector: Plain{},
			want:      []error{ErrKeyLength},
			fragments: []string{"is the container in Wrapped mode?"},
		},
		{
			name:      "Wrapped protector on Plain blobs",
			container: testContainer,
			activeID:  activeID,
			stored:    []StoredKey{{ID: activeID, Blob: testKeyBytes}},
			protector: p,
			want:      []error{ErrBadMagic},
			fragments: []string{"look like a Plain key"},
		},
		{
			name:      "every problem at once",
			container: testContainer,
			activeID:  activeID,
			stored:    []StoredKey{{ID: oldID, Blob: stored[0].Blob[:10]}, {ID: activeID, Blob: append(append([]byte(nil), stored[1].Blob...), 0)}, {ID: "x"}},
			protector: p,
			want:      []error{ErrTruncated, ErrTrailingData, ErrInvalidKeyID},
		},
		{
			name:      "no container objectGUID",
			activeID:  activeID,
			stored:    stored,
			protector: p,
			want:      []error{ErrUnbound},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadRing(tt.container, tt.activeID, tt.stored, tt.protector)
			if got != nil {
				t.Fatalf("got a ring along with error %v", err)
			}
			for _, want := range tt.want {
				assertError(t, err, want, tt.fragments, secrets...)
			}
		})
	}
}

// TestKEKRotation walks an administrator's KEK rotation: a new active KEK
// with the old one retired, a re-wrap of every version, then the old KEK
// removed.
func TestKEKRotation(t *testing.T) {
	beforeRotation := wrappedUnder(t, testKEKA)
	ring, stored := storedAfterRotations(t, beforeRotation, 3)
	activeID := ring.ActiveID().String()
	fpA, fpB := fingerprint(fingerprintKindKEK, testKEKA), fingerprint(fingerprintKindKEK, testKEKB)

	// 1. kek = B, kek.old = A: everything opens with the retired KEK.
	during := wrappedUnder(t, testKEKB, testKEKA)
	loaded, err := LoadRing(testContainer, activeID, stored, during)
	if err != nil {
		t.Fatal(err)
	}
	assertSameKeys(t, loaded, ring)
	if !loaded.NeedsRewrap() {
		t.Fatal("versions under the retired KEK do not ask for a re-wrap")
	}
	for _, v := range loaded.Versions() {
		if v.KEK != fpA || !v.NeedsRewrap {
			t.Fatalf("version %s opened under %s (rewrap %v), want %s", v.ID, v.KEK, v.NeedsRewrap, fpA)
		}
	}

	// 2. Re-wrap: every version is sealed again under B.
	rewrappedRing, rewrapped, err := loaded.Rewrap(during)
	if err != nil {
		t.Fatal(err)
	}
	if len(rewrapped) != len(stored) {
		t.Fatalf("re-wrapped %d versions, want %d", len(rewrapped), len(stored))
	}
	if rewrappedRing.NeedsRewrap() || !loaded.NeedsRewrap() {
		t.Fatal("Rewrap did not return a new, current ring")
	}
	assertSameKeys(t, rewrappedRing, ring)
	byID := map[string]StoredKey{}
	for _, sk := range rewrapped {
		byID[sk.ID] = sk
	}
	for i, sk := range stored {
		replacement, ok := byID[sk.ID]
		if !ok || !replacement.Created.Equal(sk.Created) {
			t.Fatalf("version %s was not re-wrapped, or its creation time changed", sk.ID)
		}
		stored[i] = replacement // what the caller writes to thumbnailPhoto
	}
	if _, again, err := rewrappedRing.Rewrap(during); err != nil || len(again) != 0 {
		t.Fatalf("a second re-wrap rewrote %d versions (%v); want none", len(again), err)
	}

	// 3. kek = B only: the old KEK is no longer needed.
	after := wrappedUnder(t, testKEKB)
	final, err := LoadRing(testContainer, activeID, stored, after)
	if err != nil {
		t.Fatalf("after re-wrap the new KEK alone does not open the ring: %v", err)
	}
	assertSameKeys(t, final, ring)
	for _, v := range final.Versions() {
		if v.KEK != fpB || v.NeedsRewrap {
			t.Fatalf("version %s opened under %s (rewrap %v), want %s", v.ID, v.KEK, v.NeedsRewrap, fpB)
		}
	}

	// And the old KEK alone no longer opens anything.
	if _, err := LoadRing(testContainer, activeID, stored, beforeRotation); !errors.Is(err, ErrUnknownKEK) {
		t.Fatalf("the old KEK alone: got %v, want ErrUnknownKEK", err)
	}
}

func TestRewrapPlainRingIsANoOp(t *testing.T) {
	ring, _ := storedAfterRotations(t, Plain{}, 2)
	_, rewrapped, err := ring.Rewrap(Plain{})
	if err != nil || len(rewrapped) != 0 {
		t.Fatalf("got %d re-wrapped versions, %v", len(rewrapped), err)
	}
}

// brokenProtector seals blobs that open to a different key, to prove that
// nothing unverified reaches AD.
type brokenProtector struct{ Plain }

func (brokenProtector) Open(blob []byte, b Binding) (Opened, error) {
	flipped := append([]byte(nil), blob...)
	flipped[0] ^= 1
	return Plain{}.Open(flipped, b)
}

func TestSealIsVerifiedBeforeItIsReturned(t *testing.T) {
	if _, _, err := NewRing(testContainer, brokenProtector{}, t0); err == nil {
		t.Fatal("NewRing returned a blob that does not open to its key")
	}
	during := wrappedUnder(t, testKEKB, testKEKA)
	ring, _ := storedAfterRotations(t, wrappedUnder(t, testKEKA), 1)
	ring.versions[0].NeedsRewrap = true
	if _, _, err := ring.Rewrap(brokenProtector{}); err == nil {
		t.Fatal("Rewrap returned a blob that does not open to its key")
	}
	if _, _, err := ring.Rewrap(during); err != nil {
		t.Fatal(err)
	}
}

func TestRotateRefusesARingWithoutContainer(t *testing.T) {
	if _, _, err := NewRing(ObjectGUID{}, Plain{}, t0); !errors.Is(err, ErrUnbound) {
		t.Fatalf("got %v, want ErrUnbound", err)
	}
}

func TestRotationDue(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		name    string
		created time.Time
		period  time.Duration
		now     time.Time
		want    bool
	}{
		{"never rotates with no period", t0, 0, t0.Add(10000 * day), false},
		{"never rotates with a negative period", t0, -day, t0.Add(10000 * day), false},
		{"not yet", t0, 30 * day, t0.Add(30*day - time.Second), false},
		{"exactly at the period", t0, 30 * day, t0.Add(30 * day), true},
		{"past the period", t0, 30 * day, t0.Add(31 * day), true},
		{"created in the future (clock skew)", t0.Add(day), 30 * day, t0, false},
		{"unknown creation time", time.Time{}, 30 * day, t0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RotationDue(tt.created, tt.period, tt.now); got != tt.want {
				t.Fatalf("RotationDue = %v, want %v", got, tt.want)
			}
		})
	}
	if next, ok := NextRotation(t0, 30*day); !ok || !next.Equal(t0.Add(30*day)) {
		t.Fatalf("NextRotation = %s, %v", next, ok)
	}
	if _, ok := NextRotation(t0, 0); ok {
		t.Fatal("NextRotation with no period says there is one")
	}
}

// TestRingAndProtectorAreSafeToShare runs what the projector does, from
// several goroutines at once; run it with -race.
func TestRingAndProtectorAreSafeToShare(t *testing.T) {
	w := wrappedUnder(t, testKEKA, testKEKB)
	ring, stored := storedAfterRotations(t, w, 3)
	done := make(chan error)
	for range 4 {
		go func() {
			for range 50 {
				if _, err := LoadRing(testContainer, ring.ActiveID().String(), stored, w); err != nil {
					done <- err
					return
				}
				if _, _, err := ring.Rotate(w, t0); err != nil {
					done <- err
					return
				}
				_ = ring.Active().Material.Reveal()
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if ring.Len() != 3 {
		t.Fatalf("the shared ring changed: %d versions", ring.Len())
	}
}
