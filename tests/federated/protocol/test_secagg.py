"""Secure aggregation: exact fixed-point ring arithmetic, cancelling pairwise masks, uniform payloads."""

from __future__ import annotations

import math

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from federated.protocol.secagg import (
    MAX_ABS,
    KeyPair,
    Ring,
    SecAggOverflow,
    decode,
    encode,
    from_bytes,
    mask,
    pair_mask,
    ring_add,
    ring_sub,
    ring_sum,
    to_bytes,
    zeros,
)

EPS = 2.0**-63


def _keypair(rng: np.random.Generator) -> KeyPair:
    """A deterministic key pair, so the statistical tests below are reproducible."""
    return KeyPair(private=X25519PrivateKey.from_private_bytes(rng.bytes(32)))


def _random_ring(rng: np.random.Generator, shape: int | tuple[int, ...]) -> Ring:
    lo, hi = (rng.integers(0, 2**64, shape, dtype=np.uint64) for _ in range(2))
    return Ring(lo=lo, hi=hi)


def _spread(rng: np.random.Generator, n: int) -> np.ndarray:
    """Floats spanning 1e-12 … 1e15 in magnitude, both signs, plus zeros and integers."""
    mags = 10.0 ** rng.uniform(-12, 15, n)
    vals = mags * rng.choice([-1.0, 1.0], n)
    vals[::17] = 0.0
    vals[5::13] = np.round(vals[5::13])
    return vals


# ------------------------------------------------------------------ encoding
@pytest.mark.req("SRS-SEC-001")
def test_round_trip_many_magnitudes() -> None:
    x = _spread(np.random.default_rng(1), 5000)
    x = np.concatenate([x, [-0.0, 1e-300, -1e-300, 5e-324, -5e-324, MAX_ABS - 0.5, -(MAX_ABS - 0.5)]])
    back = decode(encode(x))
    assert back.dtype == np.float64 and back.shape == x.shape
    assert np.all(np.abs(back - x) <= EPS)
    big = np.abs(x) >= 2.0**-11  # every bit of the mantissa is at or above 2**-64: exact
    assert big.sum() > 3000 and (~big).sum() > 1000
    assert np.array_equal(back[big], x[big])


@pytest.mark.req("SRS-SEC-001")
def test_round_trip_keeps_shape_and_accepts_ints() -> None:
    x = np.arange(-12, 12).reshape(2, 3, 4)
    r = encode(x)
    assert r.shape == (2, 3, 4)
    assert np.array_equal(decode(r), x.astype(float))
    scalar = encode(np.array(-2.25))
    assert scalar.shape == () and decode(scalar) == -2.25


@pytest.mark.req("SRS-SEC-001")
def test_known_byte_layout() -> None:
    r = encode(np.array([1.5]))
    assert int(r.lo[0]) == 2**63 and int(r.hi[0]) == 1
    assert to_bytes(r) == (2**63).to_bytes(8, "little") + (1).to_bytes(8, "little")
    m = encode(np.array([-1.0]))
    assert int(m.hi[0]) == 2**64 - 1 and int(m.lo[0]) == 0
    assert to_bytes(m) == bytes(8) + b"\xff" * 8
    # floor(x * 2**64), not truncation toward zero: -2**-64 * 0.5 encodes as -1 (all ones).
    tiny = encode(np.array([-(2.0**-65)]))
    assert int(tiny.lo[0]) == 2**64 - 1 and int(tiny.hi[0]) == 2**64 - 1


@pytest.mark.req("SRS-SEC-001")
def test_bytes_round_trip_and_length_check() -> None:
    rng = np.random.default_rng(2)
    r = _random_ring(rng, (4, 5))
    raw = to_bytes(r)
    assert len(raw) == 16 * 20
    assert from_bytes(raw, (4, 5)) == r
    assert from_bytes(to_bytes(zeros(0)), (0,)) == zeros(0)
    with pytest.raises(ValueError, match="want 320"):
        from_bytes(raw[:-1], (4, 5))


@pytest.mark.req("SRS-SEC-001")
def test_ring_validates_limbs() -> None:
    with pytest.raises(TypeError, match="uint64"):
        Ring(lo=np.zeros(3, dtype=np.int64), hi=np.zeros(3, dtype=np.uint64))
    with pytest.raises(ValueError, match="shape"):
        Ring(lo=np.zeros(3, dtype=np.uint64), hi=np.zeros(4, dtype=np.uint64))
    with pytest.raises(ValueError, match="shape"):
        ring_add(zeros(3), zeros((3, 1)))
    with pytest.raises(ValueError, match="at least one"):
        ring_sum([])


