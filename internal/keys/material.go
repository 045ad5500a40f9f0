package keys

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
)

// KeySize is the size of a DKM key in bytes (AES-256).
const KeySize = 32

// redacted is what every key-holding type prints instead of its bytes.
const redacted = "[redacted]"

// Material is the secret bytes of one DKM key version.
//
// It cannot leak by accident: every fmt verb, %#v, JSON, text marshalling and
// slog print "[redacted]", and the bytes are [hidden] so that fmt cannot reach
// them even through an unexported field of an enclosing struct, where it
// walks fields by reflection instead of calling Format. The only way to the
// bytes is [Material.Reveal].
//
// The zero Material holds no key.
type Material struct {
	key hidden[*[KeySize]byte]
}

// hidden keeps a value out of reach of fmt and reflection. fmt prints a func
// as an address under every verb, and nothing can read the variables a
// closure captured. A pointer or array field would not do: for a verb such as
// %s or %x, fmt dereferences a pointer it finds by reflection and prints what
// it points at.
type hidden[T any] func() T

func hide[T any](v T) hidden[T] { return func() T { return v } }

// GenerateMaterial returns a fresh 256-bit key from crypto/rand.
func GenerateMaterial() (Material, error) {
	return generateMaterial(rand.Reader)
}

func generateMaterial(random io.Reader) (Material, error) {
	key := new([KeySize]byte)
	if _, err := io.ReadFull(random, key[:]); err != nil {
		return Material{}, fmt.Errorf("generating key material: %w", err)
	}
	return Material{key: hide(key)}, nil
}

// NewMaterial copies b into a Material. b must be exactly [KeySize] bytes.
func NewMaterial(b []byte) (Material, error) {
	if len(b) != KeySize {
		return Material{}, fmt.Errorf("%w: %d bytes, want %d", ErrKeyLength, len(b), KeySize)
	}
	key := new([KeySize]byte)
	copy(key[:], b)
	return Material{key: hide(key)}, nil
}

// Reveal returns a copy of the key bytes. It exists to project keys into
// replica Secrets; nothing else should call it. It returns nil for the zero
// Material.
func (m Material) Reveal() []byte {
	if m.key == nil {
		return nil
	}
	out := make([]byte, KeySize)
	copy(out, m.key()[:])
	return out
}

// IsZero reports whether m holds no key.
func (m Material) IsZero() bool { return m.key == nil }

// Equal reports, in constant time, whether m and other hold the same key.
func (m Material) Equal(other Material) bool {
	if m.key == nil || other.key == nil {
		return m.key == nil && other.key == nil
	}
	return subtle.ConstantTimeCompare(m.key()[:], other.key()[:]) == 1
}

// Fingerprint names the key without revealing it.
func (m Material) Fingerprint() Fingerprint {
	if m.key == nil {
		return Fingerprint{}
	}
	return fingerprint(fingerprintKindKey, m.key()[:])
}

// String implements fmt.Stringer.
func (Material) String() string { return redacted }

// GoString implements fmt.GoStringer.
func (Material) GoString() string { return "keys.Material{" + redacted + "}" }

// Format implements fmt.Formatter, so that no verb (%x, %d, %q...) reaches
// the bytes.
func (m Material) Format(f fmt.State, verb rune) { formatRedacted(f, verb, m.GoString()) }

// MarshalJSON implements json.Marshaler.
func (Material) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (Material) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue implements slog.LogValuer.
func (Material) LogValue() slog.Value { return slog.StringValue(redacted) }

// formatRedacted is the fmt.Formatter body shared by every type that holds
// secret bytes: %#v prints goString, %q a quoted "[redacted]", and every other
// verb "[redacted]".
func formatRedacted(f fmt.State, verb rune, goString string) {
	switch {
	case verb == 'v' && f.Flag('#'):
		io.WriteString(f, goString)
	case verb == 'q':
		io.WriteString(f, `"`+redacted+`"`)
	default:
		io.WriteString(f, redacted)
	}
}
