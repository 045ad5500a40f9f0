#!/usr/bin/env python3
"""Independent implementation of docs/key-envelope.md, used to produce vectors.json.

It shares no code with the Go package: it was written from the document alone,
so the Go known-answer test checks the code against the specification, not
against itself. Requires the `cryptography` package. Run from this directory:

    python3 independent_vectors.py > vectors.json

With --fuzz-seeds DIR it also writes the seed corpus of FuzzOpenEnvelope
(valid envelopes under the active and the retired KEK of the fuzz target, and
every invalid vector) into DIR, in Go's fuzz corpus format.

The output is deterministic. Existing vectors must never change: a format
change is a new format version with new vectors.
"""
import hashlib
import json
import os
import sys
import uuid

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"DKMW"
FORMAT_V1 = 1
ALG_AES256GCM = 1


def fingerprint(kind: str, key: bytes) -> bytes:
    h = hashlib.sha256()
    h.update(b"dkm-operator fingerprint v1" + b"\x00" + kind.encode("ascii") + b"\x00" + key)
    return h.digest()[:8]


def fingerprint_text(kind: str, key: bytes) -> str:
    return "sha256:" + fingerprint(kind, key).hex()


def object_guid_bytes(text: str) -> bytes:
    # AD wire order: first three fields little-endian.
    return uuid.UUID(text).bytes_le


def key_id_bytes(text: str) -> bytes:
    # Text order.
    return uuid.UUID(text).bytes


def seal(kek: bytes, key: bytes, container: str, key_id: str, nonce: bytes):
    header = MAGIC + bytes([FORMAT_V1, ALG_AES256GCM]) + fingerprint("kek", kek)
    aad = header + object_guid_bytes(container) + key_id_bytes(key_id)
    sealed = AESGCM(kek).encrypt(nonce, key, aad)
    return header + nonce + sealed, aad


def seq(start: int, n: int = 32) -> bytes:
    return bytes((start + i) & 0xFF for i in range(n))


def wrapped_vector(name, kek, key, container, key_id, nonce):
    blob, aad = seal(kek, key, container, key_id, nonce)
    assert len(blob) == 74
    return {
        "name": name,
        "kek_hex": kek.hex(),
        "key_hex": key.hex(),
        "container_guid": container,
        "container_guid_bytes_hex": object_guid_bytes(container).hex(),
        "key_id": key_id,
        "nonce_hex": nonce.hex(),
        "aad_hex": aad.hex(),
        "blob_hex": blob.hex(),
        "key_fingerprint": fingerprint_text("key", key),
        "kek_fingerprint": fingerprint_text("kek", kek),
    }


def flip(blob: bytes, offset: int, mask: int = 0x01) -> bytes:
    b = bytearray(blob)
    b[offset] ^= mask
    return bytes(b)