@pytest.mark.req("SRS-SEC-001", "RC-FED-002")
@pytest.mark.parametrize("bad", [2.0**52, -(2.0**52), 1e300, np.nan, np.inf, -np.inf])
def test_encode_rejects_out_of_range(bad: float) -> None:
    with pytest.raises(SecAggOverflow):
        encode(np.array([0.0, bad]))


@pytest.mark.req("SRS-SEC-001", "RC-FED-002")
def test_decode_detects_overflow_with_too_few_terms() -> None:
    parts = [encode(np.array([MAX_ABS - 1.0, -(MAX_ABS - 1.0)])) for _ in range(3)]
    total = ring_sum(parts)
    assert np.array_equal(decode(total, n_terms=3), [3 * (MAX_ABS - 1.0), -3 * (MAX_ABS - 1.0)])
    with pytest.raises(SecAggOverflow, match="masks did not cancel"):
        decode(total, n_terms=2)
    with pytest.raises(SecAggOverflow):
        decode(total)
    with pytest.raises(ValueError):
        decode(total, n_terms=0)


# ------------------------------------------------------------------ ring arithmetic
finite = st.floats(min_value=-1e15, max_value=1e15, allow_nan=False, allow_infinity=False)


@pytest.mark.req("SRS-SEC-001")
@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8).flatmap(lambda k: st.lists(st.lists(finite, min_size=6, max_size=6),
                                                      min_size=k, max_size=k)))
def test_sum_matches_fsum(arrays: list[list[float]]) -> None:
    k = len(arrays)
    total = decode(ring_sum([encode(np.array(a)) for a in arrays]), n_terms=k)
    for j, got in enumerate(total):
        want = math.fsum(a[j] for a in arrays)
        assert abs(got - want) <= k * EPS + math.ulp(want), (got, want)


@pytest.mark.req("SRS-SEC-001")
@pytest.mark.parametrize(("terms", "want"), [
    ([-0.5, 0.25], -0.25),
    ([-1e-20, 1e-20], 0.0),
    ([0.75, -0.75, 0.1, -0.1], 0.0),
    ([-(2.0**51), -(2.0**51) + 0.5, 2.0**-40], -(2.0**52) + 0.5 + 2.0**-40),
    ([-3.0e15, -1.0e15, 2.5], -4.0e15 + 2.5),
])
def test_carry_and_borrow_across_limbs(terms: list[float], want: float) -> None:
    got = decode(ring_sum([encode(np.array([t])) for t in terms]), n_terms=len(terms))[0]
    assert abs(got - want) <= len(terms) * EPS + math.ulp(want)


@pytest.mark.req("SRS-SEC-001")
def test_add_sub_inverse() -> None:
    rng = np.random.default_rng(3)
    a, b = _random_ring(rng, 1000), _random_ring(rng, 1000)
    assert ring_sub(ring_add(a, b), b) == a
    assert ring_add(ring_sub(a, b), b) == a
    assert ring_sub(a, a) == zeros(1000)
    edge = Ring(lo=np.array([2**64 - 1], dtype=np.uint64), hi=np.array([2**64 - 1], dtype=np.uint64))
    one = Ring(lo=np.array([1], dtype=np.uint64), hi=np.array([0], dtype=np.uint64))
    assert ring_add(edge, one) == zeros(1)  # 2**128 - 1 + 1 wraps to 0
    assert ring_sub(zeros(1), one) == edge


# ------------------------------------------------------------------ masks
names = st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=6, unique=True)


@pytest.mark.req("SRS-SEC-002")
@settings(max_examples=25, deadline=None)
@given(names, st.integers(0, 2**32 - 1))
def test_masks_cancel_only_over_all_sites(sites: list[str], seed: int) -> None:
    rng = np.random.default_rng(seed)
    keys = {s: KeyPair.generate() for s in sites}
    peers = {s: kp.public_bytes() for s, kp in keys.items()}
    stats = {s: rng.normal(scale=1e3, size=(50, 3)) for s in sites}
    masked = {s: mask(encode(stats[s]), keys[s], peers, me=s, session="sess", round=7) for s in sites}
    n = len(sites)
    total = decode(ring_sum(list(masked.values())), n_terms=n)
    columns = np.stack([stats[s].ravel() for s in sites], axis=1)
    want = np.array([math.fsum(row) for row in columns]).reshape(50, 3)  # exact reference
    assert total.shape == (50, 3)
    assert np.all(np.abs(total - want) <= n * EPS + np.spacing(np.abs(want)))
    for s in sites:  # one site dropped out: the masks it shared no longer cancel
        rest = [masked[t] for t in sites if t != s]
        with pytest.raises(SecAggOverflow):
            decode(ring_sum(rest), n_terms=n - 1)


