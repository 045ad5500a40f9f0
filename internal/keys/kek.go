package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
)

// KEKSize is the size of a key-encryption key in bytes (AES-256).
const KEKSize = 32

// Layout of the KEK Secret's data map.
const (
	// ActiveKEKDataKey holds the active KEK: exactly 32 raw bytes. New and
	// re-wrapped envelopes are sealed under it.
	ActiveKEKDataKey = "kek"
	// RetiredKEKDataKeyPrefix starts the data key of a retired KEK
	// ("kek.<suffix>", e.g. "kek.2025-01"). Retired KEKs only open envelopes;
	// they are kept until every version has been re-wrapped.
	RetiredKEKDataKeyPrefix = "kek."
)

// KEK is one key-encryption key, ready to seal and open envelopes. It keeps
// no copy of its raw bytes, only the AES-GCM instance (whose key schedule is
// as secret as the KEK, hence [hidden]), and prints as its fingerprint and
// Secret data key, never as bytes.
type KEK struct {
	dataKey     string
	fingerprint Fingerprint
	aead        hidden[cipher.AEAD]
}

// NewKEK builds a KEK from raw bytes found under dataKey in the KEK Secret.
// raw must be exactly KEKSize bytes; dataKey only names it in messages.
func NewKEK(dataKey string, raw []byte) (*KEK, error) {
	if len(raw) != KEKSize {
		return nil, fmt.Errorf("%w: Secret data key %q holds %d bytes, want exactly %d raw bytes%s",
			ErrKEKLength, dataKey, len(raw), KEKSize, kekLengthHint(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("KEK in Secret data key %q: %w", dataKey, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("KEK in Secret data key %q: %w", dataKey, err)
	}
	return &KEK{
		dataKey:     dataKey,
		fingerprint: fingerprint(fingerprintKindKEK, raw),
		aead:        hide(aead),
	}, nil
}

// kekLengthHint recognises the usual ways of getting a KEK wrong (storing its
// text encoding, or a trailing newline from echo) and says so. It describes
// the shape of the value only, never its content.
func kekLengthHint(raw []byte) string {
	trimmed := strings.TrimRight(string(raw), "\r\n")
	switch {
	case len(raw) == 0:
		return " (the entry is empty)"
	case decodesTo(base64.StdEncoding, trimmed) || decodesTo(base64.URLEncoding, trimmed):
		return " (it looks like base64 text: store the 32 decoded bytes, e.g. kubectl create secret generic NAME --from-file=kek=<file of 32 random bytes>)"
	case len(trimmed) == hex.EncodedLen(KEKSize) && isHex(trimmed):
		return " (it looks like hex text: store the 32 decoded bytes, not their hex form)"
	case len(trimmed) == KEKSize:
		return " (it ends with a line break: store the 32 bytes without one)"
	default:
		return ""
	}
}

func decodesTo(enc *base64.Encoding, s string) bool {
	b, err := enc.DecodeString(s)
	return err == nil && len(b) == KEKSize
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// Fingerprint names the KEK; it is what envelopes record.
func (k *KEK) Fingerprint() Fingerprint { return k.fingerprint }

// DataKey is the Secret data key the KEK came from.
func (k *KEK) DataKey() string { return k.dataKey }

// String describes the KEK by fingerprint and data key.
func (k *KEK) String() string {
	return fmt.Sprintf("KEK %s (Secret data key %q)", k.fingerprint, k.dataKey)
}

// GoString implements fmt.GoStringer.
func (k *KEK) GoString() string { return "&keys.KEK{" + k.String() + "}" }

// Format implements fmt.Formatter: every verb prints the description, so no
// verb can walk into the cipher state.
func (k *KEK) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, k.GoString())
		return
	}
	io.WriteString(f, k.String())
}

// MarshalJSON implements json.Marshaler.
func (k *KEK) MarshalJSON() ([]byte, error) { return json.Marshal(k.String()) }

// LogValue implements slog.LogValuer.
func (k *KEK) LogValue() slog.Value { return slog.StringValue(k.String()) }

// KEKRing is the set of KEKs from one KEK Secret: the active KEK, which seals,
// and any retired KEKs, which only open.
type KEKRing struct {
	active  *KEK
	retired []*KEK
}

// NewKEKRing assembles a ring. It refuses a KEK that appears twice, because
// an envelope names its KEK by fingerprint and must name exactly one.
func NewKEKRing(active *KEK, retired ...*KEK) (*KEKRing, error) {
	if active == nil {
		return nil, fmt.Errorf("%w: no active KEK given", ErrMissingKEK)
	}
	all := append([]*KEK{active}, retired...)
	for i, k := range all {
		for _, earlier := range all[:i] {
			if k.fingerprint == earlier.fingerprint {
				return nil, fmt.Errorf("%w: Secret data keys %q and %q both hold KEK %s; keep one",
					ErrDuplicateKEK, earlier.dataKey, k.dataKey, k.fingerprint)
			}
		}
	}
	return &KEKRing{active: active, retired: slices.Clone(retired)}, nil
}

// ParseKEKSecret reads the data map of a KEK Secret:
//
//	kek          the active KEK, exactly 32 raw bytes (required)
//	kek.<suffix> a retired KEK, exactly 32 raw bytes (any number, optional)
//
// Other data keys that begin with "kek" in any case ("KEK", "kek-old",
// "kek.") are refused as likely typos; all remaining data keys are ignored,
// so the Secret may carry unrelated entries. Every problem found is reported,
// not just the first.
func ParseKEKSecret(data map[string][]byte) (*KEKRing, error) {
	var (
		active      *KEK
		activeFound bool
		retired     []*KEK
		errs        []error
	)
	for _, name := range slices.Sorted(maps.Keys(data)) {
		switch {
		case name == ActiveKEKDataKey:
			activeFound = true
			k, err := NewKEK(name, data[name])
			if err != nil {
				errs = append(errs, err)
				continue
			}
			active = k
		case strings.HasPrefix(name, RetiredKEKDataKeyPrefix) && len(name) > len(RetiredKEKDataKeyPrefix):
			k, err := NewKEK(name, data[name])
			if err != nil {
				errs = append(errs, err)
				continue
			}
			retired = append(retired, k)
		case strings.HasPrefix(strings.ToLower(name), ActiveKEKDataKey):
			errs = append(errs, fmt.Errorf("%w: %q is neither %q nor %q",
				ErrKEKName, name, ActiveKEKDataKey, RetiredKEKDataKeyPrefix+"<suffix>"))
		}
	}
	if !activeFound {
		errs = append(errs, fmt.Errorf("%w: add data key %q holding %d random bytes",
			ErrMissingKEK, ActiveKEKDataKey, KEKSize))
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return NewKEKRing(active, retired...)
}

// Active is the KEK that seals.
func (r *KEKRing) Active() *KEK { return r.active }

// Retired are the KEKs that only open, in Secret data key order.
func (r *KEKRing) Retired() []*KEK { return slices.Clone(r.retired) }

// Lookup finds the KEK with fingerprint fp, active or retired.
func (r *KEKRing) Lookup(fp Fingerprint) (*KEK, bool) {
	if r == nil || r.active == nil {
		return nil, false
	}
	if r.active.fingerprint == fp {
		return r.active, true
	}
	for _, k := range r.retired {
		if k.fingerprint == fp {
			return k, true
		}
	}
	return nil, false
}

// String lists the KEKs by fingerprint and data key.
func (r *KEKRing) String() string {
	if r == nil || r.active == nil {
		return "no KEKs"
	}
	parts := []string{fmt.Sprintf("%s as %q (active)", r.active.fingerprint, r.active.dataKey)}
	for _, k := range r.retired {
		parts = append(parts, fmt.Sprintf("%s as %q", k.fingerprint, k.dataKey))
	}
	return strings.Join(parts, ", ")
}

// GoString implements fmt.GoStringer.
func (r *KEKRing) GoString() string { return "&keys.KEKRing{" + r.String() + "}" }

// Format implements fmt.Formatter, for the same reason as [KEK.Format].
func (r *KEKRing) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, r.GoString())
		return
	}
	io.WriteString(f, r.String())
}

// MarshalJSON implements json.Marshaler.
func (r *KEKRing) MarshalJSON() ([]byte, error) { return json.Marshal(r.String()) }

// LogValue implements slog.LogValuer.
func (r *KEKRing) LogValue() slog.Value { return slog.StringValue(r.String()) }
