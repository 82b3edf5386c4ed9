"""Secure aggregation of site statistics with pairwise additive masks.

What: each site encodes its float64 statistic vector as fixed-point elements of the ring
Z_{2^128} and adds, for every other participating site, a pseudo-random mask derived from an
X25519 key agreement with that site. The lower-named site of a pair adds the mask and the
other subtracts it, so every mask cancels exactly when the coordinator sums *all* sites'
masked vectors; the coordinator learns the sum and nothing about any single site's vector.

Why: this is the pairwise-masking core of Bonawitz et al. 2017, "Practical Secure Aggregation
for Privacy-Preserving Machine Learning" (ACM CCS). Keys: X25519 (RFC 7748); the shared secret
is expanded with HKDF-SHA256 (RFC 5869), bound to session, round and the (sorted) pair of site
names; the mask is the ChaCha20 keystream (RFC 8439) under that key. Integer arithmetic
mod 2^128 makes cancellation exact (no float round-off), and a sum whose masks did not cancel
decodes to an absurdly large value, which :func:`decode` rejects instead of wrapping silently.

Threat model: the coordinator relays the public keys; every key is signed by its site's
Ed25519 identity key and checked by the peers against the approved study
(:mod:`federated.disclosure.rules`), so a malicious coordinator cannot substitute one. A round
with a missing site does not decode, and the caller re-runs among the remaining sites. Bonawitz's
double masking (self masks, Shamir-shared seeds) is deliberately not used: it would decode the
survivors' sum of that round, but an exact fit must still ask the survivors again what it asked
everyone (counts, grid), so it would not remove the difference between the runs; the k-cell rule
(:mod:`federated.disclosure.cells`) bounds what that difference reveals. Masking hides
individual vectors, not the sum itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

FRACTION_BITS = 64
MAX_ABS = 2.0**52
INFO_PREFIX = b"fedprog/secagg/v1"

_U64 = np.dtype(np.uint64)
_LE_U64 = np.dtype("<u8")
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_MAX_HI = 2**52  # encodings of |x| < MAX_ABS have -2**52 <= signed hi < 2**52


class SecAggOverflow(ValueError):
    """A value outside the encodable range, or a decoded sum out of range (masks did not cancel)."""


@dataclass(frozen=True, eq=False)
class Ring:
    """Array of ring elements: value = hi * 2**64 + lo (mod 2**128); lo, hi uint64 arrays of equal shape."""

    lo: np.ndarray
    hi: np.ndarray

    def __post_init__(self) -> None:
        for name in ("lo", "hi"):
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.dtype != _U64:
                raise TypeError(f"Ring.{name} must be a uint64 numpy array, got {type(arr).__name__}")
        if self.lo.shape != self.hi.shape:
            raise ValueError(f"Ring limbs differ in shape: lo {self.lo.shape}, hi {self.hi.shape}")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the element array."""
        return tuple(self.lo.shape)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ring):
            return NotImplemented
        return bool(np.array_equal(self.lo, other.lo) and np.array_equal(self.hi, other.hi))

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside


def _ring(lo: np.ndarray, hi: np.ndarray, shape: tuple[int, ...]) -> Ring:
    return Ring(lo=lo.reshape(shape), hi=hi.reshape(shape))


def zeros(shape: int | tuple[int, ...]) -> Ring:
    """The all-zero ring array of ``shape``."""
    return Ring(lo=np.zeros(shape, dtype=_U64), hi=np.zeros(shape, dtype=_U64))


def _check_same(a: Ring, b: Ring) -> None:
    if a.shape != b.shape:
        raise ValueError(f"ring arrays differ in shape: {a.shape} vs {b.shape}")


def ring_add(a: Ring, b: Ring) -> Ring:
    """Elementwise ``a + b`` mod 2**128 (carry from ``lo`` into ``hi``)."""
    _check_same(a, b)
    a_lo, b_lo = a.lo.ravel(), b.lo.ravel()  # 1-d: array ops wrap silently, never numpy scalars
    lo = a_lo + b_lo
    carry = (lo < a_lo).astype(_U64)
    return _ring(lo, a.hi.ravel() + b.hi.ravel() + carry, a.shape)


