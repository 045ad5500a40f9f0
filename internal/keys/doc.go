// Package keys holds the key custody of dkm-operator: it generates DKM keys,
// names them, protects them for storage in Active Directory and recovers them
// again. It does no I/O: the directory package reads and writes the AD
// objects, the controllers read the Secrets, and this package turns what they
// found into keys and back.
//
// # Custody model
//
// A DKM container holds one key ring. Every key version is 256 bits from
// crypto/rand, named by a random version-4 GUID (its key ID), and stored in
// its own AD contact: attribute l holds the key ID and thumbnailPhoto holds
// the protected key (the "blob"). A CryptoPolicy contact names the active key
// ID in its displayName. Rotation adds a version and moves CryptoPolicy;
// nothing here ever deletes or regenerates a version, because data encrypted
// under an old version must stay readable.
//
// A blob is protected in one of two modes, both behind [Protector]:
//
//   - [Wrapped] (the default) seals the key in a versioned AES-256-GCM
//     envelope under a key-encryption key (KEK) held in a Kubernetes Secret.
//     The envelope is bound to the container's objectGUID and to the key ID,
//     so a blob copied onto another object or container does not open, and an
//     AD backup alone does not reveal any key. See docs/key-envelope.md for
//     the byte layout and [ParseKEKSecret] for the Secret layout.
//   - [Plain] stores the raw 32 key bytes, the layout AD FS uses; only the
//     ACEs on the container protect them.
//
// # Naming keys
//
// Key bytes never leave this package except through [Material.Reveal], which
// exists for projecting keys into replica Secrets. Everywhere else (status,
// events, logs, errors) a key or KEK is named by its [Fingerprint], a
// truncated, domain-separated SHA-256 of the key: "sha256:" followed by 16 hex
// digits. [Material] and every type that holds key bytes print as
// "[redacted]" under every fmt verb, JSON and text marshalling and slog.
//
// # Errors
//
// Every failure wraps one of the Err* sentinels, so callers can branch with
// errors.Is and set a precise condition reason. Messages name containers, key
// IDs, fingerprints and Secret data keys, never key bytes.
package keys
