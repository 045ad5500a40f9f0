package dkmctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"

	"github.com/dkm-operator/dkm-operator/internal/backup"
)

// runBackup: dkmctl backup NAME -o FILE (--recipient R | --recipients-file F | --passphrase-file F).
func runBackup(ctx context.Context, args []string, env Env) error {
	fs, c := newCommand("backup", env)
	out := fs.String("o", "", "the backup file to write (required; never overwritten)")
	var recipients stringList
	fs.Var(&recipients, "recipient", "age recipient (age1...) to encrypt to (repeatable)")
	recipientsFile := fs.String("recipients-file", "", "file of age recipients, one per line")
	passFile := fs.String("passphrase-file", "", "encrypt with the passphrase in this file instead")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *out == "" {
		return usageError{errors.New("-o FILE is required")}
	}
	rcpts, err := backupRecipients(recipients, *recipientsFile, *passFile)
	if err != nil {
		return err
	}
	obj, err := c.dkmContainer(ctx, pos)
	if err != nil {
		return err
	}
	t, err := c.connect(ctx, obj)
	if err != nil {
		return err
	}
	defer t.close()
	f, err := backup.Take(ctx, t.dir, obj.Spec.Path, t.protector, env.Now())
	if err != nil {
		return err
	}
	if err := writeNew(*out, func(buf *bytes.Buffer) error { return backup.Encrypt(buf, f, rcpts...) }); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "wrote %s (age-encrypted)\n%s", *out, f.Summary())
	return nil
}

func backupRecipients(recipients []string, file, passFile string) ([]age.Recipient, error) {
	if passFile != "" {
		if len(recipients) > 0 || file != "" {
			return nil, usageError{errors.New("give recipients or a passphrase, not both")}
		}
		r, _, err := passphrase(passFile)
		return []age.Recipient{r}, err
	}
	texts := append([]string(nil), recipients...)
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		texts = append(texts, string(b))
	}
	if len(texts) == 0 {
		return nil, usageError{errors.New("give --recipient, --recipients-file or --passphrase-file")}
	}
	return backup.Recipients(texts...)
}

func passphrase(file string) (age.Recipient, age.Identity, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	return backup.Passphrase(string(b))
}

// writeNew writes the encrypted output to a new file (0600), never over an existing one: a
// backup that replaced the last good one by mistake would defeat its purpose.
func writeNew(path string, fill func(*bytes.Buffer) error) error {
	var buf bytes.Buffer
	if err := fill(&buf); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing the backup: %w", err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// runRestore: dkmctl restore NAME -i FILE (--identity F | --passphrase-file F).
func runRestore(ctx context.Context, args []string, env Env) error {
	fs, c := newCommand("restore", env)
	in := fs.String("i", "", "the backup file to read (required)")
	identity := fs.String("identity", "", "age identity file (AGE-SECRET-KEY-...)")
	passFile := fs.String("passphrase-file", "", "the backup's passphrase, in this file")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *in == "" {
		return usageError{errors.New("-i FILE is required")}
	}
	ids, err := restoreIdentities(*identity, *passFile)
	if err != nil {
		return err
	}
	src, err := os.Open(*in)
	if err != nil {
		return err
	}
	f, err := backup.Decrypt(src, ids...)
	_ = src.Close()
	if err != nil {
		return err
	}
	obj, err := c.dkmContainer(ctx, pos)
	if err != nil {
		return err
	}
	owner, err := c.owner(ctx, obj)
	if err != nil {
		return err
	}
	t, err := c.connect(ctx, obj)
	if err != nil {
		return err
	}
	defer t.close()
	res, err := backup.Restore(ctx, t.dir, f, backup.Target{Path: obj.Spec.Path, Owner: owner, Protector: t.protector})
	if res != nil && (res.ContainerCreated || res.Manager.DN != "") && err != nil {
		fmt.Fprintf(env.Stderr, "the restore stopped part way; written so far: container %s (created: %v), %s, %d key(s); "+
			"the container still carries the restore's ownership record, so the operator only reads it: run the same "+
			"restore again to finish it (what was written is checked against the backup and kept)\n", res.Container.DN, res.ContainerCreated, res.Manager.DN, len(res.Keys))
	}
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "restored %s into %s (objectGUID %s, %s), owned by %s\n", filepath.Base(*in), res.Container.DN,
		res.Container.GUID, restoredHow(res), owner.Short())
	for _, r := range res.Remapped {
		fmt.Fprintf(&b, "  DACL: %s\n", r)
	}
	fmt.Fprintf(&b, "  %s, CryptoPolicy names %s; keys %s for the new objectGUID:\n", res.Manager.DN, f.ActiveKeyID, t.protector.Mode())
	for _, k := range res.Keys {
		fmt.Fprintf(&b, "    %s %s\n", k.ID, k.Fingerprint)
	}
	fmt.Fprint(env.Stdout, b.String())
	return nil
}

// restoredHow says what the restore found at the path.
func restoredHow(res *backup.Result) string {
	switch {
	case res.Resumed:
		return "an interrupted restore finished"
	case res.ContainerCreated:
		return "created"
	}
	return "existing, empty"
}

func restoreIdentities(identityFile, passFile string) ([]age.Identity, error) {
	switch {
	case identityFile != "" && passFile != "":
		return nil, usageError{errors.New("give --identity or --passphrase-file, not both")}
	case passFile != "":
		_, id, err := passphrase(passFile)
		return []age.Identity{id}, err
	case identityFile != "":
		b, err := os.ReadFile(identityFile)
		if err != nil {
			return nil, err
		}
		return age.ParseIdentities(bytes.NewReader(b))
	}
	return nil, usageError{errors.New("give --identity or --passphrase-file")}
}
