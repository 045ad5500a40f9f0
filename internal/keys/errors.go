package keys

import (
	"errors"
	"strings"
)

// Envelope errors: what is wrong with a stored blob. Each names one cause so
// that a condition message can tell an administrator what to do about it.
var (
	// ErrTruncated: the blob is shorter than its format requires.
	ErrTruncated = errors.New("key envelope is truncated")
	// ErrTrailingData: the blob is longer than its format allows.
	ErrTrailingData = errors.New("key envelope has trailing data")
	// ErrBadMagic: the blob is not a key envelope at all.
	ErrBadMagic = errors.New("not a wrapped key envelope")
	// ErrUnknownFormatVersion: the envelope comes from a newer (or corrupted)
	// writer whose layout this build cannot read.
	ErrUnknownFormatVersion = errors.New("unknown key envelope format version")
	// ErrUnknownAlgorithm: the envelope names an algorithm this build does
	// not implement.
	ErrUnknownAlgorithm = errors.New("unknown key envelope algorithm")
	// ErrUnknownKEK: the envelope was wrapped under a KEK that is not in the
	// KEK Secret (neither active nor retired).
	ErrUnknownKEK = errors.New("key envelope was wrapped under a KEK that is not in the KEK Secret")
	// ErrAuthentication: the envelope does not authenticate under its KEK for
	// the container and key ID it was opened for: it was altered, or it
	// belongs to another container or key.
	ErrAuthentication = errors.New("the blob does not authenticate")
	// ErrKeyLength: key material (a Plain blob, or bytes handed to
	// [NewMaterial]) is not exactly [KeySize] bytes.
	ErrKeyLength = errors.New("key has the wrong length")
	// ErrUnbound: a seal or open was asked for without a container GUID or
	// key ID, which would make the binding meaningless.
	ErrUnbound = errors.New("key binding is incomplete")
)

// KEK Secret errors: what is wrong with the Secret holding the KEKs.
var (
	// ErrMissingKEK: the Secret has no active KEK entry ("kek").
	ErrMissingKEK = errors.New("KEK Secret has no active KEK")
	// ErrKEKLength: a KEK entry is not exactly [KEKSize] raw bytes.
	ErrKEKLength = errors.New("KEK has the wrong length")
	// ErrDuplicateKEK: two entries of the Secret hold the same KEK.
	ErrDuplicateKEK = errors.New("KEK Secret holds the same KEK twice")
	// ErrKEKName: a Secret data key looks like a KEK entry but is not named
	// "kek" or "kek.<suffix>".
	ErrKEKName = errors.New("KEK Secret data key is malformed")
)

// Identifier and key ring errors.
var (
	// ErrInvalidKeyID: a key ID is not a GUID in canonical text form.
	ErrInvalidKeyID = errors.New("invalid key ID")
	// ErrInvalidObjectGUID: an objectGUID is not 16 bytes or not a GUID.
	ErrInvalidObjectGUID = errors.New("invalid objectGUID")
	// ErrActiveKeyNotFound: CryptoPolicy names a key ID for which no key
	// version exists.
	ErrActiveKeyNotFound = errors.New("active key not found")
	// ErrDuplicateKeyID: two stored key versions carry the same key ID.
	ErrDuplicateKeyID = errors.New("duplicate key ID")
	// ErrNoMatchingCopy: no copy of a key version outside AD has the fingerprint recorded for it.
	ErrNoMatchingCopy = errors.New("no copy matches the recorded fingerprint")
	// ErrUnknownMode: a protection mode other than Wrapped or Plain.
	ErrUnknownMode = errors.New("unknown key protection mode")
)

// errorList reports several independent problems at once (every bad KEK
// entry, every key version that does not open) on one line, which reads
// better in a condition message than errors.Join's newlines. errors.Is and
// errors.As see every member.
type errorList []error

func (l errorList) Error() string {
	msgs := make([]string, len(l))
	for i, err := range l {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (l errorList) Unwrap() []error { return l }

// joinErrors returns nil for no errors, the error itself for one, and an
// errorList otherwise.
func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	default:
		return errorList(errs)
	}
}
