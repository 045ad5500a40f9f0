package keys

import (
	"crypto/rand"
	"fmt"
	"io"
)

// Mode is how key versions are protected in AD. The values match the
// DKMContainer field spec.keyProtection.
type Mode string

const (
	// ModeWrapped seals each key in an AES-256-GCM envelope under a KEK.
	ModeWrapped Mode = "Wrapped"
	// ModePlain stores raw key bytes, as AD FS does.
	ModePlain Mode = "Plain"
)

// Binding is what a blob belongs to: the DKM container, by objectGUID, and
// the key version, by key ID. A Wrapped blob opens only for the binding it
// was sealed for.
type Binding struct {
	Container ObjectGUID
	KeyID     KeyID
}

func (b Binding) validate() error {
	switch {
	case b.Container.IsZero():
		return fmt.Errorf("%w: no container objectGUID", ErrUnbound)
	case b.KeyID.IsZero():
		return fmt.Errorf("%w: no key ID", ErrUnbound)
	}
	return nil
}

// Opened is an opened blob: the key, and how it was protected.
type Opened struct {
	Material Material
	// KEK is the fingerprint of the KEK that opened the blob; zero for Plain.
	KEK Fingerprint
	// NeedsRewrap is true when KEK is a retired KEK: the blob should be
	// re-wrapped under the active KEK so the retired one can be dropped.
	NeedsRewrap bool
}

// Protector turns key material into the blob stored in thumbnailPhoto and
// back.
type Protector interface {
	// Mode says which protection this is.
	Mode() Mode
	// Seal protects m for storage under binding b.
	Seal(m Material, b Binding) ([]byte, error)
	// Open recovers the key from a blob stored under binding b.
	Open(blob []byte, b Binding) (Opened, error)
}

// NewProtector returns the Protector for a mode. Wrapped (also chosen for
// the empty mode, the API default) needs the ring parsed from the KEK Secret;
// Plain ignores it.
func NewProtector(mode Mode, keks *KEKRing) (Protector, error) {
	switch mode {
	case ModeWrapped, "":
		if keks == nil || keks.active == nil {
			return nil, fmt.Errorf("%w: Wrapped key protection needs a KEK Secret", ErrMissingKEK)
		}
		return NewWrapped(keks), nil
	case ModePlain:
		return Plain{}, nil
	default:
		return nil, fmt.Errorf("%w %s: want %q or %q", ErrUnknownMode, quoteShort(string(mode)), ModeWrapped, ModePlain)
	}
}

// Wrapped seals keys in AES-256-GCM envelopes under the active KEK of a
// KEKRing and opens envelopes sealed under any KEK of the ring. It is safe
// for concurrent use.
type Wrapped struct {
	keks *KEKRing
	// random supplies nonces; tests replace it to reproduce known answers.
	random io.Reader
}

var _ Protector = (*Wrapped)(nil)

// NewWrapped returns a Wrapped protector over keks.
func NewWrapped(keks *KEKRing) *Wrapped {
	return &Wrapped{keks: keks, random: rand.Reader}
}

// Mode returns ModeWrapped.
func (*Wrapped) Mode() Mode { return ModeWrapped }

// String names the active KEK.
func (w *Wrapped) String() string {
	if w.keks == nil || w.keks.active == nil {
		return "Wrapped key protection without KEKs"
	}
	return "Wrapped key protection under " + w.keks.active.String()
}

// KEKs returns the ring the protector uses.
func (w *Wrapped) KEKs() *KEKRing { return w.keks }

// SealedUnderRetired reports, from its header alone (nothing is unwrapped), whether blob is
// wrapped under one of the ring's retired KEKs, so that a re-wrap can be planned before it is
// made. A blob whose framing does not parse is not: opening it reports the damage.
func (w *Wrapped) SealedUnderRetired(blob []byte) bool {
	env, err := parseEnvelope(blob)
	if err != nil || w.keks == nil || w.keks.active == nil || env.kek == w.keks.active.fingerprint {
		return false
	}
	_, known := w.keks.Lookup(env.kek)
	return known
}

