"""C2SP tlog-checkpoint, signed-note and tlog-cosignature/v1 (ledger.checkpoint).

External anchors, so the tests do not merely check the module against itself:

* the signed-note example of ``golang.org/x/mod/sumdb/note`` (key ``PeterNeumann``): our
  signer must reproduce the Go key ID, vkey and signed note byte for byte;
* a real checkpoint of the public staging CT log ``arche2025h1.staging.ct.transparency.dev``
  cosigned by four public witnesses with Ed25519 tlog-cosignature/v1 (type 0x04): our
  verifier must accept all four cosignatures.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    CosignatureSigner,
    CosignatureVerifier,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    add_signatures,
    cosignature_message,
    format_note,
    key_id,
    open_checkpoint,
    parse_body,
    parse_note,
)

pytestmark = pytest.mark.req("SRS-LEDG-003")

ROOT = bytes(range(32))
ROOT_B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
EXAMPLE_BODY = "example.com/log\n5\n" + ROOT_B64 + "\n"
SEED = bytes(range(32))

# golang.org/x/mod/sumdb/note package documentation example.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
GO_NOTE = (GO_TEXT + "\n— PeterNeumann "
           "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")

# A real staging CT log checkpoint with its log signatures (RFC 6962 type 0x05, Ed25519 type
# 0x01) and four tlog-cosignature/v1 witness cosignatures (type 0x04).
REAL_LOG_VKEY = ("arche2025h1.staging.ct.transparency.dev+ba2f06c0+"
                 "AU0vHmlGCS/PdN8b2OaGmKprLI8HKM+dJ472xgFYh15f")
REAL_WITNESS_VKEYS = {
    "remora": "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
    "stagemole": "witness.stagemole.eu+67f7aea0+BEqSG3yu9YrmcM3BHvQYTxwFj3uSWakQepafafpUqklv",
    "little-garden": "transparency.dev/DEV:witness-little-garden+d8042a87+"
                     "BCtusOxINQNUTN5Oj8HObRkh2yHf/MwYaGX4CPdiVEPM",
    "smartit": "witness1.smartit.nu/witness1+a48c820f+BPSFWg9G6KPiO7QPryYO5Xq4oYJJ+kAvLKLSimDhoxMO",
}
REAL_NOTE = (
    "arche2025h1.staging.ct.transparency.dev\n"
    "1432088532\n"
    "U7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=\n"
    "\n"
    "— arche2025h1.staging.ct.transparency.dev zTM8sQAAAZ5W0WdjBAMARjBEAiBjW5IQf9pvsYLfQFX6hoGR"
    "EPMHbdQ3urbllzalApkptQIgIpwtEroeW2BXaHAI4kJXFbon5Ch9MNL5zRNZ55lvGt0=\n"
    "— arche2025h1.staging.ct.transparency.dev ui8GwCF1+kWqZrxGdhj4aX3gcw7XUlXQQabg/27lefwhUkzb"
    "C3NygNI75MdhL1bfTW9g8Ei59RA23oHP7Ry1k3ZFWwQ=\n"
    "— transparency.dev/DEV:witness-little-garden 2AQqhwAAAABqEiEgzgFIqqhbUoDwjMWE6UP8nd8/KYTzw"
    "Z2rhIgcqoXHAwVkjZr4AscylP3v7sEodkRAErumC2q44vdgJY096st5BQ==\n"
    "— witness1.smartit.nu/witness1 pIyCDwAAAABqEiEghIp82KWebrw7/oHQwlTAm3g2RKS4+eebl8eO0WH+/iE"
    "cxZ75W3u5hNI7TOQtmJbqmNWVuE0tgh0XwzdZsDsUAQ==\n"
    "— remora.n621.de 2net5wAAAABqEiEgPlfF3V06o0Y+fHM+J5J9s27wgxxcOVSpZ/2g/KSiXCg9DEZI+aVCIobWX"
    "9sXTynk5XeU/zZ0WBxtqB0DrAWfBw==\n"
    "— witness.stagemole.eu Z/euoAAAAABqEiEgw0i+7g2ENfDAWHmtRzCfKTHSDwYDJA2NmKeGi9Y8FtEyOUvVr+A"
    "JmIY/2TUFucgKi7lI7cUiOvKFYe/TmN9DAg==\n"
)


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.from_seed("example.com/log", SEED)


def signed_example(signer: NoteSigner, body: str = EXAMPLE_BODY) -> str:
    return format_note(body, [signer.sign(body)])


# --------------------------------------------------------------------------- body


def test_body_exact_bytes_and_round_trip() -> None:
    cp = Checkpoint(origin="example.com/log", size=5, root=ROOT)
    assert cp.body() == "example.com/log\n5\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    assert cp.body().encode("utf-8") == (b"example.com/log\x0a5\x0a" + ROOT_B64.encode() + b"\x0a")
    assert parse_body(cp.body()) == cp


def test_body_with_extensions_and_empty_tree() -> None:
    cp = Checkpoint("example.com/log", 0, hashlib.sha256(b"").digest(), ("ext one", "ext-two"))
    assert cp.body().endswith("\next one\next-two\n")
    assert parse_body(cp.body()) == cp


@pytest.mark.parametrize("text, match", [
    ("example.com/log\n05\n" + ROOT_B64 + "\n", "leading zeroes"),
    ("example.com/log\n00\n" + ROOT_B64 + "\n", "leading zeroes"),
    ("example.com/log\n+5\n" + ROOT_B64 + "\n", "leading zeroes"),
    ("example.com/log\n-1\n" + ROOT_B64 + "\n", "leading zeroes"),
    ("example.com/log\n 5\n" + ROOT_B64 + "\n", "leading zeroes"),
    ("example.com/log\n1_0\n" + ROOT_B64 + "\n", "leading zeroes"),
    ("example.com/log\n\u0665\n" + ROOT_B64 + "\n", "leading zeroes"),  # Arabic-Indic five
    ("example.com/log\n9223372036854775808\n" + ROOT_B64 + "\n", "exceeds"),
    ("example.com/log\n5\n" + ROOT_B64, "end with a newline"),
    ("example.com/log\n5\n", "origin, size and root"),
    ("\n5\n" + ROOT_B64 + "\n", "line 1 is empty"),
    ("example.com/log\n5\n" + ROOT_B64 + "\n\n", "line 4 is empty"),
    ("example.com/log\n5\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\n", "31 bytes"),
    ("example.com/log\n5\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=\n", "canonical"),
    ("example.com/log\n5\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n", "base64"),
    ("example.com/log\n5\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd-h8=\n", "base64"),
    ("example.com/log\r\n5\n" + ROOT_B64 + "\n", "control character"),
])
def test_parse_body_rejects(text: str, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        parse_body(text)


@pytest.mark.parametrize("kwargs", [
    {"origin": "", "size": 1, "root": ROOT},
    {"origin": "a\nb", "size": 1, "root": ROOT},
    {"origin": "o", "size": -1, "root": ROOT},
    {"origin": "o", "size": True, "root": ROOT},
    {"origin": "o", "size": 2**63, "root": ROOT},
    {"origin": "o", "size": 1, "root": ROOT[:31]},
    {"origin": "o", "size": 1, "root": ROOT, "extensions": ("",)},
    {"origin": "o", "size": 1, "root": ROOT, "extensions": ("a\nb",)},
])
def test_checkpoint_constructor_validates(kwargs: dict[str, object]) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint(**kwargs)  # type: ignore[arg-type]


def test_origin_may_contain_spaces_as_the_spec_requires_clients_to_accept() -> None:
    text = "my log\n1\n" + ROOT_B64 + "\n"
    assert parse_body(text).origin == "my log"


# --------------------------------------------------------------------------- keys


def test_key_id_per_signed_note_formula(signer: NoteSigner) -> None:
    # By hand: SHA-256("example.com/log" || 0x0A || 0x01 || 32-byte public key)[:4], where the
    # public key is the RFC 8032 key of the seed 00 01 .. 1f (03a107bf...31b8).
    public = Ed25519PublicKey.from_public_bytes(signer.public_key)
    assert signer.public_key.hex() == "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    by_hand = hashlib.sha256(b"example.com/log" + b"\x0a" + b"\x01" + signer.public_key).digest()[:4]
    assert signer.key_id == by_hand == bytes.fromhex("d455c521")
    assert key_id("example.com/log", 0x01, signer.public_key) == by_hand
    assert NoteVerifier("example.com/log", public).key_id == by_hand
    assert signer.verifier_key() == "example.com/log+d455c521+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
    # The same key as a tlog-cosignature/v1 cosigner has type byte 0x04, hence another key ID.
    cosigner = CosignatureSigner.from_seed("example.com/log", SEED)
    assert cosigner.key_id == hashlib.sha256(b"example.com/log\n\x04" + signer.public_key).digest()[:4]
    assert cosigner.key_id.hex() == "07bdbe2a"


def test_go_sumdb_note_reference_vector() -> None:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert seed[0] == 0x01
    go = NoteSigner.from_seed("PeterNeumann", seed[1:])
    assert go.key_id.hex() == "c74f20a3"
    assert go.verifier_key() == GO_VKEY
    assert format_note(GO_TEXT, [go.sign(GO_TEXT)]) == GO_NOTE  # Ed25519 is deterministic
    text, sigs = parse_note(GO_NOTE)
    assert text == GO_TEXT
    NoteVerifier.from_vkey(GO_VKEY).verify(text, sigs[0])
    with pytest.raises(CheckpointError, match="invalid signature"):
        NoteVerifier.from_vkey(GO_VKEY).verify(GO_TEXT.replace("cryptography", "cryptographY"), sigs[0])


def test_seed_round_trip_and_generate() -> None:
    a = NoteSigner.generate("site-a.example/log")
    b = NoteSigner.from_seed(a.name, a.seed)
    assert len(a.seed) == 32 and b.public_key == a.public_key and b.key_id == a.key_id
    assert NoteSigner.generate("site-a.example/log").public_key != a.public_key
    assert isinstance(CosignatureSigner.generate("w"), CosignatureSigner)
    with pytest.raises(CheckpointError, match="32 bytes"):
        NoteSigner.from_seed("x", b"\x00" * 31)


@pytest.mark.parametrize("name", ["", "has space", "has+plus", "tab\there", "nbsp\u00a0name"])
def test_key_names_are_validated(name: str) -> None:
    with pytest.raises(CheckpointError):
        NoteSigner.from_seed(name, SEED)


def test_vkey_round_trip(signer: NoteSigner) -> None:
    vkey = signer.verifier_key()
    verifier = NoteVerifier.from_vkey(vkey)
    assert type(verifier) is NoteVerifier
    assert verifier == signer.verifier() and verifier.verifier_key() == vkey
    assert (verifier.name, verifier.public_key) == (signer.name, signer.public_key)
    assert verifier.key_id == signer.key_id
    cosigner = CosignatureSigner.from_seed("w.example/1", SEED)
    cv = NoteVerifier.from_vkey(cosigner.verifier_key())
    assert type(cv) is CosignatureVerifier and cv.verifier_key() == cosigner.verifier_key()
    assert CosignatureVerifier.from_vkey(cosigner.verifier_key()) == cv
    # A base64 key that contains '+' parses (the name cannot contain one).
    assert "+" in REAL_LOG_VKEY.split("+", 2)[2]
    assert NoteVerifier.from_vkey(REAL_LOG_VKEY).verifier_key() == REAL_LOG_VKEY


@pytest.mark.parametrize("mangle", [
    lambda v: v.replace("+d455c521+", "+d455c522+"),  # wrong key ID
    lambda v: v.replace("+d455c521+", "+D455C521+"),  # key ID hex must be lowercase
    lambda v: v.replace("+d455c521+", "+d455c52+"),  # 7 hex digits
    lambda v: v.split("+", 1)[0],  # no key parts
    lambda v: v[:-4],  # truncated key
    lambda v: "other.name" + v[len("example.com/log"):],  # name does not match the key ID
    lambda v: v.replace("example.com/log", "example.com log"),
])
def test_from_vkey_rejects(signer: NoteSigner, mangle: object) -> None:
    with pytest.raises(CheckpointError):
        NoteVerifier.from_vkey(mangle(signer.verifier_key()))  # type: ignore[operator]


def test_from_vkey_rejects_unsupported_type(signer: NoteSigner) -> None:
    key = bytes([0x02]) + signer.public_key
    vkey = f"n+{key_id('n', 0x02, signer.public_key).hex()}+{base64.b64encode(key).decode()}"
    with pytest.raises(CheckpointError, match="unsupported signature type 0x02"):
        NoteVerifier.from_vkey(vkey)
    with pytest.raises(CheckpointError, match="unsupported signature type 0x01"):
        CosignatureVerifier.from_vkey(signer.verifier_key())


# --------------------------------------------------------------------------- signatures


def test_signature_verifies_and_tampering_fails(signer: NoteSigner) -> None:
    verifier = signer.verifier()
    sig = signer.sign(EXAMPLE_BODY)
    assert sig.name == "example.com/log" and sig.key_id == signer.key_id and len(sig.signature) == 64
    verifier.verify(EXAMPLE_BODY, sig)
    tampered_size = EXAMPLE_BODY.replace("\n5\n", "\n6\n")
    other_root = Checkpoint("example.com/log", 5, bytes(32)).body()
    for text in (tampered_size, other_root, EXAMPLE_BODY + "extension\n"):
        with pytest.raises(CheckpointError, match="invalid signature"):
            verifier.verify(text, sig)
    flipped = NoteSignature(sig.name, sig.key_id, bytes([sig.signature[0] ^ 1]) + sig.signature[1:])
    with pytest.raises(CheckpointError, match="invalid signature"):
        verifier.verify(EXAMPLE_BODY, flipped)
    with pytest.raises(CheckpointError, match="invalid signature"):
        verifier.verify(EXAMPLE_BODY, NoteSignature(sig.name, sig.key_id, sig.signature[:-1]))
    other = NoteSigner.generate("example.com/log")
    with pytest.raises(CheckpointError, match="is not from the key"):
        verifier.verify(EXAMPLE_BODY, other.sign(EXAMPLE_BODY))


def test_open_checkpoint_requires_a_valid_log_signature(signer: NoteSigner) -> None:
    note = signed_example(signer)
    cp, cosigned = open_checkpoint(note, signer.verifier())
    assert cp == Checkpoint("example.com/log", 5, ROOT) and cosigned == set()
    assert open_checkpoint(note, signer.verifier(), origin="example.com/log")[0] == cp
    with pytest.raises(CheckpointError, match="not the expected"):
        open_checkpoint(note, signer.verifier(), origin="example.com/other")
    stranger = NoteSigner.generate("example.com/stranger")
    with pytest.raises(CheckpointError, match="not signed by the log key"):
        open_checkpoint(format_note(EXAMPLE_BODY, [stranger.sign(EXAMPLE_BODY)]), signer.verifier())
    with pytest.raises(CheckpointError, match="invalid signature"):
        open_checkpoint(note.replace("\n5\n", "\n6\n", 1), signer.verifier())
    root_tampered = note.replace(ROOT_B64, base64.b64encode(bytes(32)).decode())
    with pytest.raises(CheckpointError, match="invalid signature"):
        open_checkpoint(root_tampered, signer.verifier())


def test_unknown_signers_are_kept_and_ignored(signer: NoteSigner) -> None:
    stranger = NoteSigner.generate("example.com/stranger")
    note = format_note(EXAMPLE_BODY, [stranger.sign(EXAMPLE_BODY), signer.sign(EXAMPLE_BODY)])
    text, sigs = parse_note(note)
    assert text == EXAMPLE_BODY and [s.name for s in sigs] == ["example.com/stranger", "example.com/log"]
    assert open_checkpoint(note, signer.verifier())[0].size == 5
    # Same name as the log but another key ID: unknown, ignored (signed-note).
    impostor = NoteSignature("example.com/log", b"\x00\x00\x00\x00", bytes(64))
    assert open_checkpoint(add_signatures(note, [impostor]), signer.verifier())[0].size == 5


def test_format_parse_round_trip(signer: NoteSigner) -> None:
    sigs = [signer.sign(EXAMPLE_BODY), CosignatureSigner.from_seed("w.example/1", SEED).sign(EXAMPLE_BODY, 7)]
    note = format_note(EXAMPLE_BODY, sigs)
    assert note == EXAMPLE_BODY + "\n" + "".join(s.line() for s in sigs)
    assert note.split("\n")[4].startswith("\u2014 example.com/log ")
    assert parse_note(note) == (EXAMPLE_BODY, sigs)
    assert add_signatures(note, sigs[:1]) == note  # duplicates are dropped


@pytest.mark.parametrize("note, match", [
    (EXAMPLE_BODY + "— example.com/log AAAAAAAA\n", "no blank line"),
    (EXAMPLE_BODY + "\n", "no signature lines"),
    (EXAMPLE_BODY + "\n— example.com/log AAAAAAAA", "must end with a newline"),
    (EXAMPLE_BODY + "\n- example.com/log AAAAAAAA\n", "em dash"),  # hyphen-minus
    (EXAMPLE_BODY + "\n\u2013 example.com/log AAAAAAAA\n", "em dash"),  # en dash
    (EXAMPLE_BODY + "\n\u2014example.com/log AAAAAAAA\n", "em dash"),  # no space after the dash
    (EXAMPLE_BODY + "\n— example.com/log\n", "<name> <base64 signature>"),
    (EXAMPLE_BODY + "\n— example.com/log AAAA AAAA\n", "base64"),
    (EXAMPLE_BODY + "\n— example.com/log AAAAAAA!\n", "base64"),
    (EXAMPLE_BODY + "\n— example.com/log AAAAAAA\n", "base64"),  # missing padding
    (EXAMPLE_BODY + "\n— example.com/log AAAAAB==\n", "canonical"),  # non-zero padding bits
    (EXAMPLE_BODY + "\n— example.com/log AAAAAA==\n", "shorter than a key ID"),
    (EXAMPLE_BODY + "\n—  AAAAAAAA\n", "non-empty"),
    (EXAMPLE_BODY + "\n— a+b AAAAAAAA\n", "spaces or"),
    (EXAMPLE_BODY + "\n— example.com/log AAAAAAAA\n\n", "no signature lines"),
    (EXAMPLE_BODY + "\n— example.com/log AAAAAAAA\r\n", "control character"),
    (EXAMPLE_BODY.replace("\n5\n", "\n5\t\n") + "\n— example.com/log AAAAAAAA\n", "control character"),
    ("example.com/log\n5\n" + ROOT_B64 + "\n— example.com/log AAAAAAAA\n", "no blank line"),
    (EXAMPLE_BODY + "\n" + "— example.com/log AAAAAAAA\n" * 101, "more than the limit"),
])
def test_parse_note_rejects_malformed(note: str, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        parse_note(note)


def test_format_note_rejects_text_without_final_newline(signer: NoteSigner) -> None:
    sig = signer.sign(EXAMPLE_BODY)
    with pytest.raises(CheckpointError, match="end with a newline"):
        format_note(EXAMPLE_BODY[:-1], [sig])
    with pytest.raises(CheckpointError, match="at least one signature"):
        format_note(EXAMPLE_BODY, [])


# --------------------------------------------------------------------------- cosignatures


def test_real_world_cosignatures_verify() -> None:
    log = NoteVerifier.from_vkey(REAL_LOG_VKEY)
    witnesses = {label: NoteVerifier.from_vkey(v) for label, v in REAL_WITNESS_VKEYS.items()}
    assert all(type(w) is CosignatureVerifier for w in witnesses.values())
    cp, cosigned = open_checkpoint(REAL_NOTE, log, witnesses)
    assert (cp.origin, cp.size) == ("arche2025h1.staging.ct.transparency.dev", 1432088532)
    assert cosigned == set(REAL_WITNESS_VKEYS)
    remora = next(s for s in parse_note(REAL_NOTE)[1] if s.name == "remora.n621.de")
    assert CosignatureVerifier.timestamp(remora) == 1779573024
    forged = REAL_NOTE.replace("\n1432088532\n", "\n1432088533\n")
    with pytest.raises(CheckpointError):
        open_checkpoint(forged, log, witnesses)


def test_cosignature_v1_exact_message_and_layout() -> None:
    cosigner = CosignatureSigner.from_seed("witness.example/a", SEED)
    sig = cosigner.sign(EXAMPLE_BODY, timestamp=1_700_000_000)
    assert sig.key_id == hashlib.sha256(b"witness.example/a\n\x04" + cosigner.public_key).digest()[:4]
    assert len(sig.signature) == 72 and sig.signature[:8] == struct.pack(">Q", 1_700_000_000)
    message = b"cosignature/v1\ntime 1700000000\n" + EXAMPLE_BODY.encode()
    assert cosignature_message(EXAMPLE_BODY, 1_700_000_000) == message
    Ed25519PublicKey.from_public_bytes(cosigner.public_key).verify(sig.signature[8:], message)  # independent
    verifier = cosigner.verifier()
    assert isinstance(verifier, CosignatureVerifier)
    verifier.verify(EXAMPLE_BODY, sig)
    assert CosignatureVerifier.timestamp(sig) == 1_700_000_000
    moved = NoteSignature(sig.name, sig.key_id, struct.pack(">Q", 1_700_000_001) + sig.signature[8:])
    with pytest.raises(CheckpointError, match="invalid cosignature"):
        verifier.verify(EXAMPLE_BODY, moved)
    with pytest.raises(CheckpointError, match="invalid cosignature"):
        verifier.verify(EXAMPLE_BODY.replace("\n5\n", "\n6\n"), sig)
    with pytest.raises(CheckpointError, match="expected 72"):
        verifier.verify(EXAMPLE_BODY, NoteSignature(sig.name, sig.key_id, sig.signature[8:]))
    too_late = NoteSignature(sig.name, sig.key_id, struct.pack(">Q", 2**63) + sig.signature[8:])
    with pytest.raises(CheckpointError, match="2\\^63-1"):
        verifier.verify(EXAMPLE_BODY, too_late)


def test_cosignature_and_note_signature_are_not_interchangeable() -> None:
    plain = NoteSigner.from_seed("witness.example/a", SEED)
    cosigner = CosignatureSigner.from_seed("witness.example/a", SEED)
    assert plain.key_id != cosigner.key_id
    with pytest.raises(CheckpointError, match="is not from the key"):
        cosigner.verifier().verify(EXAMPLE_BODY, plain.sign(EXAMPLE_BODY))
    with pytest.raises(CheckpointError, match="is not from the key"):
        plain.verifier().verify(EXAMPLE_BODY, cosigner.sign(EXAMPLE_BODY))


def test_open_checkpoint_reports_witnesses(signer: NoteSigner) -> None:
    a = CosignatureSigner.from_seed("w.example/a", b"a" * 32)
    b = CosignatureSigner.from_seed("w.example/b", b"b" * 32)
    note = format_note(EXAMPLE_BODY, [signer.sign(EXAMPLE_BODY), a.sign(EXAMPLE_BODY, 1)])
    witnesses = {"a": a.verifier(), "b": b.verifier()}
    assert open_checkpoint(note, signer.verifier(), witnesses)[1] == {"a"}
    other_body = EXAMPLE_BODY.replace("\n5\n", "\n6\n")
    bad = add_signatures(note, [b.sign(other_body, 1)])  # b's cosignature is for another checkpoint
    with pytest.raises(CheckpointError, match="witness 'b'"):
        open_checkpoint(bad, signer.verifier(), witnesses)
    assert open_checkpoint(bad, signer.verifier(), {"a": a.verifier()})[1] == {"a"}  # b unknown: ignored
