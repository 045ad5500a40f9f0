// Package backup takes a DKM container subtree out of AD into one age-encrypted file and puts it
// back, into the same DN or another DN or domain (docs/design.md, "Recovery is a product
// feature"). Key bytes exist in clear only in memory: the file is written through age, and
// nothing here formats a key into text other than the JSON age encrypts.
package backup

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/keys"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// Format names version 1 of the backup's contents (the JSON inside the age encryption).
const Format = "dkm-operator-backup/v1"

// MaxSize bounds a decrypted backup: a container holds a few dozen key versions at most.
const MaxSize = 4 << 20

// File is a backup of one DKM container subtree.
type File struct {
	Format    string    `json:"format"`
	CreatedAt time.Time `json:"createdAt"`
	Source    Source    `json:"source"`
	Container Container `json:"container"`
	Manager   Object    `json:"manager"`
	// ActiveKeyID is CryptoPolicy's displayName.
	ActiveKeyID string     `json:"activeKeyID"`
	Protection  Protection `json:"protection"`
	Keys        []Key      `json:"keys"`
}

// Source is the domain the backup was taken from.
type Source struct {
	DomainDN      string `json:"domainDN"`
	DNSName       string `json:"dnsName"`
	NetBIOSName   string `json:"netbiosName"`
	DomainSID     string `json:"domainSID"`
	ForestRootSID string `json:"forestRootSID"`
}

// Object is an object of the subtree: its DN, objectGUID and ownership record (adminDescription).
type Object struct {
	DN    string `json:"dn"`
	GUID  string `json:"guid"`
	Owner string `json:"owner,omitempty"`
}

// Container is the DKM container and its DACL.
type Container struct {
	Object
	// DACL is the explicit DACL in SDDL with every SID in full: what a restore writes (after
	// remapping SIDs to the target domain).
	DACL string `json:"dacl"`
	// DACLWithNames is the same DACL for people: well-known aliases, accounts by name.
	DACLWithNames string `json:"daclWithNames"`
	// Accounts names the domain accounts the DACL grants, so a restore into another domain can
	// resolve them by name there.
	Accounts []Account `json:"accounts,omitempty"`
}

// Account is a domain account of the DACL.
type Account struct {
	SID            string `json:"sid"`
	SAMAccountName string `json:"samAccountName"`
	Name           string `json:"name"` // DOMAIN\sAMAccountName
}

// Protection says how the keys were protected in AD and how they are held in the backup.
type Protection struct {
	// InAD is spec.keyProtection.mode of the source: Wrapped or Plain.
	InAD keys.Mode `json:"inAD"`
	// UnwrappedWith lists the fingerprints of the KEKs that opened the Wrapped blobs. The keys
	// are held unwrapped inside the age encryption, so a restore needs no KEK of the source:
	// it survives a KEK rotation or loss.
	UnwrappedWith []string `json:"unwrappedWith,omitempty"`
	Note          string   `json:"note"`
}

// Key is one key version.
type Key struct {
	ID          string    `json:"id"`
	Created     time.Time `json:"created"`
	Fingerprint string    `json:"fingerprint"`
	DN          string    `json:"dn"`
	Owner       string    `json:"owner,omitempty"`
	// Key is the 32 key bytes (base64 in the JSON that age encrypts; redacted in any other
	// formatting).
	Key Secret `json:"key"`
}

// Secret is key bytes that never format as text, except as the JSON a backup encrypts.
type Secret []byte

const redacted = "[redacted]"

func (Secret) String() string             { return redacted }
func (Secret) GoString() string           { return redacted }
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }
func (Secret) LogValue() slog.Value       { return slog.StringValue(redacted) }
func (s Secret) MarshalJSON() ([]byte, error) {
	return json.Marshal(base64.StdEncoding.EncodeToString(s))
}
func (s *Secret) UnmarshalJSON(b []byte) error { return s.unmarshal(b) }

func (s *Secret) unmarshal(b []byte) error {
	var text string
	if err := json.Unmarshal(b, &text); err != nil {
		return errors.New("key: want a base64 string")
	}
	raw, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return errors.New("key: not base64")
	}
	*s = raw
	return nil
}

// Errors a parsed backup can have.
var (
	ErrFormat  = errors.New("not a dkm-operator backup")
	ErrInvalid = errors.New("invalid backup")
)

