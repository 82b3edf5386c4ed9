"""Signed approvals by named people: who approved what, in which role, when (Ed25519, RFC 8032).

IEC 62304 §5.8 (release) and ISO 13485 §4.2.4–4.2.5 (control of documents and records) ask that a
document or a release be approved by an identified person. An approval here is a *statement* — a
small JSON object naming the subject (a document's id and SHA-256, a model's ref and SHA-256), the
person, the role and the time — signed with that person's private Ed25519 key over its canonical
JSON (:func:`ledger.canonical.canonical_json`).

Trust anchor: the people and their public keys are pinned outside the ledger (the ``trust.people``
block of ``workspace.json``), so an approval in the ledger vouches for nothing by itself: it counts
only when its signature verifies under the key pinned for that name and the pinned person holds the
role. Adversary: anyone who can write the ledger or a report but does not hold the person's private
key (a coordinator operator, a colleague) cannot make an approval that verifies.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from .canonical import canonical_json

Role = Literal["author", "reviewer", "approver"]
ROLES: tuple[Role, ...] = ("author", "reviewer", "approver")
_NAME = r"^[^\x00-\x1f]{2,80}$"


class SignatureError(ValueError):
    """A key file that cannot be read, a person or role that is not pinned, a bad approval (one line)."""


class Person(BaseModel):
    """A person allowed to approve: name, roles, and the public key pinned for them."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=_NAME)
    roles: tuple[Role, ...] = Field(min_length=1)
    #: raw 32-byte Ed25519 public key, base64
    public_key: str

    @property
    def key_id(self) -> str:
        return key_id(base64.b64decode(self.public_key))


class Approval(BaseModel):
    """One signed approval, as stored in the ledger: the statement and its signature."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    statement: dict[str, Any]
    key_id: str
    signature: str

    @property
    def name(self) -> str:
        return str(self.statement.get("name", ""))

    @property
    def role(self) -> str:
        return str(self.statement.get("role", ""))

    @property
    def at(self) -> str:
        return str(self.statement.get("at", ""))


def key_id(public_key: bytes) -> str:
    """The first 16 hex digits of the SHA-256 of a raw public key (to name a key, not to trust it)."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def new_key(name: str, roles: tuple[Role, ...] | list[Role]) -> tuple[bytes, Person]:
    """A fresh key pair for ``name``: (private key as unencrypted PKCS#8 PEM, the :class:`Person` to pin)."""
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    person = Person(name=name, roles=tuple(dict.fromkeys(roles)), public_key=base64.b64encode(raw).decode())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pem, person


def write_private_key(path: Path, pem: bytes) -> None:
    """Write a private key readable by its owner only (0600); refuse to overwrite an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SignatureError(f"{path} exists: a signing key is never overwritten") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PEM file; :class:`SignatureError` (one line) otherwise."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SignatureError(f"{path}: cannot read the signing key ({exc.strerror or exc})") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path}: not an Ed25519 key")
    return key


def check_signer(key: Ed25519PrivateKey, person: Person, role: str) -> None:
    """Refuse (:class:`SignatureError`) a person who does not hold ``role`` or a key not pinned for them."""
    if role not in person.roles:
        held = ", ".join(person.roles)
        raise SignatureError(f"{person.name} does not hold the role {role!r} (holds: {held})")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if base64.b64encode(raw).decode() != person.public_key:
        raise SignatureError(f"the key given is not the one pinned for {person.name} (key {key_id(raw)}, "
                             f"pinned {person.key_id})")


def sign(key: Ed25519PrivateKey, person: Person, role: str, subject: Mapping[str, Any], at: str) -> Approval:
    """``person`` approves ``subject`` in ``role`` at ``at``, signing with ``key``.

    Refused (:class:`SignatureError`) when the person does not hold the role or the key is not the
    one pinned for them — an approval that could never verify is never written."""
    check_signer(key, person, role)
    statement = {**dict(subject), "name": person.name, "role": role, "at": at}
    signature = base64.b64encode(key.sign(canonical_json(statement))).decode()
    return Approval(statement=statement, key_id=person.key_id, signature=signature)


def verify(approval: Approval | Mapping[str, Any], people: Mapping[str, Person],
           subject: Mapping[str, Any] | None = None, *, exact: bool = False) -> list[str]:
    """Problems with an approval; ``[]`` when its signature verifies under the key pinned for the
    named person, that person holds the role and (if given) the statement names ``subject`` — with
    ``exact``, the statement is the subject and nothing else (besides name, role and time), so a
    field the signer did not sign cannot ride along, and one they signed cannot be dropped."""
    try:
        found = approval if isinstance(approval, Approval) else Approval.model_validate(dict(approval))
    except ValueError as exc:
        return [f"not an approval record ({exc.__class__.__name__})"]
    person = people.get(found.name)
    if person is None:
        return [f"{found.name or 'an unnamed person'} is not a pinned approver"]
    problems = []
    if found.role not in person.roles:
        problems.append(f"{person.name} does not hold the role {found.role!r}")
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(person.public_key)).verify(
            base64.b64decode(found.signature), canonical_json(found.statement))
    except (InvalidSignature, ValueError):
        problems.append(f"the signature of {person.name}'s {found.role} approval does not verify under the "
                        f"key pinned for them ({person.key_id})")
    if subject is not None:
        signed = {k: v for k, v in found.statement.items() if k not in ("name", "role", "at")}
        keys = set(subject) | (set(signed) if exact else set())
        wrong = sorted(k for k in keys if signed.get(k) != subject.get(k))
        if wrong:
            problems.append(f"{person.name}'s approval is for another {', '.join(wrong)}")
    return problems


def people_from(block: Mapping[str, Any] | None) -> dict[str, Person]:
    """The pinned people of a ``trust.people`` block (name → fields); :class:`SignatureError` if malformed."""
    out: dict[str, Person] = {}
    for name, fields in (block or {}).items():
        try:
            out[name] = Person.model_validate({**dict(fields), "name": name})
        except (ValueError, TypeError) as exc:
            raise SignatureError(f"pinned person {name!r} is malformed ({exc.__class__.__name__})") from None
    return out