@pytest.mark.req("SRS-SEC-002")
def test_pair_mask_is_symmetric_and_bound_to_context() -> None:
    rng = np.random.default_rng(4)
    a, b, c = _keypair(rng), _keypair(rng), _keypair(rng)

    def pm(mine: KeyPair, theirs: KeyPair, me: str = "alpha", peer: str = "beta", session: str = "s1",
           round: int = 3, n: int = 64) -> Ring:
        return pair_mask(mine.private, theirs.public_bytes(), session=session, round=round, me=me, peer=peer,
                         n_elements=n)

    m_ab = pm(a, b)
    assert m_ab == pm(b, a, me="beta", peer="alpha") and m_ab.shape == (64,)
    others = [pm(a, b, round=4), pm(a, b, session="s2"), pm(a, c), pm(a, b, peer="gamma")]
    for other in others:
        assert not np.any(other.lo == m_ab.lo)  # a different key gives an unrelated stream
    assert to_bytes(pm(a, b, n=100))[: 16 * 64] == to_bytes(m_ab)  # a longer mask extends the shorter one


@pytest.mark.req("SRS-SEC-002")
def test_invalid_peer_key_is_rejected_clearly() -> None:
    kp = KeyPair.generate()
    assert len(kp.public_bytes()) == 32
    kw = {"session": "s", "round": 0, "me": "a", "peer": "b", "n_elements": 4}
    with pytest.raises(ValueError, match=r"site 'b' must be 32 raw X25519 bytes, got 31 bytes"):
        pair_mask(kp.private, bytes(31), **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a usable X25519 key"):
        pair_mask(kp.private, bytes(32), **kw)  # type: ignore[arg-type]  # low-order point
    with pytest.raises(ValueError, match="itself"):
        pair_mask(kp.private, kp.public_bytes(), session="s", round=0, me="a", peer="a", n_elements=4)
    with pytest.raises(ValueError, match="site 'b'"):
        mask(encode(np.zeros(4)), kp, {"a": kp.public_bytes(), "b": b"\x01" * 31}, me="a", session="s",
             round=0)
    with pytest.raises(ValueError, match="not this site's key"):
        mask(encode(np.zeros(4)), kp, {"a": bytes(32)}, me="a", session="s", round=0)


@pytest.mark.req("SRS-SEC-002")
def test_mask_skips_self_and_keeps_shape() -> None:
    kp = KeyPair.generate()
    values = encode(np.ones((2, 3)))
    assert mask(values, kp, {"solo": kp.public_bytes()}, me="solo", session="s", round=1) == values


# ------------------------------------------------------------------ uniformity
def _looks_uniform(r: Ring) -> bool:
    raw = np.frombuffer(to_bytes(r), dtype=np.uint8)
    counts = np.bincount(raw, minlength=256)
    if chisquare(counts).pvalue <= 1e-6:
        return False
    bits = np.unpackbits(raw.reshape(-1, 16), axis=1, bitorder="little")  # 128 bit positions per element
    n = bits.shape[0]
    return bool(np.all(np.abs(bits.sum(axis=0) - n / 2) <= 5 * math.sqrt(n / 4)))


@pytest.mark.req("SRS-SEC-003")
def test_masked_payload_looks_uniform() -> None:
    rng = np.random.default_rng(5)
    n = 20_000
    keys = {s: _keypair(rng) for s in ("site-a", "site-b", "site-c")}
    peers = {s: kp.public_bytes() for s, kp in keys.items()}
    statistic = np.cumsum(np.exp(rng.normal(size=n)))  # smooth, positive, increasing: very non-uniform
    for plain in (np.zeros(n), statistic):
        enc = encode(plain)
        assert not _looks_uniform(enc)  # the test can fail
        masked = mask(enc, keys["site-b"], peers, me="site-b", session="study-1", round=0)
        assert _looks_uniform(masked)
