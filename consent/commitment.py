"""Per-event consent commitments: hiding, binding, unlinkable; openings an auditor checks.

Adversary: **a reader of the ledger**. Every hospital witnesses the shared ledger, so it is
treated as public. Such a reader must learn neither who a consent entry is about nor which
entries are about the same patient (issue 15). The site itself is trusted: it holds the
identities and every salt.

Scheme. Consent event *e* of patient *p*, anchored by site *s* for study *t*, is published as
::

    c_e = HMAC-SHA256(key = r_e, msg = enc(TAG, s, t, p))

where ``r_e`` is a fresh 32-byte salt from the OS CSPRNG (:func:`secrets.token_bytes`), used once,
``enc`` is an injective encoding (each field UTF-8, prefixed with its 4-byte big-endian length),
and ``TAG`` separates this use of HMAC from any other. HMAC is RFC 2104 (Krawczyk, Bellare, Canetti
1997), SHA-256 is FIPS 180-4. ``(r_e, p)`` is the *opening* of ``c_e``: a commitment scheme in the
sense of Brassard, Chaum, Crépeau (1988) and Halevi, Micali, "Practical and provably-secure
commitment schemes from collision-free hashing" (CRYPTO 1996).

* Hiding: with the salt unknown, HMAC under a uniformly random key is a pseudorandom function
  (Bellare, "New proofs for NMAC and HMAC", CRYPTO 2006). So ``c_e`` is indistinguishable from
  random bytes and says nothing about *p*, even for a guessable patient id.
* Binding: opening ``c_e`` to another (salt, site, study, patient) needs a SHA-256 collision.
  Salts are exactly 32 bytes, because HMAC pads shorter keys with zeros, so ``k`` and ``k‖00``
  would give the same MAC.
* Unlinkable: two events never share a salt. Their commitments are independent random-looking
  values. No other patient-specific value (earlier entry, version number) is published.
* Erasure: deleting the salts (crypto-shredding, GDPR Art. 17) leaves commitments nobody can open.
  The ledger and its proofs do not change.

The site shows an auditor that entries belong to one patient by handing over
:class:`Opening` s. The auditor runs :func:`verify_linkage` on the ledger entries. It needs no
site secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: domain-separation tag: these MACs are consent-event commitments, version 2 (per event)
TAG = "fedprog/consent-event-commitment/v2"
SALT_BYTES = 32
#: ledger entry kinds whose bodies carry a consent commitment
KINDS = frozenset({"consent", "revocation"})


def new_salt() -> bytes:
    """A fresh 32-byte salt from the OS CSPRNG (one per consent event, never reused)."""
    return secrets.token_bytes(SALT_BYTES)


def _enc(*fields: str) -> bytes:
    """Injective encoding: each field as 4-byte big-endian length ‖ UTF-8 bytes."""
    out = bytearray()
    for f in fields:
        data = f.encode("utf-8")
        out += len(data).to_bytes(4, "big") + data
    return bytes(out)


def commit(salt: bytes, site: str, study: str, patient: str) -> str:
    """``HMAC-SHA256(salt, enc(TAG, site, study, patient))`` as hex (RFC 2104)."""
    if len(salt) != SALT_BYTES:
        raise ValueError(f"a commitment salt is exactly {SALT_BYTES} bytes")
    return hmac.new(salt, _enc(TAG, site, study, patient), hashlib.sha256).hexdigest()


class Opening(BaseModel):
    """Opening of one ledger entry's commitment: its index and the event's salt (hex)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ledger_index: int = Field(ge=0)
    salt: str = Field(pattern=r"^[0-9a-f]{64}$")

    @property
    def salt_bytes(self) -> bytes:
        return bytes.fromhex(self.salt)


def opens(body: Mapping[str, Any], patient: str, salt: bytes) -> bool:
    """True iff the body's commitment opens, with ``salt``, to ``patient`` at the body's site and study."""
    site, study, c = body.get("site"), body.get("study"), body.get("commitment")
    if not (isinstance(site, str) and isinstance(study, str) and isinstance(c, str)) \
            or len(salt) != SALT_BYTES:
        return False
    return hmac.compare_digest(commit(salt, site, study, patient), c)


def verify_linkage(entries: Iterable[tuple[int, str, Mapping[str, Any]]], patient: str,
                   openings: Sequence[Opening]) -> bool:
    """The auditor's check, on ``(index, kind, body)`` ledger entries (e.g. ``Ledger.entries()``).

    True iff ``openings`` is non-empty, names distinct entries, each a consent or revocation
    entry, and each entry's commitment opens to ``patient``. This proves the named entries are
    hers. It cannot prove that no other entry is hers: a site can always withhold an opening.
    """
    if not openings or len({o.ledger_index for o in openings}) != len(openings):
        return False
    by_index = {int(i): (k, b) for i, k, b in entries}
    for o in openings:
        kind, body = by_index.get(o.ledger_index, (None, {}))
        if kind not in KINDS or not opens(body, patient, o.salt_bytes):
            return False
    return True
