"""RFC 9162 §2.1 Merkle tree hashes, inclusion and consistency proofs (same tree as RFC 6962).

Pure functions over SHA-256. The generic functions (:func:`root_of`, :func:`inclusion_path`,
:func:`consistency_path`) follow the RFC recursions over a *range hasher* giving MTH(D[lo:hi]);
:func:`root`, :func:`inclusion_proof` and :func:`consistency_proof` wrap them for an in-memory list of
leaf hashes. Verification (:func:`verify_inclusion`, :func:`verify_consistency`) uses the iterative
algorithms of RFC 9162 §2.1.3.2 / §2.1.4.2 and raises :class:`InvalidProof` for every bad input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

__all__ = [
    "EMPTY_ROOT", "HASH_SIZE", "LEAF_PREFIX", "NODE_PREFIX", "InvalidProof", "RangeHash",
    "RootMismatchError", "consistency_path", "consistency_proof", "inclusion_path", "inclusion_proof",
    "largest_power_of_two_below", "leaf_hash", "node_hash", "root", "root_of", "verify_consistency",
    "verify_inclusion",
]

LEAF_PREFIX = b"\x00"  #: domain separation for leaf hashes (RFC 9162 §2.1.1)
NODE_PREFIX = b"\x01"  #: domain separation for interior node hashes (RFC 9162 §2.1.1)
HASH_SIZE = 32  #: SHA-256 digest size in bytes
EMPTY_ROOT = hashlib.sha256(b"").digest()  #: MTH({}) = SHA-256() (RFC 9162 §2.1.1)

RangeHash = Callable[[int, int], bytes]
"""``range_hash(lo, hi)`` = MTH of leaves [lo, hi), called with 0 <= lo < hi <= size."""

_sha256 = hashlib.sha256


class InvalidProof(ValueError):
    """A proof, or an argument of a verification, is malformed or does not verify."""


class RootMismatchError(InvalidProof):
    """The root calculated from a proof differs from the expected root.

    Attributes
    ----------
    expected_root, calculated_root : bytes
    """

    def __init__(self, what: str, expected_root: bytes, calculated_root: bytes) -> None:
        super().__init__(f"{what} mismatch: calculated {calculated_root.hex()}, "
                         f"expected {expected_root.hex()}")
        self.expected_root = expected_root
        self.calculated_root = calculated_root


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d) (RFC 9162 §2.1.1)."""
    return _sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right), the hash of an interior node (RFC 9162 §2.1.1)."""
    return _sha256(NODE_PREFIX + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162 §2.1.1: the power of two with k < n <= 2k. Requires n > 1."""
    if n < 2:
        raise ValueError(f"largest_power_of_two_below needs n > 1: got {n}")
    return 1 << ((n - 1).bit_length() - 1)


# ----------------------------------------------------------------------------- generators
def root_of(range_hash: RangeHash, size: int) -> bytes:
    """MTH(D[size]): ``range_hash(0, size)``, or SHA-256(b"") for the empty tree. Requires size >= 0."""
    if size < 0:
        raise ValueError(f"tree size must be >= 0: got {size}")
    return range_hash(0, size) if size else EMPTY_ROOT


def inclusion_path(range_hash: RangeHash, index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]) (RFC 9162 §2.1.3.1), leaf's sibling first; O(log size) range hashes.

    Requires 0 <= index < size; raises ValueError otherwise.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} out of range for tree size {size}")
    siblings = []
    lo, hi = 0, size  # PATH(m, D[lo:hi]) with m = index - lo
    while hi - lo > 1:
        k = largest_power_of_two_below(hi - lo)
        if index < lo + k:  # PATH(m, D[0:k]) : MTH(D[k:n])
            siblings.append(range_hash(lo + k, hi))
            hi = lo + k
        else:  # PATH(m - k, D[k:n]) : MTH(D[0:k])
            siblings.append(range_hash(lo, lo + k))
            lo += k
    siblings.reverse()
    return siblings


