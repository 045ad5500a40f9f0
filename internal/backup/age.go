package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
)

// Encrypt writes f to w encrypted with age to the recipients (X25519 public keys, or one
// passphrase recipient). The clear JSON exists only in memory, and is cleared after use.
func Encrypt(w io.Writer, f *File, recipients ...age.Recipient) error {
	if len(recipients) == 0 {
		return errors.New("encrypting the backup: no recipient or passphrase")
	}
	plain, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encoding the backup: %w", err)
	}
	defer clear(plain)
	enc, err := age.Encrypt(w, recipients...)
	if err != nil {
		return fmt.Errorf("encrypting the backup: %w", err)
	}
	if _, err := enc.Write(plain); err != nil {
		return fmt.Errorf("encrypting the backup: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("encrypting the backup: %w", err)
	}
	return nil
}

// Decrypt reads an age-encrypted backup with the identities and parses it.
func Decrypt(r io.Reader, identities ...age.Identity) (*File, error) {
	dec, err := age.Decrypt(r, identities...)
	if err != nil {
		return nil, fmt.Errorf("decrypting the backup: %w", err)
	}
	plain, err := io.ReadAll(io.LimitReader(dec, MaxSize+1))
	defer clear(plain)
	if err != nil {
		return nil, fmt.Errorf("decrypting the backup: %w", err)
	}
	return Parse(plain)
}

// Recipients parses age recipients ("age1..." public keys, one per line or argument; # starts
// a comment) for Encrypt.
func Recipients(texts ...string) ([]age.Recipient, error) {
	var out []age.Recipient
	for _, t := range texts {
		rs, err := age.ParseRecipients(strings.NewReader(t))
		if err != nil {
			return nil, fmt.Errorf("age recipient: %w", err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

// Passphrase is the recipient and the identity of a passphrase-encrypted backup.
func Passphrase(pass string) (age.Recipient, age.Identity, error) {
	pass = strings.TrimRight(pass, "\r\n")
	if pass == "" {
		return nil, nil, errors.New("empty passphrase")
	}
	r, err := age.NewScryptRecipient(pass)
	if err != nil {
		return nil, nil, err
	}
	id, err := age.NewScryptIdentity(pass)
	if err != nil {
		return nil, nil, err
	}
	return r, id, nil
}
