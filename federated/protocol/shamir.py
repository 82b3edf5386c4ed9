"""Shamir secret sharing and double masking: the dropout-recovery blocks of secure aggregation.

What: t-of-n Shamir sharing of 32-byte secrets over GF(p), p = 2**521 - 1 (Shamir 1979, "How to
share a secret", CACM 22(11)); self masks expanded from a 32-byte seed; and the double masking
of Bonawitz et al. 2017, "Practical Secure Aggregation for Privacy-Preserving Machine Learning"
(ACM CCS), §4: site u sends ``y_u = x_u + PRG(b_u) + sum_v ±PRG(s_uv)``. Each site secret-shares
its self-mask seed ``b_u`` and its X25519 private key among all sites; when site v drops after
the masks were agreed, t survivors' shares of v's key let the coordinator recompute v's
dangling pairwise masks, and shares of the survivors' seeds remove their self masks.

Why the self mask: without it, a site that is merely slow (declared dropped, its key rebuilt)
would have its vector exposed by its pairwise masks once its message arrives. Bonawitz's rule
(§4) is that an honest holder reveals, for any one site, either its seed share (the site
survived) or its key share (it dropped), never both; enforcing that belongs to the caller.

Everything here is pure (no I/O); randomness comes from the ``rng`` the caller passes. Ring
arithmetic, the encodings and the pairwise masks are those of :mod:`federated.protocol.secagg`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from federated.protocol.secagg import INFO_PREFIX, Ring, from_bytes, ring_add, ring_sub

PRIME = 2**521 - 1  # Mersenne prime > 2**256: every 32-byte secret is a field element
SECRET_BYTES = 32
MAX_HOLDERS = 65535
X_BYTES = 2
Y_BYTES = 66  # ceil(521 / 8)
SHARE_BYTES = X_BYTES + Y_BYTES
SEED_BYTES = 32
_MAX_DRAWS = 64  # a candidate is rejected with probability 2**-521: 64 rejections = broken rng


@dataclass(frozen=True)
class Share:
    """One point ``(x, y)`` of a sharing polynomial: ``1 <= x <= 65535``, ``0 <= y < PRIME``.

    ``y`` is secret, so it is left out of ``repr`` (and hence out of logs).
    """

    x: int
    y: int = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("x", "y"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"Share.{name} must be an int, got {type(value).__name__}")
        if not 1 <= self.x <= MAX_HOLDERS:
            raise ValueError(f"share x must be in 1..{MAX_HOLDERS}, got {self.x}")
        if not 0 <= self.y < PRIME:
            raise ValueError("share y must be in 0..2**521 - 2 (a field element)")

    def to_bytes(self) -> bytes:
        """68 bytes: big-endian ``x`` (2 bytes) then big-endian ``y`` (66 bytes)."""
        return self.x.to_bytes(X_BYTES, "big") + self.y.to_bytes(Y_BYTES, "big")

    @classmethod
    def from_bytes(cls, raw: bytes | bytearray) -> Share:
        """Inverse of :meth:`to_bytes`; ``ValueError`` on a wrong length, ``x = 0`` or ``y >= PRIME``."""
        raw = _check_bytes(raw, SHARE_BYTES, "an encoded share")
        return cls(x=int.from_bytes(raw[:X_BYTES], "big"), y=int.from_bytes(raw[X_BYTES:], "big"))


def x_coordinates(holders: Sequence[str]) -> dict[str, int]:
    """Each holder's x-coordinate: ``1..n`` in the sorted order of the (unique) holder names.

    Deterministic, so every party can tell whose share has which x without being told.
    """
    names = list(holders)
    if len(names) == 0:
        raise ValueError("at least one share holder is needed")
    if len(names) > MAX_HOLDERS:
        raise ValueError(f"at most {MAX_HOLDERS} share holders, got {len(names)}")
    if not all(isinstance(name, str) for name in names):
        raise TypeError("share holder names must be str")
    repeated = sorted(name for name, k in Counter(names).items() if k > 1)
    if repeated:
        raise ValueError(f"share holders must be unique, repeated: {repeated}")
    return {name: i for i, name in enumerate(sorted(names), start=1)}


def _check_bytes(value: object, length: int, what: str) -> bytes:
    """``value`` as bytes; ``ValueError`` quoting got/want unless it is ``length`` bytes."""
    if not isinstance(value, bytes | bytearray) or len(value) != length:
        got = f"{len(value)} bytes" if isinstance(value, bytes | bytearray) else type(value).__name__
        raise ValueError(f"{what} must be exactly {length} bytes, got {got}")
    return bytes(value)


def _check_threshold(threshold: int) -> None:
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
        raise ValueError(f"threshold must be an int >= 1, got {threshold!r}")


def _field_element(rng: Callable[[int], bytes]) -> int:
    """Uniform on ``[0, PRIME)`` by rejection sampling (exact, no bias): 66 random bytes,
    top 7 bits cleared, giving ``[0, 2**521)``; the one value ``>= PRIME`` is drawn again."""
    for _ in range(_MAX_DRAWS):
        raw = _check_bytes(rng(Y_BYTES), Y_BYTES, "the rng's output")
        candidate = int.from_bytes(raw, "big") & ((1 << 521) - 1)
        if candidate < PRIME:
            return candidate
    raise ValueError(f"rng returned {_MAX_DRAWS} out-of-range draws in a row: it is not random")


def split(secret: bytes, *, threshold: int, holders: Sequence[str],
          rng: Callable[[int], bytes] = os.urandom) -> dict[str, Share]:
    """Share a 32-byte ``secret`` so that any ``threshold`` of the ``holders`` can rebuild it.

    The secret (big-endian integer) is the constant term of a polynomial of degree
    ``threshold - 1`` with the other coefficients uniform in GF(PRIME); holder h receives the
    point at ``x_coordinates(holders)[h]``. Fewer than ``threshold`` shares reveal nothing.
    """
    value = int.from_bytes(_check_bytes(secret, SECRET_BYTES, "the secret"), "big")
    xs = x_coordinates(holders)
    _check_threshold(threshold)
    if threshold > len(xs):
        raise ValueError(f"threshold {threshold} exceeds the number of holders {len(xs)}")
    coeffs = [value] + [_field_element(rng) for _ in range(threshold - 1)]

    def poly(x: int) -> int:
        acc = 0
        for c in reversed(coeffs):  # Horner
            acc = (acc * x + c) % PRIME
        return acc

    return {name: Share(x=x, y=poly(x)) for name, x in xs.items()}


def _interpolate(points: Sequence[Share], at: int) -> int:
    """The value at ``at`` of the polynomial of degree < len(points) through ``points`` (Lagrange)."""
    total = 0
    for i, pi in enumerate(points):
        num, den = 1, 1
        for j, pj in enumerate(points):
            if i != j:
                num = num * (at - pj.x) % PRIME
                den = den * (pi.x - pj.x) % PRIME
        total = (total + pi.y * num * pow(den, -1, PRIME)) % PRIME
    return total


def combine(shares: Sequence[Share], *, threshold: int) -> bytes:
    """Rebuild the 32-byte secret from at least ``threshold`` shares (Lagrange interpolation at 0).

    The first ``threshold`` shares determine the polynomial; every further share must lie on it.

    Raises
    ------
    ValueError
        Fewer than ``threshold`` shares, a repeated x, an extra share off the polynomial, or a
        result ``>= 2**256`` (shares inconsistent, tampered, or not of a 32-byte secret).
    """
    _check_threshold(threshold)
    pts = list(shares)
    for s in pts:
        if not isinstance(s, Share):
            raise TypeError(f"combine takes Share objects, got {type(s).__name__}")
    if len(pts) < threshold:
        raise ValueError(f"got {len(pts)} shares, need at least threshold {threshold}")
    repeated = sorted(x for x, k in Counter(s.x for s in pts).items() if k > 1)
    if repeated:
        raise ValueError(f"shares repeat an x-coordinate: {repeated}")
    base = pts[:threshold]
    for extra in pts[threshold:]:
        if _interpolate(base, extra.x) != extra.y:
            raise ValueError(f"share x={extra.x} is inconsistent with the first {threshold} shares")
    value = _interpolate(base, 0)
    if value >= 1 << (8 * SECRET_BYTES):
        raise ValueError("the shares do not interpolate to a 32-byte secret (inconsistent or tampered)")
    return value.to_bytes(SECRET_BYTES, "big")


def self_mask(seed: bytes, *, n_elements: int, context: bytes) -> Ring:
    """The self mask PRG(b_u): ``n_elements`` ring elements from a 32-byte ``seed``.

    HKDF-SHA256 (no salt, info ``b"fedprog/secagg/v1|self|" + context``) gives a ChaCha20 key;
    its keystream (zero nonce: the key is single-use) is read by :func:`secagg.from_bytes`.
    ``context`` should bind session and round (the same for all sites of a round); a seed must
    be fresh every round. The info cannot collide with :func:`secagg.pair_mask`'s
    (``|<round>|...``, an integer where this has ``self``).
    """
    seed = _check_bytes(seed, SEED_BYTES, "the self-mask seed")
    if not isinstance(context, bytes):
        raise TypeError(f"context must be bytes, got {type(context).__name__}")
    if n_elements < 0:
        raise ValueError(f"n_elements must be >= 0, got {n_elements}")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=INFO_PREFIX + b"|self|" + context).derive(seed)
    keystream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    return from_bytes(keystream.update(bytes(16 * n_elements)) + keystream.finalize(), (n_elements,))


def adds_pair_mask(me: str, peer: str) -> bool:
    """Whether site ``me`` adds (True) or subtracts (False) its mask with ``peer``: the lower name
    adds, as in :func:`secagg.mask`."""
    if me == peer:
        raise ValueError(f"site {me!r} has no pair mask with itself")
    return me < peer


def _flat(r: Ring, n: int, what: str) -> Ring:
    if int(np.prod(r.shape, dtype=np.int64)) != n:
        raise ValueError(f"{what} has shape {r.shape}, want {n} elements")
    return Ring(lo=r.lo.reshape(n), hi=r.hi.reshape(n))


def _apply(total: Ring, masks: Sequence[tuple[Ring, bool]], *, add_when: bool, what: str) -> Ring:
    """Add each mask whose flag equals ``add_when``, subtract the others."""
    n = total.lo.size
    for m, flag in masks:
        mf = _flat(m, n, what)
        total = ring_add(total, mf) if flag == add_when else ring_sub(total, mf)
    return total


def double_mask(values: Ring, *, self_seed: bytes, pairwise: Sequence[tuple[Ring, bool]],
                context: bytes) -> Ring:
    """``values + self_mask(self_seed) + sum(+m if added else -m for m, added in pairwise)``.

    Each pairwise mask needs as many elements as ``values`` (any shape); pass
    ``added = adds_pair_mask(me, peer)``. The result has the shape of ``values``.
    """
    n = int(values.lo.size)
    total = ring_add(_flat(values, n, "values"), self_mask(self_seed, n_elements=n, context=context))
    total = _apply(total, pairwise, add_when=True, what="a pairwise mask")
    return Ring(lo=total.lo.reshape(values.shape), hi=total.hi.reshape(values.shape))


def unmask_sum(total: Ring, *, self_seeds: Sequence[bytes], dropped_pairwise: Sequence[tuple[Ring, bool]],
               context: bytes) -> Ring:
    """Remove the survivors' self masks and the dropped sites' dangling pairwise masks from ``total``.

    ``total`` is the sum of the survivors' :func:`double_mask` outputs. ``self_seeds``: one
    rebuilt seed per survivor. ``dropped_pairwise``: for every pair (survivor u, dropped v), the
    tuple ``(m_uv, added)`` u used in :func:`double_mask` (``added = adds_pair_mask(u, v)``);
    what u added is subtracted and what u subtracted is added back. Pairs of two survivors
    cancel by themselves and are not listed.

    Worked example, sites a < b < c, c drops after masking (``S_u = self_mask(b_u, ...)``)::

        y_a = x_a + S_a + m_ab + m_ac        (a adds: a < b, a < c)
        y_b = x_b + S_b - m_ab + m_bc        (b subtracts m_ab, adds m_bc)
        y_a + y_b = x_a + x_b + S_a + S_b + m_ac + m_bc
        unmask_sum(y_a + y_b, self_seeds=[b_a, b_b],
                   dropped_pairwise=[(m_ac, True), (m_bc, True)]) == x_a + x_b

    Had a dropped instead, ``y_b + y_c`` would carry ``- m_ab - m_ac``, and
    ``dropped_pairwise=[(m_ab, False), (m_ac, False)]`` adds them back.
    """
    n = int(total.lo.size)
    out = _flat(total, n, "total")
    for seed in self_seeds:
        out = ring_sub(out, self_mask(seed, n_elements=n, context=context))
    out = _apply(out, dropped_pairwise, add_when=False, what="a dangling pairwise mask")
    return Ring(lo=out.lo.reshape(total.shape), hi=out.hi.reshape(total.shape))