def ring_sub(a: Ring, b: Ring) -> Ring:
    """Elementwise ``a - b`` mod 2**128 (borrow from ``hi``)."""
    _check_same(a, b)
    a_lo, b_lo = a.lo.ravel(), b.lo.ravel()
    borrow = (a_lo < b_lo).astype(_U64)
    return _ring(a_lo - b_lo, a.hi.ravel() - b.hi.ravel() - borrow, a.shape)


def ring_sum(parts: Sequence[Ring]) -> Ring:
    """Sum of one or more ring arrays of equal shape."""
    if len(parts) == 0:
        raise ValueError("ring_sum needs at least one part")
    total = parts[0]
    for part in parts[1:]:
        total = ring_add(total, part)
    return total


def encode(values: np.ndarray) -> Ring:
    """Encode floats as ``floor(x * 2**64) mod 2**128``, exactly.

    Raises
    ------
    SecAggOverflow
        If any value is NaN/inf or has ``|x| >= MAX_ABS``.
    """
    x = np.asarray(values, dtype=np.float64)
    flat = x.ravel()
    if not np.isfinite(flat).all():
        raise SecAggOverflow("cannot encode NaN or infinity for secure aggregation")
    mag = np.abs(flat)
    if (mag >= MAX_ABS).any():
        # no value in the message: it travels to the coordinator and could be one patient's
        raise SecAggOverflow(f"{int((mag >= MAX_ABS).sum())} statistics reach |x| >= 2**52, beyond the "
                             "secure-aggregation range")
    # Work on |x|: for x >= 0, x - floor(x) is exact (for x < 0 it need not be, e.g. 1 - 1e-20 == 1.0).
    ip = np.floor(mag)
    t1 = (mag - ip) * 2.0**32  # scaling by powers of two is exact
    a = np.floor(t1)
    t2 = (t1 - a) * 2.0**32
    b = np.floor(t2)
    inexact = (t2 - b > 0).astype(_U64)  # |x| * 2**64 is not an integer
    lo = (a.astype(_U64) << _SHIFT32) | b.astype(_U64)
    hi = ip.astype(_U64)
    # floor(x * 2**64) for x < 0 is -ceil(|x| * 2**64): add the remainder bit, then negate mod 2**128.
    ceil_lo = lo + inexact
    ceil_hi = hi + (ceil_lo < lo).astype(_U64)
    neg = flat < 0
    borrow = (ceil_lo != 0).astype(_U64)
    lo = np.where(neg, np.uint64(0) - ceil_lo, lo)
    hi = np.where(neg, np.uint64(0) - ceil_hi - borrow, hi)
    return _ring(lo, hi, x.shape)


def decode(ring: Ring, n_terms: int = 1) -> np.ndarray:
    """Decode a ring array that is the sum of ``n_terms`` encodings back to float64.

    Raises
    ------
    SecAggOverflow
        If an element lies outside what a sum of ``n_terms`` encodable values can be:
        a mask that did not cancel (a missing site) or an overflowing statistic.
    """
    if n_terms < 1:
        raise ValueError(f"n_terms must be >= 1, got {n_terms}")
    hi = ring.hi.ravel().view(np.int64)
    bound = n_terms * _MAX_HI  # valid: -bound <= hi < bound
    too_big = hi >= bound if bound < 2**63 else np.zeros(hi.shape, dtype=bool)
    too_small = hi < -bound if bound <= 2**63 else np.zeros(hi.shape, dtype=bool)
    if (too_big | too_small).any():
        raise SecAggOverflow("sum out of range: masks did not cancel or a statistic overflowed")
    lo = ring.lo.ravel()
    upper = (lo >> _SHIFT32).astype(np.float64) * 2.0**-32
    lower = (lo & _LOW32).astype(np.float64) * 2.0**-64
    return ((hi.astype(np.float64) + upper) + lower).reshape(ring.shape)


def to_bytes(r: Ring) -> bytes:
    """16 bytes per element in C order: little-endian ``lo`` then little-endian ``hi``."""
    out = np.empty((*r.shape, 2), dtype=_LE_U64)
    out[..., 0] = r.lo
    out[..., 1] = r.hi
    return out.tobytes()