// Parse reads and checks a decrypted backup: the format, every DN, GUID, SID and key ID, each
// key's length and that its fingerprint is the one recorded, and that the active key is there.
func Parse(b []byte) (*File, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrInvalid, len(b), MaxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	f := &File{}
	if err := dec.Decode(f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the backup", ErrInvalid)
	}
	if f.Format != Format {
		return nil, fmt.Errorf("%w: format %q, this build reads %q", ErrFormat, clip(f.Format), Format)
	}
	if err := f.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return f, nil
}

func (f *File) validate() error {
	for _, sid := range []string{f.Source.DomainSID, f.Source.ForestRootSID} {
		if s, err := secdesc.ParseSID(sid); err != nil || !s.IsDomainSID() {
			return fmt.Errorf("source domain SID %q is not a domain SID", clip(sid))
		}
	}
	for _, o := range []Object{f.Container.Object, f.Manager} {
		if err := directory.ValidateDN(o.DN); err != nil {
			return fmt.Errorf("DN %q: %v", clip(o.DN), err)
		}
		if _, err := secdesc.ParseGUID(o.GUID); err != nil {
			return fmt.Errorf("objectGUID of %s: %v", clip(o.DN), err)
		}
	}
	if _, err := secdesc.ParseSDDL(f.Container.DACL, secdesc.Aliases{}); err != nil {
		return fmt.Errorf("container DACL: %v", err)
	}
	for _, a := range f.Container.Accounts {
		if _, err := secdesc.ParseSID(a.SID); err != nil {
			return fmt.Errorf("account %q: %v", clip(a.Name), err)
		}
	}
	switch f.Protection.InAD {
	case keys.ModeWrapped, keys.ModePlain:
	default:
		return fmt.Errorf("protection %q: want %s or %s", clip(string(f.Protection.InAD)), keys.ModeWrapped, keys.ModePlain)
	}
	if len(f.Keys) == 0 {
		return errors.New("no keys")
	}
	if _, err := f.Versions(); err != nil {
		return err
	}
	return nil
}

// Versions are the backup's keys, each checked against its recorded fingerprint.
func (f *File) Versions() ([]keys.Version, error) {
	active, err := keys.ParseKeyID(f.ActiveKeyID)
	if err != nil {
		return nil, fmt.Errorf("active key: %v", err)
	}
	out := make([]keys.Version, 0, len(f.Keys))
	seen := map[keys.KeyID]bool{}
	for _, k := range f.Keys {
		id, err := keys.ParseKeyID(k.ID)
		if err != nil {
			return nil, fmt.Errorf("key: %v", err)
		}
		if seen[id] {
			return nil, fmt.Errorf("key %s twice", id)
		}
		seen[id] = true
		m, err := keys.NewMaterial(k.Key)
		if err != nil {
			return nil, fmt.Errorf("key %s: %v", id, err)
		}
		v := keys.NewVersion(id, m, k.Created)
		if v.Fingerprint.String() != k.Fingerprint {
			return nil, fmt.Errorf("key %s: its bytes have fingerprint %s, the backup records %q", id, v.Fingerprint, clip(k.Fingerprint))
		}
		out = append(out, v)
	}
	if !seen[active] {
		return nil, fmt.Errorf("the active key %s is not among the keys", active)
	}
	return out, nil
}

// Summary describes the backup for people, without key bytes.
func (f *File) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "container %s (objectGUID %s) in %s (%s)\n", f.Container.DN, f.Container.GUID, f.Source.DNSName, f.Source.DomainSID)
	fmt.Fprintf(&b, "  DACL: %s\n", f.Container.DACLWithNames)
	fmt.Fprintf(&b, "  %s (objectGUID %s), CryptoPolicy names %s\n", f.Manager.DN, f.Manager.GUID, f.ActiveKeyID)
	fmt.Fprintf(&b, "  keys (%s in AD; %s):\n", f.Protection.InAD, f.Protection.Note)
	for _, k := range f.Keys {
		active := ""
		if strings.EqualFold(k.ID, f.ActiveKeyID) {
			active = " (active)"
		}
		fmt.Fprintf(&b, "    %s %s created %s%s\n", k.ID, k.Fingerprint, k.Created.UTC().Format(time.RFC3339), active)
	}
	return b.String()
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
