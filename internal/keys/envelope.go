package keys

import (
	"bytes"
	"fmt"
)

// Envelope format, version 1 (docs/key-envelope.md is the reference):
//
//	offset size  field
//	0      4     magic "DKMW"
//	4      1     format version (1)
//	5      1     algorithm (1 = AES-256-GCM, 12-byte nonce, 16-byte tag)
//	6      8     fingerprint of the KEK that sealed it
//	14     12    nonce
//	26     48    AES-256-GCM ciphertext of the 32-byte key, then the tag
//
// The additional authenticated data is bytes 0..13 of the envelope, then the
// container's objectGUID (16 bytes, as AD stores it), then the key ID (16
// bytes, in text order).
const (
	envelopeMagic         = "DKMW"
	envelopeFormatV1 byte = 1
	algAES256GCM     byte = 1

	gcmNonceSize = 12
	gcmTagSize   = 16

	offsetVersion   = len(envelopeMagic)
	offsetAlgorithm = offsetVersion + 1
	offsetKEK       = offsetAlgorithm + 1
	offsetNonce     = offsetKEK + FingerprintSize
	offsetSealed    = offsetNonce + gcmNonceSize
	headerSize      = offsetNonce // the authenticated header ends where the nonce starts

	// EnvelopeSize is the length of a version 1 AES-256-GCM envelope.
	EnvelopeSize = offsetSealed + KeySize + gcmTagSize
)

// envelope is a parsed, not yet authenticated, key envelope. Its slices
// alias the blob it was parsed from.
type envelope struct {
	header []byte // magic, version, algorithm and KEK fingerprint
	kek    Fingerprint
	nonce  []byte
	sealed []byte // ciphertext and tag
}

// parseEnvelope checks the framing of a blob, field by field in the order a
// reader meets them, so that each kind of damage gets its own error. It never
// indexes past a length it has checked.
func parseEnvelope(blob []byte) (envelope, error) {
	if len(blob) < len(envelopeMagic) {
		return envelope{}, truncated(blob)
	}
	if !bytes.Equal(blob[:len(envelopeMagic)], []byte(envelopeMagic)) {
		return envelope{}, badMagic(blob)
	}
	if len(blob) <= offsetVersion {
		return envelope{}, truncated(blob)
	}
	if v := blob[offsetVersion]; v != envelopeFormatV1 {
		return envelope{}, fmt.Errorf("%w %d: this build reads version %d; was the blob written by a newer dkm-operator?",
			ErrUnknownFormatVersion, v, envelopeFormatV1)
	}
	if len(blob) <= offsetAlgorithm {
		return envelope{}, truncated(blob)
	}
	if a := blob[offsetAlgorithm]; a != algAES256GCM {
		return envelope{}, fmt.Errorf("%w %d: this build knows only %d (AES-256-GCM)", ErrUnknownAlgorithm, a, algAES256GCM)
	}
	if len(blob) < EnvelopeSize {
		return envelope{}, truncated(blob)
	}
	if len(blob) > EnvelopeSize {
		return envelope{}, fmt.Errorf("%w: %d bytes, a version %d AES-256-GCM envelope has exactly %d",
			ErrTrailingData, len(blob), envelopeFormatV1, EnvelopeSize)
	}
	return envelope{
		header: blob[:headerSize],
		kek:    Fingerprint(blob[offsetKEK:offsetNonce]),
		nonce:  blob[offsetNonce:offsetSealed],
		sealed: blob[offsetSealed:],
	}, nil
}

func truncated(blob []byte) error {
	return fmt.Errorf("%w: %d bytes, a version %d AES-256-GCM envelope has %d",
		ErrTruncated, len(blob), envelopeFormatV1, EnvelopeSize)
}

func badMagic(blob []byte) error {
	if len(blob) == KeySize {
		return fmt.Errorf("%w: %d bytes without the %q magic look like a Plain key; is the container in Plain mode?",
			ErrBadMagic, len(blob), envelopeMagic)
	}
	return fmt.Errorf("%w: it does not start with %q", ErrBadMagic, envelopeMagic)
}

// appendHeader appends the authenticated header for a KEK.
func appendHeader(dst []byte, kek Fingerprint) []byte {
	dst = append(dst, envelopeMagic...)
	dst = append(dst, envelopeFormatV1, algAES256GCM)
	return append(dst, kek[:]...)
}

// additionalData binds an envelope to its header, its container and its key
// ID, so that no part of it can be moved or swapped without failing to open.
func additionalData(header []byte, b Binding) []byte {
	aad := make([]byte, 0, headerSize+len(b.Container)+len(b.KeyID))
	aad = append(aad, header...)
	aad = append(aad, b.Container[:]...)
	return append(aad, b.KeyID[:]...)
}