def from_bytes(raw: bytes, shape: tuple[int, ...]) -> Ring:
    """Inverse of :func:`to_bytes`; ``ValueError`` if the length does not match ``shape``."""
    shape = tuple(int(s) for s in shape)
    want = 16 * int(np.prod(shape, dtype=np.int64))
    if len(raw) != want:
        raise ValueError(f"ring payload has {len(raw)} bytes, want {want} for shape {shape}")
    pairs = np.frombuffer(raw, dtype=_LE_U64).reshape(-1, 2)
    return _ring(pairs[:, 0].astype(_U64), pairs[:, 1].astype(_U64), shape)


@dataclass(frozen=True)
class KeyPair:
    """An ephemeral X25519 key pair for one secure-aggregation round."""

    private: X25519PrivateKey

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh random key pair."""
        return cls(private=X25519PrivateKey.generate())

    @classmethod
    def derive(cls, secret: bytes, *, session: str, round: int) -> KeyPair:
        """The key pair for ``(session, round)`` derived from a site's 32-byte ``secret``.

        HKDF-SHA256 (RFC 5869) bound to session and round, so every round still has its own
        key, while a site whose process restarts between rounds (a Flower ClientApp runs once
        per message) can re-create the key it announced. ``secret`` never leaves the site.
        """
        if len(secret) < 32:
            raise ValueError(f"the key-derivation secret must have ≥ 32 bytes, got {len(secret)}")
        raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=session.encode(),
                   info=INFO_PREFIX + f"|key|{round}".encode()).derive(secret)
        return cls(private=X25519PrivateKey.from_private_bytes(raw))

    def public_bytes(self) -> bytes:
        """The 32-byte raw public key to send to the peers."""
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def pair_mask(private: X25519PrivateKey, peer_public: bytes, *, session: str, round: int,
              me: str, peer: str, n_elements: int, context: bytes = b"") -> Ring:
    """The mask shared by sites ``me`` and ``peer``: identical on both sides of the pair.

    ``context`` binds the mask to more than the round: the study and the digest of the request
    being answered, so two different requests under one round number are never masked alike
    (a coordinator that asks twice learns nothing from the difference).

    Raises
    ------
    ValueError
        If ``peer_public`` is not a valid 32-byte X25519 public key, or ``me == peer``.
    """
    if me == peer:
        raise ValueError(f"site {me!r} cannot agree a mask with itself")
    if n_elements < 0:
        raise ValueError(f"n_elements must be >= 0, got {n_elements}")
    if not isinstance(peer_public, bytes | bytearray) or len(peer_public) != 32:
        got = f"{len(peer_public)} bytes" if isinstance(peer_public, bytes | bytearray) else type(peer_public)
        raise ValueError(f"public key of site {peer!r} must be 32 raw X25519 bytes, got {got}")
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(bytes(peer_public)))
    except ValueError as exc:
        raise ValueError(f"public key of site {peer!r} is not a usable X25519 key: {exc}") from None
    a, b = sorted((me, peer))
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=session.encode(),
               info=INFO_PREFIX + f"|{round}|{a}|{b}".encode() + (b"|" + context if context else b"")
               ).derive(shared)
    keystream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    stream = keystream.update(bytes(16 * n_elements)) + keystream.finalize()
    return from_bytes(stream, (n_elements,))


def mask(values: Ring, keys: KeyPair, peers: Mapping[str, bytes], *, me: str, session: str,
         round: int, context: bytes = b"") -> Ring:
    """Add to ``values`` the pairwise masks of site ``me`` with every other site in ``peers``.

    ``peers`` maps site name to 32-byte public key and may include ``me`` (skipped, but it
    must then be ``keys``' own public key). Returns a ring array of the shape of ``values``.
    """
    if me in peers and bytes(peers[me]) != keys.public_bytes():
        raise ValueError(f"the public key listed for site {me!r} is not this site's key")
    n = int(np.prod(values.shape, dtype=np.int64))
    total = _ring(values.lo.ravel(), values.hi.ravel(), (n,))
    for peer, public in peers.items():
        if peer == me:
            continue
        m = pair_mask(keys.private, public, session=session, round=round, me=me, peer=peer, n_elements=n,
                      context=context)
        total = ring_add(total, m) if me < peer else ring_sub(total, m)
    return _ring(total.lo, total.hi, values.shape)