// Seal wraps m under the active KEK, bound to b.
func (w *Wrapped) Seal(m Material, b Binding) ([]byte, error) {
	if err := b.validate(); err != nil {
		return nil, fmt.Errorf("sealing key %s: %w", b.KeyID, err)
	}
	if m.IsZero() {
		return nil, fmt.Errorf("sealing key %s: %w: no key material", b.KeyID, ErrKeyLength)
	}
	if w.keks == nil || w.keks.active == nil {
		return nil, fmt.Errorf("sealing key %s: %w", b.KeyID, ErrMissingKEK)
	}
	kek := w.keks.active

	var nonce [gcmNonceSize]byte
	if _, err := io.ReadFull(w.randomReader(), nonce[:]); err != nil {
		return nil, fmt.Errorf("sealing key %s: reading nonce: %w", b.KeyID, err)
	}
	header := appendHeader(make([]byte, 0, EnvelopeSize), kek.fingerprint)
	aad := additionalData(header, b)
	blob := append(header, nonce[:]...)
	return kek.aead().Seal(blob, nonce[:], m.key()[:], aad), nil
}

func (w *Wrapped) randomReader() io.Reader {
	if w.random == nil {
		return rand.Reader
	}
	return w.random
}

// Open unwraps an envelope sealed for b under any KEK of the ring, and says
// which KEK that was.
func (w *Wrapped) Open(blob []byte, b Binding) (Opened, error) {
	if err := b.validate(); err != nil {
		return Opened{}, err
	}
	env, err := parseEnvelope(blob)
	if err != nil {
		return Opened{}, err
	}
	kek, ok := w.keks.Lookup(env.kek)
	if !ok {
		return Opened{}, fmt.Errorf("%w: it names KEK %s; the Secret holds %s", ErrUnknownKEK, env.kek, w.keks)
	}
	var key [KeySize]byte
	defer clear(key[:])
	plaintext, err := kek.aead().Open(key[:0], env.nonce, env.sealed, additionalData(env.header, b))
	if err != nil {
		// The cipher's own error says nothing more than "authentication failed".
		return Opened{}, fmt.Errorf("%w for container %s key %s: it was altered, or belongs to another container or key",
			ErrAuthentication, b.Container, b.KeyID)
	}
	m, err := NewMaterial(plaintext)
	if err != nil {
		return Opened{}, err
	}
	return Opened{Material: m, KEK: kek.fingerprint, NeedsRewrap: kek != w.keks.active}, nil
}

// Plain stores the raw 32 key bytes, the layout AD FS reads. Only the ACEs on
// the container protect them; the binding is not used.
type Plain struct{}

var _ Protector = Plain{}

// Mode returns ModePlain.
func (Plain) Mode() Mode { return ModePlain }

// Seal returns the raw key bytes.
func (Plain) Seal(m Material, b Binding) ([]byte, error) {
	if m.IsZero() {
		return nil, fmt.Errorf("sealing key %s: %w: no key material", b.KeyID, ErrKeyLength)
	}
	return m.Reveal(), nil
}

// Open takes the blob as the raw key after checking its length.
func (Plain) Open(blob []byte, _ Binding) (Opened, error) {
	if len(blob) != KeySize {
		hint := ""
		if len(blob) >= len(envelopeMagic) && string(blob[:len(envelopeMagic)]) == envelopeMagic {
			hint = "; it looks like a wrapped envelope: is the container in Wrapped mode?"
		}
		return Opened{}, fmt.Errorf("%w: a Plain key is %d raw bytes, the blob has %d%s", ErrKeyLength, KeySize, len(blob), hint)
	}
	m, err := NewMaterial(blob)
	if err != nil {
		return Opened{}, err
	}
	return Opened{Material: m}, nil
}