def consistency_path(range_hash: RangeHash, size1: int, size2: int) -> list[bytes]:
    """PROOF(size1, D[size2]) = SUBPROOF(size1, D[size2], true) (RFC 9162 §2.1.4.1); O(log size2).

    Requires 0 < size1 <= size2 (size1 == size2 gives []); raises ValueError otherwise.
    """
    if not 0 < size1 <= size2:
        raise ValueError(f"consistency proof needs 0 < size1 <= size2: got size1={size1}, size2={size2}")
    nodes = []
    lo, hi, m, whole = 0, size2, size1, True  # SUBPROOF(m, D[lo:hi], whole)
    while m != hi - lo:
        k = largest_power_of_two_below(hi - lo)
        if m <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            nodes.append(range_hash(lo + k, hi))
            hi = lo + k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            nodes.append(range_hash(lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
        nodes.append(range_hash(lo, hi))
    nodes.reverse()
    return nodes


class _PerfectSubtrees:
    """In-memory range hasher: all perfect aligned subtrees built once (O(n)), the rest split per RFC."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        level = leaf_hashes
        self.levels = [level]  # levels[h][i] = MTH of leaves [i * 2**h, (i + 1) * 2**h)
        while len(level) > 1:
            pairs = iter(level)  # an odd last node has no sibling yet: zip drops it
            level = [_sha256(NODE_PREFIX + a + b).digest() for a, b in zip(pairs, pairs, strict=False)]
            self.levels.append(level)

    def __call__(self, lo: int, hi: int) -> bytes:
        if not 0 <= lo < hi <= len(self.levels[0]):
            raise ValueError(f"leaf range [{lo}, {hi}) is empty or beyond {len(self.levels[0])} leaves")
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            height = n.bit_length() - 1
            return self.levels[height][lo >> height]
        k = largest_power_of_two_below(n)
        return node_hash(self(lo, lo + k), self(lo + k, hi))


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the given 32-byte leaf hashes (RFC 9162 §2.1.1); SHA-256(b"") when empty."""
    return root_of(_PerfectSubtrees(leaf_hashes), len(leaf_hashes)) if leaf_hashes else EMPTY_ROOT


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) over the n = len(leaf_hashes) leaves. Requires 0 <= index < n (else ValueError)."""
    size = len(leaf_hashes)
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} out of range for tree size {size}")
    return inclusion_path(_PerfectSubtrees(leaf_hashes), index, size)


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int) -> list[bytes]:
    """PROOF(size1, D[n]) for n = len(leaf_hashes). Requires 0 < size1 <= n (else ValueError)."""
    size2 = len(leaf_hashes)
    if not 0 < size1 <= size2:
        raise ValueError(f"consistency proof needs 0 < size1 <= size2: got size1={size1}, size2={size2}")
    return consistency_path(_PerfectSubtrees(leaf_hashes), size1, size2)


# ----------------------------------------------------------------------------- verification
def _check_int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidProof(f"{name} must be an int: got {type(value).__name__}")
    if value < 0:
        raise InvalidProof(f"{name} must be >= 0: got {value}")
    return value


def _check_bytes(value: object, name: str, size: int | None = HASH_SIZE) -> bytes:
    if not isinstance(value, bytes):
        raise InvalidProof(f"{name} must be bytes: got {type(value).__name__}")
    if size is not None and len(value) != size:
        raise InvalidProof(f"wrong {name} length: got {len(value)} bytes, want {size}")
    return value


def _check_proof(proof: object, want: int | None = None) -> list[bytes]:
    if isinstance(proof, str | bytes | bytearray) or not isinstance(proof, Sequence):
        raise InvalidProof(f"proof must be a sequence of hashes: got {type(proof).__name__}")
    if want is not None and len(proof) != want:
        raise InvalidProof(f"wrong proof length: got {len(proof)} hashes, want {want}")
    return [_check_bytes(h, f"proof[{i}]") for i, h in enumerate(proof)]


def _shift_while_even(fn: int, sn: int) -> tuple[int, int]:
    while fn and not fn & 1:
        fn, sn = fn >> 1, sn >> 1
    return fn, sn


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check an inclusion proof by RFC 9162 §2.1.3.2.

    Requires 0 <= index < size, 32-byte ``leaf_hash`` and ``root``, and exactly the expected number of
    32-byte proof hashes. Raises InvalidProof (RootMismatchError on a root mismatch) otherwise.
    """
    index, size = _check_int(index, "index"), _check_int(size, "size")
    if index >= size:
        raise InvalidProof(f"index out of range: got index {index}, want 0 <= index < size = {size}")
    r = _check_bytes(leaf_hash, "leaf_hash")
    _check_bytes(root, "root")
    inner = (index ^ (size - 1)).bit_length()  # levels below the split from the right border
    path = _check_proof(proof, inner + (index >> inner).bit_count())
    fn, sn = index, size - 1
    for p in path:
        if sn == 0:
            raise InvalidProof("proof is too long for the tree size")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            fn, sn = _shift_while_even(fn, sn)
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise InvalidProof("proof is too short for the tree size")
    if r != root:
        raise RootMismatchError("root", root, r)


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check a consistency proof by RFC 9162 §2.1.4.2.

    Requires 0 < size1 <= size2; size1 == size2 needs an empty proof and root1 == root2 (then compared
    as opaque bytes); otherwise 32-byte roots and exactly the expected number of 32-byte hashes.
    Raises InvalidProof (RootMismatchError on a root mismatch) otherwise.
    """
    size1, size2 = _check_int(size1, "size1"), _check_int(size2, "size2")
    root1, root2 = _check_bytes(root1, "root1", None), _check_bytes(root2, "root2", None)
    _check_proof(proof)
    if size1 > size2:
        raise InvalidProof(f"size1 > size2: got size1={size1}, size2={size2}")
    if size1 == 0:
        raise InvalidProof("consistency proof from an empty tree (size1 = 0) is meaningless")
    if size1 == size2:
        _check_proof(proof, 0)
        if root1 != root2:
            raise RootMismatchError("root2", root2, root1)
        return
    _check_bytes(root1, "root1")
    _check_bytes(root2, "root2")
    shift = (size1 & -size1).bit_length() - 1  # size1 = odd * 2**shift
    full_inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    seeded = size1 == 1 << shift  # size1 a power of two: root1 itself is the first node
    want = (0 if seeded else 1) + full_inner - shift + ((size1 - 1) >> full_inner).bit_count()
    path = _check_proof(proof, want)
    fr, sr = _chain_consistency(size1, size2, [root1, *path] if seeded else path)
    if fr != root1:
        raise RootMismatchError("root1", root1, fr)
    if sr != root2:
        raise RootMismatchError("root2", root2, sr)


def _chain_consistency(size1: int, size2: int, path: list[bytes]) -> tuple[bytes, bytes]:
    """Steps 3-7 of RFC 9162 §2.1.4.2: the (first, second) roots computed from a non-empty path."""
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise InvalidProof("proof is too long for the tree sizes")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            fn, sn = _shift_while_even(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise InvalidProof("proof is too short for the tree sizes")
    return fr, sr
