"""Checkpoints and signed notes: C2SP tlog-checkpoint, signed-note and tlog-cosignature/v1.

What this module implements, and where it comes from:

* **Checkpoint body** (https://c2sp.org/tlog-checkpoint): the origin line, the tree size in
  ASCII decimal without leading zeroes, the standard base64 (RFC 4648 §4) of the RFC 6962 /
  RFC 9162 root hash, then optional non-empty extension lines; every line ends in ``\\n``.
* **Signed note** (https://c2sp.org/signed-note): the text (ending in ``\\n``), a blank line,
  then one or more lines ``"— <key name> <base64(4-byte key ID || signature)>\\n"`` (em dash
  U+2014, space). Ed25519 note signatures (type byte ``0x01``) are RFC 8032 signatures over
  the note text; the key ID is ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``. Verifier
  keys ("vkeys") are ``<name>+<8 lowercase hex digits of the key ID>+<base64(type || key)>``
  as in ``golang.org/x/mod/sumdb/note``.
* **Cosignatures** (https://c2sp.org/tlog-cosignature, Ed25519 ``cosignature/v1``,
  signature type ``0x04``), implemented exactly rather than reusing plain note signatures:
  the key ID is ``SHA-256(name || 0x0A || 0x04 || public key)[:4]``; the signed message is
  ``"cosignature/v1\\ntime <t>\\n" + checkpoint body`` (``t`` a POSIX timestamp in ASCII
  decimal); the signature bytes after the key ID are ``u64 big-endian t || Ed25519 sig``.
  Why: a witness signature in the plain note form would be indistinguishable from the log's
  own checkpoint signature by a key that happens to be reused, and carries no time. The
  ``cosignature/v1`` header gives domain separation, the timestamp says *when* the witness
  vouched for the tree, and the format interoperates with other C2SP witnesses and clients.
  :class:`CosignatureSigner` / :class:`CosignatureVerifier` are drop-in subclasses of
  :class:`NoteSigner` / :class:`NoteVerifier`, and :meth:`NoteVerifier.from_vkey` returns the
  right class from the vkey's type byte, so the log (type 0x01) and the site witnesses
  (type 0x04) are configured the same way.

Parsing is strict, on purpose: a note is evidence in a regulated audit trail, so anything the
specs do not allow (control characters, non-canonical base64, a size with a leading zero, an
empty or malformed signature line) is refused with :class:`CheckpointError` rather than
normalised. Per signed-note, the text is ignored until a trusted signature verifies
(:func:`open_checkpoint` verifies before it parses the body); signatures from unknown keys
are kept by :func:`parse_note` and ignored by verification; a signature from a *known* key
(same name and key ID) that fails to verify rejects the whole note.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

__all__ = [
    "HASH_SIZE",
    "MAX_SIGNATURES",
    "SIG_TYPE_COSIGNATURE_V1",
    "SIG_TYPE_ED25519",
    "Checkpoint",
    "CheckpointError",
    "CosignatureSigner",
    "CosignatureVerifier",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "add_signatures",
    "cosignature_message",
    "format_note",
    "key_id",
    "open_checkpoint",
    "parse_body",
    "parse_note",
]

HASH_SIZE = 32
"""Root hash length: SHA-256, as in RFC 6962 / RFC 9162."""

SIG_TYPE_ED25519 = 0x01
"""signed-note signature type byte of plain Ed25519 note signatures."""

SIG_TYPE_COSIGNATURE_V1 = 0x04
"""signed-note signature type byte of tlog-cosignature/v1 (timestamped Ed25519) cosignatures."""

MAX_SIGNATURES = 100
"""Most signature lines accepted in one note (signed-note: verifiers MUST accept at least 16)."""

MAX_TREE_SIZE = 2**63 - 1
"""Largest tree size accepted (the int64 bound of the Go reference implementation)."""

MAX_TIMESTAMP = 2**63 - 1
"""tlog-cosignature: the timestamp MUST NOT exceed 2^63 - 1."""

EM_DASH = "\u2014"
_SIG_PREFIX = EM_DASH + " "
_COSIGNATURE_HEADER = "cosignature/v1\n"
_ED25519_SIG_SIZE = 64
_KEY_SIZE = 32

_SIZE_RE = re.compile(r"0|[1-9][0-9]*", re.ASCII)
_B64_RE = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", re.ASCII)
_HEX8_RE = re.compile(r"[0-9a-f]{8}", re.ASCII)
_CONTROL_RE = re.compile(r"[\x00-\x09\x0b-\x1f]")


class CheckpointError(ValueError):
    """A checkpoint, note, signature or verifier key is malformed or does not verify."""


# --------------------------------------------------------------------------- helpers


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64: alphabet, padding and canonical trailing bits (re-encodes equal)."""
    if not _B64_RE.fullmatch(text):
        raise CheckpointError(f"{what} is not standard base64: {text[:80]!r}")
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error as exc:  # pragma: no cover - the regex already rules this out
        raise CheckpointError(f"{what} is not standard base64: {exc}") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise CheckpointError(f"{what} is not canonical base64 (non-zero padding bits)")
    return data


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _check_text(text: str, what: str) -> None:
    """signed-note: valid UTF-8, no ASCII control characters other than newline."""
    if not isinstance(text, str):
        raise CheckpointError(f"{what} must be str, not {type(text).__name__}")
    match = _CONTROL_RE.search(text)
    if match:
        raise CheckpointError(f"{what} contains the control character {match.group()!r} at offset "
                              f"{match.start()} (signed-note allows only newline)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CheckpointError(f"{what} is not valid UTF-8: {exc.reason}") from None


def _check_key_name(name: str) -> None:
    """signed-note: key names are non-empty, without Unicode spaces or '+'."""
    if not isinstance(name, str) or not name:
        raise CheckpointError("key name must be a non-empty string")
    if any(c.isspace() for c in name) or "+" in name:
        raise CheckpointError(f"key name {name!r} must not contain spaces or '+'")
    _check_text(name, "key name")


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """signed-note key ID: ``SHA-256(name || 0x0A || sig_type || public_key)[:4]``."""
    _check_key_name(name)
    if not 0 <= sig_type <= 0xFF:
        raise CheckpointError(f"signature type {sig_type} is not a byte")
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def cosignature_message(text: str, timestamp: int) -> bytes:
    """tlog-cosignature/v1 signed message: ``cosignature/v1\\ntime <t>\\n`` + checkpoint body."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise CheckpointError(f"cosignature timestamp {timestamp} is outside 0..2^63-1")
    return f"{_COSIGNATURE_HEADER}time {timestamp}\n{text}".encode()


# --------------------------------------------------------------------------- checkpoint body


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head as the body of a C2SP tlog-checkpoint.

    ``origin`` names the log (SHOULD be a schema-less URL; per the spec clients must not
    assume more than non-empty, so spaces are allowed); ``size`` is the number of leaves;
    ``root`` the 32-byte RFC 9162 root hash; ``extensions`` optional non-empty lines.
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        size_ok = isinstance(self.size, int) and not isinstance(self.size, bool)
        if not size_ok or not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"tree size must be an int in 0..2^63-1, got {self.size!r}")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise CheckpointError(f"root hash must be {HASH_SIZE} bytes")
        if not isinstance(self.extensions, tuple):
            raise CheckpointError("extensions must be a tuple of lines")
        for line in self.extensions:
            _check_line(line, "extension line")

    def body(self) -> str:
        """The exact note text: origin, size, base64 root, extension lines, each ending in ``\\n``."""
        lines = [self.origin, str(self.size), _b64encode(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines)


def _check_line(line: str, what: str) -> None:
    if not isinstance(line, str) or not line:
        raise CheckpointError(f"checkpoint {what} must be a non-empty string")
    if "\n" in line:
        raise CheckpointError(f"checkpoint {what} must not contain a newline: {line!r}")
    _check_text(line, f"checkpoint {what}")


def parse_body(text: str) -> Checkpoint:
    """Parse and strictly validate checkpoint note text (tlog-checkpoint "Note text")."""
    _check_text(text, "checkpoint text")
    if not text.endswith("\n"):
        raise CheckpointError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError(f"checkpoint text has {len(lines)} line(s); origin, size and root are required")
    for number, line in enumerate(lines, start=1):
        if not line:
            raise CheckpointError(f"checkpoint line {number} is empty (all lines must be non-empty)")
    origin, size_text, root_text, *extensions = lines
    if not _SIZE_RE.fullmatch(size_text) or len(size_text) > 19:
        raise CheckpointError(f"tree size {size_text[:40]!r} is not a decimal without leading zeroes")
    size = int(size_text)
    if size > MAX_TREE_SIZE:
        raise CheckpointError(f"tree size {size} exceeds 2^63-1")
    root = _b64decode(root_text, "root hash")
    if len(root) != HASH_SIZE:
        raise CheckpointError(f"root hash is {len(root)} bytes, expected {HASH_SIZE}")
    return Checkpoint(origin=origin, size=size, root=root, extensions=tuple(extensions))


# --------------------------------------------------------------------------- signed notes


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID, and the signature bytes after the key ID."""

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if not isinstance(self.key_id, bytes) or len(self.key_id) != 4:
            raise CheckpointError("key ID must be 4 bytes")
        if not isinstance(self.signature, bytes) or not self.signature:
            raise CheckpointError("signature must be non-empty bytes")

    def line(self) -> str:
        """The note signature line, ``"— <name> <base64(key ID || signature)>\\n"``."""
        return f"{_SIG_PREFIX}{self.name} {_b64encode(self.key_id + self.signature)}\n"


class NoteSigner:
    """An Ed25519 signed-note signer (type ``0x01``): a key name and a private key."""

    SIG_TYPE: ClassVar[int] = SIG_TYPE_ED25519

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_key_name(name)
        if not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError("private_key must be an Ed25519PrivateKey")
        self.name = name
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id(name, self.SIG_TYPE, self.public_key)

    @classmethod
    def generate(cls, name: str) -> Self:
        """A signer with a fresh random key."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Self:
        """A signer from a 32-byte RFC 8032 private key seed."""
        if not isinstance(seed, bytes) or len(seed) != _KEY_SIZE:
            raise CheckpointError(f"Ed25519 seed must be {_KEY_SIZE} bytes")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def seed(self) -> bytes:
        """The 32-byte private key seed (secret: store it like a private key)."""
        return self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def _sign_bytes(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def sign(self, text: str) -> NoteSignature:
        """Sign the note text (for a checkpoint: :meth:`Checkpoint.body`)."""
        _check_text(text, "note text")
        return NoteSignature(self.name, self.key_id, self._sign_bytes(text.encode("utf-8")))

    def verifier(self) -> NoteVerifier:
        """The matching verifier (same class family, same name and public key)."""
        return _VERIFIER_TYPES[self.SIG_TYPE](self.name, self.public_key)

    def verifier_key(self) -> str:
        """The signed-note vkey: ``<name>+<hex key ID>+<base64(type || public key)>``."""
        return self.verifier().verifier_key()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, key_id={self.key_id.hex()})"


class NoteVerifier:
    """Verifies Ed25519 signed-note signatures (type ``0x01``) of one named key."""

    SIG_TYPE: ClassVar[int] = SIG_TYPE_ED25519

    def __init__(self, name: str, public_key: bytes | Ed25519PublicKey) -> None:
        _check_key_name(name)
        if isinstance(public_key, Ed25519PublicKey):
            public_key = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        if not isinstance(public_key, bytes) or len(public_key) != _KEY_SIZE:
            raise CheckpointError(f"Ed25519 public key must be {_KEY_SIZE} bytes")
        self.name = name
        self.public_key = public_key
        self._key = Ed25519PublicKey.from_public_bytes(public_key)
        self.key_id = key_id(name, self.SIG_TYPE, public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse a signed-note verifier key; the type byte selects the verifier class.

        A type ``0x04`` vkey yields a :class:`CosignatureVerifier`. Raises CheckpointError if
        the vkey is malformed, its key ID does not match, or its type is not a ``cls``.
        """
        if not isinstance(vkey, str):
            raise CheckpointError("verifier key must be a string")
        parts = vkey.split("+", 2)  # the name has no '+'; the base64 key may
        if len(parts) != 3:
            raise CheckpointError(f"verifier key must be <name>+<hex key ID>+<base64 key>: {vkey[:80]!r}")
        name, hex_id, key_text = parts
        _check_key_name(name)
        if not _HEX8_RE.fullmatch(hex_id):
            raise CheckpointError(f"verifier key ID {hex_id!r} is not 8 lowercase hex digits")
        key = _b64decode(key_text, "verifier key")
        if len(key) < 2:
            raise CheckpointError("verifier key material is empty")
        sig_type, public_key = key[0], key[1:]
        if key_id(name, sig_type, public_key) != bytes.fromhex(hex_id):
            raise CheckpointError(f"verifier key ID {hex_id} does not match the key for {name!r}")
        verifier_cls = _VERIFIER_TYPES.get(sig_type)
        if verifier_cls is None or not issubclass(verifier_cls, cls):
            raise CheckpointError(f"unsupported signature type 0x{sig_type:02x} for {cls.__name__}")
        return verifier_cls(name, public_key)

    def verifier_key(self) -> str:
        """The signed-note vkey: ``<name>+<hex key ID>+<base64(type || public key)>``."""
        return f"{self.name}+{self.key_id.hex()}+{_b64encode(bytes([self.SIG_TYPE]) + self.public_key)}"

    def matches(self, sig: NoteSignature) -> bool:
        """Whether the signature line claims this key (same name *and* key ID)."""
        return sig.name == self.name and sig.key_id == self.key_id

    def _verify_bytes(self, text: bytes, signature: bytes) -> bool:
        if len(signature) != _ED25519_SIG_SIZE:
            return False
        try:
            self._key.verify(signature, text)
        except InvalidSignature:
            return False
        return True

    def _require_match(self, text: str, sig: NoteSignature) -> None:
        if not self.matches(sig):
            raise CheckpointError(f"signature by {sig.name!r} (key ID {sig.key_id.hex()}) is not from "
                                  f"the key {self.name!r} (key ID {self.key_id.hex()})")
        _check_text(text, "note text")

    def verify(self, text: str, sig: NoteSignature) -> None:
        """Raise CheckpointError unless ``sig`` is this key's valid signature of ``text``."""
        self._require_match(text, sig)
        if not self._verify_bytes(text.encode("utf-8"), sig.signature):
            raise CheckpointError(f"invalid signature by {self.name!r}")

    def __eq__(self, other: object) -> bool:
        return (type(other) is type(self) and isinstance(other, NoteVerifier)
                and (other.name, other.public_key) == (self.name, self.public_key))

    def __hash__(self) -> int:
        return hash((type(self), self.name, self.public_key))

    def __repr__(self) -> str:
        return f"{type(self).__name__}.from_vkey({self.verifier_key()!r})"


class CosignatureSigner(NoteSigner):
    """A C2SP tlog-cosignature/v1 (type ``0x04``, timestamped Ed25519) witness signer."""

    SIG_TYPE: ClassVar[int] = SIG_TYPE_COSIGNATURE_V1

    def sign(self, text: str, timestamp: int | None = None) -> NoteSignature:
        """Cosign checkpoint ``text`` at ``timestamp`` (POSIX seconds; default: now).

        The signature bytes are ``u64be(timestamp) || Ed25519(cosignature_message(text, t))``.
        """
        _check_text(text, "note text")
        t = int(time.time()) if timestamp is None else timestamp
        if isinstance(t, bool) or not isinstance(t, int):
            raise CheckpointError("cosignature timestamp must be an int")
        message = cosignature_message(text, t)
        return NoteSignature(self.name, self.key_id, struct.pack(">Q", t) + self._sign_bytes(message))


class CosignatureVerifier(NoteVerifier):
    """Verifies C2SP tlog-cosignature/v1 (type ``0x04``) cosignatures of one named witness."""

    SIG_TYPE: ClassVar[int] = SIG_TYPE_COSIGNATURE_V1

    @staticmethod
    def timestamp(sig: NoteSignature) -> int:
        """The cosignature's timestamp (POSIX seconds); CheckpointError if malformed."""
        if len(sig.signature) != 8 + _ED25519_SIG_SIZE:
            raise CheckpointError(f"cosignature by {sig.name!r} is {len(sig.signature)} bytes, "
                                  f"expected {8 + _ED25519_SIG_SIZE}")
        (t,) = struct.unpack(">Q", sig.signature[:8])
        if t > MAX_TIMESTAMP:
            raise CheckpointError(f"cosignature by {sig.name!r} has a timestamp above 2^63-1")
        return int(t)

    def verify(self, text: str, sig: NoteSignature) -> None:
        """Raise CheckpointError unless ``sig`` is this witness's valid cosignature of ``text``."""
        self._require_match(text, sig)
        t = self.timestamp(sig)
        if not self._verify_bytes(cosignature_message(text, t), sig.signature[8:]):
            raise CheckpointError(f"invalid cosignature by {self.name!r}")


_VERIFIER_TYPES: dict[int, type[NoteVerifier]] = {
    SIG_TYPE_ED25519: NoteVerifier,
    SIG_TYPE_COSIGNATURE_V1: CosignatureVerifier,
}


def format_note(text: str, signatures: Sequence[NoteSignature]) -> str:
    """A signed note: ``text`` (ending in ``\\n``), a blank line, one line per signature."""
    _check_text(text, "note text")
    if not text.endswith("\n"):
        raise CheckpointError("note text must end with a newline")
    if not signatures:
        raise CheckpointError("a signed note needs at least one signature")
    if len(signatures) > MAX_SIGNATURES:
        raise CheckpointError(f"a note may carry at most {MAX_SIGNATURES} signatures")
    return text + "\n" + "".join(sig.line() for sig in signatures)


def parse_note(note: str) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text and signature lines, validating the syntax strictly.

    Nothing is verified here: unknown signers are kept (verification is separate). The text
    is everything up to the last blank line, including its final newline.
    """
    _check_text(note, "note")
    if not note.endswith("\n"):
        raise CheckpointError("note must end with a newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise CheckpointError("note has no blank line between its text and its signatures")
    text, block = note[: split + 1], note[split + 2:]
    if not block:
        raise CheckpointError("note has no signature lines")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"note has {len(lines)} signatures, more than the limit of {MAX_SIGNATURES}")
    return text, [_parse_signature_line(line, number) for number, line in enumerate(lines, start=1)]


def _parse_signature_line(line: str, number: int) -> NoteSignature:
    if not line.startswith(_SIG_PREFIX):
        raise CheckpointError(f"signature line {number} does not start with an em dash (U+2014) and a "
                              f"space: {line[:40]!r}")
    name, space, encoded = line[len(_SIG_PREFIX):].partition(" ")
    if not space or not encoded:
        raise CheckpointError(f"signature line {number} must be '— <name> <base64 signature>'")
    _check_key_name(name)
    raw = _b64decode(encoded, f"signature line {number}")
    if len(raw) < 5:
        raise CheckpointError(f"signature line {number} is shorter than a key ID and a signature")
    return NoteSignature(name=name, key_id=raw[:4], signature=raw[4:])


def add_signatures(note: str, signatures: Iterable[NoteSignature]) -> str:
    """``note`` with extra signature lines appended (exact duplicates are dropped)."""
    text, existing = parse_note(note)
    merged = list(existing)
    for sig in signatures:
        if sig not in merged:
            merged.append(sig)
    return format_note(text, merged)


# --------------------------------------------------------------------------- opening checkpoints


def open_checkpoint(note: str, log_verifier: NoteVerifier,
                    witnesses: Mapping[str, NoteVerifier] | None = None, *,
                    origin: str | None = None) -> tuple[Checkpoint, set[str]]:
    """Verify a checkpoint note and return it with the names of the witnesses that cosigned it.

    The log's signature (name and key ID of ``log_verifier``) is required; if it is missing
    or any line claiming the log key fails, CheckpointError. Only then is the body parsed
    (signed-note: the text must be ignored until verified). For each ``witnesses`` entry, a
    line with that verifier's name and key ID must verify, else CheckpointError (a known
    key's bad signature rejects the note); the entry's mapping key is reported when it
    does. Lines from unknown keys are ignored. With ``origin``, the body's origin must match.
    """
    text, signatures = parse_note(note)
    log_sigs = [sig for sig in signatures if log_verifier.matches(sig)]
    if not log_sigs:
        raise CheckpointError(f"checkpoint is not signed by the log key {log_verifier.name!r} "
                              f"(key ID {log_verifier.key_id.hex()})")
    for sig in log_sigs:
        log_verifier.verify(text, sig)
    checkpoint = parse_body(text)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint origin {checkpoint.origin!r} is not the expected {origin!r}")
    cosigned: set[str] = set()
    for label, verifier in (witnesses or {}).items():
        for sig in signatures:
            if verifier.matches(sig):
                try:
                    verifier.verify(text, sig)
                except CheckpointError as exc:
                    raise CheckpointError(f"witness {label!r}: {exc}") from None
                cosigned.add(label)
    return checkpoint, cosigned
