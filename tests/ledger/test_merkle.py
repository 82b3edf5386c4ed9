"""ledger.merkle against RFC 9162: conformance vectors, a literal reference, tampering, bad inputs."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.merkle import (
    EMPTY_ROOT,
    InvalidProof,
    RootMismatchError,
    consistency_path,
    consistency_proof,
    inclusion_path,
    inclusion_proof,
    largest_power_of_two_below,
    leaf_hash,
    node_hash,
    root,
    root_of,
    verify_consistency,
    verify_inclusion,
)

#: RFC 6962 / 9162 conformance vectors kept in the repository (provenance and licence in their README)
VECTORS = Path(__file__).resolve().parent / "testdata" / "merkle"

# Known answers from the vectors' README (the RFC 6962 test tree of transparency-dev/merkle).
LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                     "606162636465666768696a6b6c6d6e6f")]
LEAF_HASHES = [leaf_hash(d) for d in LEAVES]
ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]


# ------------------------------------------------------------------ reference: RFC 9162 §2.1, literally
def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ref_k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while 2 * k < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of §2.1.1."""
    if len(d) == 0:
        return _h(b"")
    if len(d) == 1:
        return _h(b"\x00" + d[0])
    k = ref_k(len(d))
    return _h(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of §2.1.3.1."""
    if len(d) == 1:
        return []
    k = ref_k(len(d))
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of §2.1.4.1."""
    return ref_subproof(m, d, True)


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = ref_k(len(d))
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


def ref_directions(m: int, n: int) -> list[bool]:
    """Shape of PATH(m, D[n]): for each node, deepest first, whether it is a right sibling."""
    if n == 1:
        return []
    k = ref_k(n)
    return ref_directions(m, k) + [True] if m < k else ref_directions(m - k, n - k) + [False]


def ref_verify_inclusion(leaf: bytes, m: int, n: int, path: Sequence[bytes], expected: bytes) -> bool:
    """Recompute MTH(D[n]) by undoing the PATH recursion (not the iterative §2.1.3.2)."""
    def up(m: int, n: int, path: Sequence[bytes]) -> bytes | None:
        if n == 1:
            return None if path else leaf
        if not path:
            return None
        k = ref_k(n)
        sub = up(m, k, path[:-1]) if m < k else up(m - k, n - k, path[:-1])
        if sub is None:
            return None
        return _h(b"\x01" + sub + path[-1]) if m < k else _h(b"\x01" + path[-1] + sub)

    return 0 <= m < n and up(m, n, path) == expected


def ref_verify_consistency(m: int, n: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> bool:
    """Recompute (MTH(D[m]), MTH(D[n])) by undoing the SUBPROOF recursion (not §2.1.4.2)."""
    def up(m: int, n: int, b: bool, proof: Sequence[bytes]) -> tuple[bytes, bytes] | None:
        if m == n:
            if b:
                return None if proof else (root1, root1)
            return (proof[0], proof[0]) if len(proof) == 1 else None
        if not proof:
            return None
        k, last = ref_k(n), proof[-1]
        if m <= k:
            sub = up(m, k, b, proof[:-1])
            return None if sub is None else (sub[0], _h(b"\x01" + sub[1] + last))
        sub = up(m - k, n - k, False, proof[:-1])
        return None if sub is None else (_h(b"\x01" + last + sub[0]), _h(b"\x01" + last + sub[1]))

    return 0 < m <= n and up(m, n, True, proof) == (root1, root2)


# ------------------------------------------------------------------ helpers
def _flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8 % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


def _accepts(check: Callable[..., None], *args: Any) -> bool:
    """True if the check passes, False on InvalidProof; any other exception propagates."""
    try:
        check(*args)
    except InvalidProof:
        return False
    return True


def _vector_params(kind: str) -> list[Any]:
    """One parameter per vector file; a missing folder is one failing parameter, never a skip."""
    if not VECTORS.is_dir():
        return [pytest.param(None, id=f"{kind}-vectors-missing")]
    return [pytest.param(p, id=p.relative_to(VECTORS).as_posix())
            for p in sorted((VECTORS / kind).rglob("*.json"))]


def _load(path: Path | None) -> dict[str, Any]:
    assert path is not None, f"{VECTORS}: the conformance vectors are missing from the checkout"
    vector: dict[str, Any] = json.loads(path.read_text())
    return vector


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _b64s(texts: list[str] | None) -> list[bytes]:
    return [_b64(t) for t in texts or []]


# ------------------------------------------------------------------ conformance vectors
@pytest.mark.req("SRS-LEDG-001")
def test_vectors_present() -> None:
    assert VECTORS.is_dir(), f"{VECTORS}: the conformance vectors are missing from the checkout"
    for kind in ("inclusion", "consistency"):
        wants = [json.loads(p.read_text())["wantErr"] for p in (VECTORS / kind).rglob("*.json")]
        assert wants.count(False) >= 5 and wants.count(True) >= 50, kind


@pytest.mark.req("SRS-LEDG-001")
@pytest.mark.parametrize("path", _vector_params("inclusion"))
def test_inclusion_vector(path: Path | None) -> None:
    v = _load(path)
    leaf, idx, size, proof, expected = (_b64(v["leafHash"]), v["leafIdx"], v["treeSize"],
                                        _b64s(v["proof"]), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(InvalidProof):
            verify_inclusion(leaf, idx, size, proof, expected)
        return
    verify_inclusion(leaf, idx, size, proof, expected)
    if 0 < size <= 8 and expected == ROOTS[size] and leaf == LEAF_HASHES[idx]:
        assert inclusion_proof(LEAF_HASHES[:size], idx) == proof


@pytest.mark.req("SRS-LEDG-001")
@pytest.mark.parametrize("path", _vector_params("consistency"))
def test_consistency_vector(path: Path | None) -> None:
    v = _load(path)
    size1, size2, proof, root1, root2 = (v["size1"], v["size2"], _b64s(v["proof"]), _b64(v["root1"]),
                                         _b64(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(InvalidProof):
            verify_consistency(size1, size2, proof, root1, root2)
        return
    verify_consistency(size1, size2, proof, root1, root2)
    if 0 < size1 <= size2 <= 8 and (root1, root2) == (ROOTS[size1], ROOTS[size2]):
        assert consistency_proof(LEAF_HASHES[:size2], size1) == proof


@pytest.mark.req("SRS-LEDG-001")
@pytest.mark.parametrize("n", range(9))
def test_known_roots_and_all_proofs(n: int) -> None:
    assert root(LEAF_HASHES[:n]) == ROOTS[n] == ref_mth(LEAVES[:n])
    for i in range(n):
        proof = inclusion_proof(LEAF_HASHES[:n], i)
        assert proof == ref_path(i, LEAVES[:n])
        verify_inclusion(LEAF_HASHES[i], i, n, proof, ROOTS[n])
    for size1 in range(1, n + 1):
        proof = consistency_proof(LEAF_HASHES[:n], size1)
        assert proof == ref_proof(size1, LEAVES[:n])
        verify_consistency(size1, n, proof, ROOTS[size1], ROOTS[n])


@pytest.mark.req("SRS-LEDG-001")
def test_exhaustive_small_trees() -> None:
    data = [b"leaf %d" % i for i in range(33)]
    hashes = [leaf_hash(d) for d in data]
    for n in range(1, len(data) + 1):
        assert root(hashes[:n]) == ref_mth(data[:n])
        for i in range(n):
            proof = inclusion_proof(hashes[:n], i)
            assert proof == ref_path(i, data[:n])
            verify_inclusion(hashes[i], i, n, proof, ref_mth(data[:n]))
        for size1 in range(1, n + 1):
            proof = consistency_proof(hashes[:n], size1)
            assert proof == ref_proof(size1, data[:n])
            verify_consistency(size1, n, proof, ref_mth(data[:size1]), ref_mth(data[:n]))


# ------------------------------------------------------------------ properties against the reference
SIZES = st.one_of(st.integers(1, 40), st.integers(1, 3000),
                  st.sampled_from([2**j + d for j in range(1, 12) for d in (-1, 0, 1)]))


@st.composite
def trees(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    """Distinct leaf data of a random size, and their leaf hashes."""
    salt = draw(st.binary(max_size=3))
    data = [salt + i.to_bytes(2, "big") for i in range(draw(SIZES))]
    return data, [leaf_hash(d) for d in data]


@pytest.mark.req("SRS-LEDG-001")
@settings(max_examples=30, deadline=None)
@given(tree=trees(), pick=st.data())
def test_matches_reference(tree: tuple[list[bytes], list[bytes]], pick: st.DataObject) -> None:
    data, hashes = tree
    n = len(data)
    index = pick.draw(st.integers(0, n - 1), label="index")
    size1 = pick.draw(st.integers(1, n), label="size1")
    assert root(hashes) == ref_mth(data)
    assert root(hashes[:size1]) == ref_mth(data[:size1])
    proof = inclusion_proof(hashes, index)
    assert proof == ref_path(index, data)
    verify_inclusion(hashes[index], index, n, proof, ref_mth(data))
    cproof = consistency_proof(hashes, size1)
    assert cproof == ref_proof(size1, data)
    verify_consistency(size1, n, cproof, ref_mth(data[:size1]), ref_mth(data))


@pytest.mark.req("SRS-LEDG-001")
@settings(max_examples=30, deadline=None)
@given(tree=trees(), pick=st.data())
def test_tampered_inclusion_rejected(tree: tuple[list[bytes], list[bytes]], pick: st.DataObject) -> None:
    data, hashes = tree
    n = len(data)
    index = pick.draw(st.integers(0, n - 1), label="index")
    bit = pick.draw(st.integers(0, 255), label="bit")
    proof, good = inclusion_proof(hashes, index), root(hashes)
    leaf = hashes[index]
    for i in range(len(proof)):
        bad = proof[:i] + [_flip(proof[i], bit)] + proof[i + 1:]
        with pytest.raises(RootMismatchError):
            verify_inclusion(leaf, index, n, bad, good)
    for bad_proof in (proof + [proof[0] if proof else good], proof[:-1]):
        if bad_proof != proof:
            with pytest.raises(InvalidProof, match="wrong proof length"):
                verify_inclusion(leaf, index, n, bad_proof, good)
    with pytest.raises(RootMismatchError):
        verify_inclusion(leaf, index, n, proof, _flip(good, bit))
    with pytest.raises(RootMismatchError):
        verify_inclusion(_flip(leaf, bit), index, n, proof, good)
    # Any other index: the path's shape names exactly one leaf, so every change is caught.
    for other in {index - 1, index + 1, index ^ 1, index ^ 2, 2 * index, 0, n - 1, n, n + 1}:
        if other != index:
            with pytest.raises(InvalidProof):
                verify_inclusion(leaf, other, n, proof, good)
    # Another size is caught unless the proof has the very same shape there (RFC 9162 proofs do
    # not bind the size on their own: a signed tree head does, see test_size_is_bound_by_shape_only).
    for other in {n - 1, n + 1, n + 2, 2 * n, n // 2, index, index + 1}:
        if other != n:
            same_shape = 0 <= index < other and ref_directions(index, other) == ref_directions(index, n)
            assert _accepts(verify_inclusion, leaf, index, other, proof, good) == same_shape
            assert same_shape == ref_verify_inclusion(leaf, index, other, proof, good)


@pytest.mark.req("SRS-LEDG-001")
@settings(max_examples=30, deadline=None)
@given(tree=trees(), pick=st.data())
def test_tampered_consistency_rejected(tree: tuple[list[bytes], list[bytes]], pick: st.DataObject) -> None:
    data, hashes = tree
    n = len(data)
    size1 = pick.draw(st.integers(1, n), label="size1")
    bit = pick.draw(st.integers(0, 255), label="bit")
    proof, root1, root2 = consistency_proof(hashes, size1), root(hashes[:size1]), root(hashes)
    for i in range(len(proof)):
        bad = proof[:i] + [_flip(proof[i], bit)] + proof[i + 1:]
        with pytest.raises(RootMismatchError):
            verify_consistency(size1, n, bad, root1, root2)
    for bad_proof in (proof + [root2], proof[:-1]):
        if bad_proof != proof:
            with pytest.raises(InvalidProof, match="wrong proof length"):
                verify_consistency(size1, n, bad_proof, root1, root2)
    with pytest.raises(RootMismatchError):
        verify_consistency(size1, n, proof, _flip(root1, bit), root2)
    with pytest.raises(RootMismatchError):
        verify_consistency(size1, n, proof, root1, _flip(root2, bit))
    # Other sizes: accepted exactly when the literal SUBPROOF recursion accepts them (same shape).
    others = {(s1, n) for s1 in (size1 - 1, size1 + 1, size1 ^ 1, 2 * size1, 0, n)}
    others |= {(size1, s2) for s2 in (n - 1, n + 1, n + 2, 2 * n, size1, size1 - 1)}
    for s1, s2 in others - {(size1, n)}:
        assert (_accepts(verify_consistency, s1, s2, proof, root1, root2)
                == ref_verify_consistency(s1, s2, proof, root1, root2))
        if s1 == 0 or s2 < s1:
            assert not _accepts(verify_consistency, s1, s2, proof, root1, root2)


@pytest.mark.req("SRS-LEDG-001")
def test_size_is_bound_by_shape_only() -> None:
    """As in RFC 9162 and transparency-dev/merkle: a proof verifies for every size of the same shape."""
    proof = inclusion_proof(LEAF_HASHES[:4], 0)  # [h1, MTH(D[2:4])]; for size 3 it reads [h1, h2]
    verify_inclusion(LEAF_HASHES[0], 0, 3, proof, ROOTS[4])
    cproof = consistency_proof(LEAF_HASHES[:4], 1)
    verify_consistency(1, 3, cproof, ROOTS[1], ROOTS[4])
    with pytest.raises(RootMismatchError):
        verify_inclusion(LEAF_HASHES[0], 0, 3, proof, ROOTS[3])


# ------------------------------------------------------------------ generic range-hash versions
def _counting(size: int) -> tuple[Callable[[int, int], bytes], list[tuple[int, int]]]:
    calls: list[tuple[int, int]] = []

    def range_hash(lo: int, hi: int) -> bytes:
        assert 0 <= lo < hi <= size
        calls.append((lo, hi))
        return _h(b"%d:%d" % (lo, hi))

    return range_hash, calls


@pytest.mark.req("SRS-LEDG-001")
@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 1000, 2**20, 2**20 + 1, 10**12 + 7, 2**64 - 1])
def test_inclusion_path_is_logarithmic(size: int) -> None:
    range_hash, calls = _counting(size)
    for index in sorted({0, 1 % size, size // 3, size // 2, size - 1}):
        calls.clear()
        path = inclusion_path(range_hash, index, size)
        assert len(calls) == len(path) <= (size - 1).bit_length()
        # the siblings and the leaf itself tile [0, size)
        assert sum(hi - lo for lo, hi in calls) == size - 1
        assert all(not lo <= index < hi for lo, hi in calls)


@pytest.mark.req("SRS-LEDG-001")
@pytest.mark.parametrize("size2", [1, 2, 3, 7, 8, 1000, 2**20 + 1, 10**12 + 7, 2**64 - 1])
def test_consistency_path_is_logarithmic(size2: int) -> None:
    range_hash, calls = _counting(size2)
    for size1 in sorted({1, size2 // 3 or 1, size2 // 2 or 1, size2 - 1 or 1, size2}):
        calls.clear()
        path = consistency_path(range_hash, size1, size2)
        assert len(calls) == len(path) <= (size2 - 1).bit_length() + 1
    calls.clear()
    assert root_of(range_hash, size2) == _h(b"0:%d" % size2) and calls == [(0, size2)]
    assert root_of(range_hash, 0) == EMPTY_ROOT == _h(b"")


@pytest.mark.req("SRS-LEDG-001")
def test_generic_paths_over_a_plain_range_hash() -> None:
    data = [b"x%d" % i for i in range(77)]

    def plain(lo: int, hi: int) -> bytes:
        return ref_mth(data[lo:hi])

    for i in range(77):
        assert inclusion_path(plain, i, 77) == ref_path(i, data)
    for size1 in range(1, 78):
        assert consistency_path(plain, size1, 77) == ref_proof(size1, data)
    assert root_of(plain, 77) == ref_mth(data)


@pytest.mark.req("SRS-LEDG-001")
def test_in_memory_hasher_any_range() -> None:
    """The leaf-list range hasher is right for unaligned ranges too, not only those the RFC asks for."""
    data = [b"r%d" % i for i in range(40)]
    range_hash = merkle._PerfectSubtrees([leaf_hash(d) for d in data])
    for lo in range(40):
        for hi in range(lo + 1, 41):
            assert range_hash(lo, hi) == ref_mth(data[lo:hi])
    for lo, hi in ((0, 0), (5, 3), (-1, 2), (0, 41)):
        with pytest.raises(ValueError, match="leaf range"):
            range_hash(lo, hi)


@pytest.mark.req("SRS-LEDG-001")
def test_in_memory_hasher_is_linear_and_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(100_000)]
    start = time.perf_counter()
    proof = inclusion_proof(hashes, 76_543)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"{elapsed:.3f} s"  # ~50 ms here: one SHA-256 per interior node
    verify_inclusion(hashes[76_543], 76_543, len(hashes), proof, root(hashes))

    count = 0
    real = merkle._sha256

    def counting(data: bytes) -> Any:
        nonlocal count
        count += 1
        return real(data)

    monkeypatch.setattr(merkle, "_sha256", counting)
    n = 3000
    for index in (0, 1234, n - 1):
        count = 0
        inclusion_proof(hashes[:n], index)
        assert count <= n + n.bit_length() ** 2
    count = 0
    consistency_proof(hashes[:n], 1001)
    assert count <= n + n.bit_length() ** 2


@pytest.mark.req("SRS-LEDG-001")
def test_largest_power_of_two_below() -> None:
    for n in range(2, 2000):
        k = largest_power_of_two_below(n)
        assert k == ref_k(n) and k < n <= 2 * k and k & (k - 1) == 0
    assert largest_power_of_two_below(2**64 + 1) == 2**64
    for bad in (1, 0, -3):
        with pytest.raises(ValueError):
            largest_power_of_two_below(bad)


@pytest.mark.req("SRS-LEDG-001")
def test_hash_functions() -> None:
    assert merkle.LEAF_PREFIX == b"\x00" and merkle.NODE_PREFIX == b"\x01" and merkle.HASH_SIZE == 32
    assert leaf_hash(b"abc") == _h(b"\x00abc")
    assert node_hash(b"L" * 32, b"R" * 32) == _h(b"\x01" + b"L" * 32 + b"R" * 32)
    assert root([]) == EMPTY_ROOT and issubclass(InvalidProof, ValueError)


# ------------------------------------------------------------------ bad inputs
@pytest.mark.req("SRS-LEDG-001")
def test_generators_reject_out_of_range() -> None:
    leaves = LEAF_HASHES[:5]
    range_hash, _ = _counting(5)
    for call in (lambda: inclusion_proof(leaves, 5), lambda: inclusion_proof(leaves, -1),
                 lambda: inclusion_proof([], 0), lambda: consistency_proof(leaves, 0),
                 lambda: consistency_proof(leaves, 6), lambda: consistency_proof(leaves, -1),
                 lambda: inclusion_path(range_hash, 5, 5), lambda: consistency_path(range_hash, 0, 5),
                 lambda: consistency_path(range_hash, 3, 2), lambda: root_of(range_hash, -1)):
        with pytest.raises(ValueError, match="size|index"):
            call()


H = LEAF_HASHES
P5 = inclusion_proof(H[:5], 1)  # 3 hashes
C5 = consistency_proof(H[:5], 3)  # 4 hashes: h2, h3, MTH(D[0:2]), h4


@pytest.mark.req("SRS-LEDG-001")
@pytest.mark.parametrize(("args", "message"), [
    (("leaf", 1, 5, P5, ROOTS[5]), "leaf_hash must be bytes: got str"),
    ((bytearray(H[1]), 1, 5, P5, ROOTS[5]), "leaf_hash must be bytes: got bytearray"),
    ((H[1][:31], 1, 5, P5, ROOTS[5]), "wrong leaf_hash length: got 31 bytes, want 32"),
    ((H[1], 1, 5, P5, ROOTS[5][:31]), "wrong root length: got 31 bytes, want 32"),
    ((H[1], 1, 5, P5, None), "root must be bytes: got NoneType"),
    ((H[1], 1, -5, P5, ROOTS[5]), "size must be >= 0: got -5"),
    ((H[1], -1, 5, P5, ROOTS[5]), "index must be >= 0: got -1"),
    ((H[1], 5, 5, P5, ROOTS[5]), "index out of range: got index 5, want 0 <= index < size = 5"),
    ((H[1], 1.0, 5, P5, ROOTS[5]), "index must be an int: got float"),
    ((H[1], 1, True, P5, ROOTS[5]), "size must be an int: got bool"),
    ((H[1], 1, 5, [*P5, P5[0]], ROOTS[5]), "wrong proof length: got 4 hashes, want 3"),
    ((H[1], 1, 5, P5[:2], ROOTS[5]), "wrong proof length: got 2 hashes, want 3"),
    ((H[1], 1, 5, None, ROOTS[5]), "proof must be a sequence of hashes: got NoneType"),
    ((H[1], 1, 5, b"".join(P5), ROOTS[5]), "proof must be a sequence of hashes: got bytes"),
    ((H[1], 1, 5, [P5[0], "x", P5[2]], ROOTS[5]), r"proof\[1\] must be bytes: got str"),
    ((H[1], 1, 5, [P5[0] + b"!", *P5[1:]], ROOTS[5]), r"wrong proof\[0\] length: got 33 bytes, want 32"),
    ((H[1], 1, 5, P5, ROOTS[4]), f"root mismatch: calculated {ROOTS[5].hex()}, expected {ROOTS[4].hex()}"),
])
@pytest.mark.req("SRS-LEDG-001")
def test_verify_inclusion_bad_input(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(InvalidProof, match=message):
        verify_inclusion(*args)


@pytest.mark.req("SRS-LEDG-001")
@pytest.mark.parametrize(("args", "message"), [
    ((-1, 5, C5, ROOTS[3], ROOTS[5]), "size1 must be >= 0: got -1"),
    ((3, -5, C5, ROOTS[3], ROOTS[5]), "size2 must be >= 0: got -5"),
    ((3, "5", C5, ROOTS[3], ROOTS[5]), "size2 must be an int: got str"),
    ((3, 2, [], ROOTS[3], ROOTS[2]), "size1 > size2: got size1=3, size2=2"),
    ((0, 5, C5, EMPTY_ROOT, ROOTS[5]), r"empty tree \(size1 = 0\) is meaningless"),
    ((0, 0, [], EMPTY_ROOT, EMPTY_ROOT), r"empty tree \(size1 = 0\) is meaningless"),
    ((5, 5, C5[:1], ROOTS[5], ROOTS[5]), "wrong proof length: got 1 hashes, want 0"),
    ((5, 5, [], ROOTS[5], ROOTS[4]), "root2 mismatch"),
    ((3, 5, C5, ROOTS[3][:31], ROOTS[5]), "wrong root1 length: got 31 bytes, want 32"),
    ((3, 5, C5, ROOTS[3], None), "root2 must be bytes: got NoneType"),
    ((3, 5, C5 + C5[:1], ROOTS[3], ROOTS[5]), "wrong proof length: got 5 hashes, want 4"),
    ((3, 5, C5[:-1], ROOTS[3], ROOTS[5]), "wrong proof length: got 3 hashes, want 4"),
    ((3, 5, tuple(C5[:2]) + (7,), ROOTS[3], ROOTS[5]), r"proof\[2\] must be bytes: got int"),
    ((3, 5, "proof", ROOTS[3], ROOTS[5]), "proof must be a sequence of hashes: got str"),
    ((3, 5, C5, ROOTS[2], ROOTS[5]), "root1 mismatch"),
    ((3, 5, C5, ROOTS[3], ROOTS[4]), "root2 mismatch"),
])
@pytest.mark.req("SRS-LEDG-001")
def test_verify_consistency_bad_input(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(InvalidProof, match=message):
        verify_consistency(*args)


@pytest.mark.req("SRS-LEDG-001")
def test_root_mismatch_carries_roots() -> None:
    with pytest.raises(RootMismatchError) as caught:
        verify_inclusion(H[1], 1, 5, P5, ROOTS[4])
    assert (caught.value.expected_root, caught.value.calculated_root) == (ROOTS[4], ROOTS[5])
    with pytest.raises(RootMismatchError) as caught2:
        verify_consistency(3, 5, C5, ROOTS[2], ROOTS[5])
    assert caught2.value.expected_root == ROOTS[2] and len(caught2.value.calculated_root) == 32
    verify_consistency(3, 5, C5, ROOTS[3], ROOTS[5])  # the unaltered arguments do verify
    verify_inclusion(H[1], 1, 5, tuple(P5), ROOTS[5])  # any sequence of hashes will do


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 40), st.floats(), st.text(max_size=3),
                 st.binary(max_size=34), st.binary(min_size=32, max_size=32),
                 st.lists(st.one_of(st.binary(min_size=31, max_size=33), st.integers()), max_size=6))


@pytest.mark.req("SRS-LEDG-001")
@settings(max_examples=200, deadline=None)
@given(args=st.tuples(JUNK, JUNK, JUNK, JUNK, JUNK))
def test_junk_only_ever_raises_invalid_proof(args: tuple[Any, ...]) -> None:
    for check in (verify_inclusion, verify_consistency):
        try:
            check(*args)
        except InvalidProof:
            pass