def main():
    wrapped = [
        wrapped_vector(
            "counting bytes",
            kek=seq(0x00),
            key=seq(0x20),
            container="00112233-4455-6677-8899-aabbccddeeff",
            key_id="3f2504e0-4f89-41d3-9a0c-0305e82c3301",
            nonce=seq(0xA0, 12),
        ),
        wrapped_vector(
            "hashed values",
            kek=hashlib.sha256(b"dkm-operator test KEK 2").digest(),
            key=hashlib.sha256(b"dkm-operator test key 2").digest(),
            container="7c9e6679-7425-40de-944b-e07fc1f90ae7",
            key_id="9a2b1f0e-5c4d-4e8f-b3a2-6d7c8e9f0a1b",
            nonce=hashlib.sha256(b"dkm-operator test nonce 2").digest()[:12],
        ),
        wrapped_vector(
            "all-ones key, all-zero nonce",
            kek=hashlib.sha256(b"dkm-operator test KEK 3").digest(),
            key=b"\xff" * 32,
            container="ffffffff-0000-1111-2222-333333333333",
            key_id="00000000-0000-4000-8000-000000000001",
            nonce=b"\x00" * 12,
        ),
    ]

    plain = [
        {
            "name": "counting bytes",
            "key_hex": seq(0x20).hex(),
            "blob_hex": seq(0x20).hex(),
            "key_fingerprint": fingerprint_text("key", seq(0x20)),
        }
    ]

    fingerprints = [
        {"kind": "key", "key_hex": seq(0x00).hex(), "fingerprint": fingerprint_text("key", seq(0x00))},
        {"kind": "kek", "key_hex": seq(0x00).hex(), "fingerprint": fingerprint_text("kek", seq(0x00))},
        {"kind": "key", "key_hex": (b"\x00" * 32).hex(), "fingerprint": fingerprint_text("key", b"\x00" * 32)},
    ]

    v = wrapped[0]
    blob = bytes.fromhex(v["blob_hex"])
    kek = v["kek_hex"]
    other_kek = wrapped[1]["kek_hex"]

    def invalid(name, blob, error, keks=(kek,), container=v["container_guid"], key_id=v["key_id"]):
        return {
            "name": name,
            "keks_hex": list(keks),
            "container_guid": container,
            "key_id": key_id,
            "blob_hex": blob.hex(),
            "error": error,
        }

    invalid_vectors = [
        invalid("empty", b"", "truncated"),
        invalid("magic only", blob[:4], "truncated"),
        invalid("header only", blob[:14], "truncated"),
        invalid("one byte short", blob[:-1], "truncated"),
        invalid("one byte extra", blob + b"\x00", "trailing-data"),
        invalid("plain key", seq(0x20), "bad-magic"),
        invalid("lowercase magic", b"dkmw" + blob[4:], "bad-magic"),
        invalid("format version 2", flip(blob, 4, 0x03), "unknown-format-version"),
        invalid("format version 0", flip(blob, 4, 0x01), "unknown-format-version"),
        invalid("algorithm 2", flip(blob, 5, 0x03), "unknown-algorithm"),
        invalid("KEK not in Secret", blob, "unknown-kek", keks=(other_kek,)),
        invalid("KEK fingerprint altered", flip(blob, 6), "unknown-kek"),
        invalid("nonce altered", flip(blob, 14), "authentication"),
        invalid("ciphertext altered", flip(blob, 26), "authentication"),
        invalid("tag altered", flip(blob, 73, 0x80), "authentication"),
        invalid("moved to another container", blob, "authentication",
                container="00112233-4455-6677-8899-aabbccddeef0"),
        invalid("moved to another key ID", blob, "authentication",
                key_id="3f2504e0-4f89-41d3-9a0c-0305e82c3302"),
        invalid("container GUID in text order instead of wire order", blob, "authentication",
                container=str(uuid.UUID(bytes=object_guid_bytes(v["container_guid"])))),
    ]

    if len(sys.argv) == 3 and sys.argv[1] == "--fuzz-seeds":
        # The fuzz target opens with wrapped[0]'s KEK active and wrapped[1]'s
        # retired, bound to wrapped[0]'s container and key ID.
        retired, _ = seal(bytes.fromhex(wrapped[1]["kek_hex"]), seq(0x40), v["container_guid"], v["key_id"], seq(0x10, 12))
        seeds = {"valid-active-kek": blob, "valid-retired-kek": retired}
        for iv in invalid_vectors:
            seeds["invalid-" + iv["name"].replace(" ", "-").lower()] = bytes.fromhex(iv["blob_hex"])
        write_fuzz_seeds(sys.argv[2], seeds)

    out = {
        "comment": "Known-answer vectors for docs/key-envelope.md, generated by independent_vectors.py. Never edit; add.",
        "fingerprints": fingerprints,
        "wrapped": wrapped,
        "plain": plain,
        "invalid": invalid_vectors,
    }
    print(json.dumps(out, indent=2))


def write_fuzz_seeds(directory, seeds):
    os.makedirs(directory, exist_ok=True)
    written = set()
    for name, data in seeds.items():
        if data in written:  # vectors that differ only in binding or KEKs
            continue
        written.add(data)
        literal = "".join("\\x%02x" % b for b in data)
        with open(os.path.join(directory, name), "w") as f:
            f.write('go test fuzz v1\n[]byte("%s")\n' % literal)


if __name__ == "__main__":
    main()
