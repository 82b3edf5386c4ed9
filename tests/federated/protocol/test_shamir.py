"""Shamir secret sharing and Bonawitz et al. 2017 double masking: sharing, encodings, dropout recovery."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from federated.protocol import secagg
from federated.protocol.shamir import (
    MAX_HOLDERS,
    PRIME,
    SHARE_BYTES,
    Share,
    adds_pair_mask,
    combine,
    double_mask,
    self_mask,
    split,
    unmask_sum,
    x_coordinates,
)

SECRET = bytes(range(32))
CTX = b"session-1|round-7"


def _rng(seed: int) -> Callable[[int], bytes]:
    """A reproducible byte source with the signature of ``os.urandom``."""
    gen = random.Random(seed)
    return gen.randbytes


def _holders(n: int) -> list[str]:
    return [f"site-{i:02d}" for i in range(n)]


def _lagrange(points: list[tuple[int, int]], at: int) -> int:
    """Independent reference interpolation in GF(PRIME)."""
    total = 0
    for i, (xi, yi) in enumerate(points):
        num = den = 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                num, den = num * (at - xj) % PRIME, den * (xi - xj) % PRIME
        total = (total + yi * num * pow(den, PRIME - 2, PRIME)) % PRIME
    return total


def _random_ring(rng: np.random.Generator, n: int) -> secagg.Ring:
    return secagg.Ring(lo=rng.integers(0, 2**64, n, dtype=np.uint64),
                       hi=rng.integers(0, 2**64, n, dtype=np.uint64))


# ------------------------------------------------------------------ sharing
@pytest.mark.req("SRS-SEC-005")
@pytest.mark.parametrize(("t", "n"), [(1, 1), (1, 4), (2, 2), (2, 3), (3, 3), (3, 5), (5, 5), (4, 9)])
def test_round_trip(t: int, n: int) -> None:
    shares = split(SECRET, threshold=t, holders=_holders(n), rng=_rng(t * 100 + n))
    assert len(shares) == n
    assert combine(list(shares.values()), threshold=t) == SECRET
    assert combine(list(shares.values())[-t:], threshold=t) == SECRET


@pytest.mark.req("SRS-SEC-005")
@settings(max_examples=25, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32), n=st.integers(1, 8), data=st.data())
def test_round_trip_property(secret: bytes, n: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(1, n))
    shares = list(split(secret, threshold=t, holders=_holders(n)).values())
    subset = data.draw(st.permutations(shares))[:t]
    assert combine(subset, threshold=t) == secret


@pytest.mark.req("SRS-SEC-005")
def test_any_t_of_n_reconstruct_and_extras_must_agree() -> None:
    shares = list(split(SECRET, threshold=3, holders=_holders(5), rng=_rng(1)).values())
    for k in (3, 4, 5):
        for subset in itertools.combinations(shares, k):
            assert combine(list(subset), threshold=3) == SECRET
            assert combine(list(reversed(subset)), threshold=3) == SECRET


@pytest.mark.req("SRS-SEC-005")
@pytest.mark.parametrize("t", [2, 3, 5])
def test_fewer_than_threshold_shares_do_not_give_the_secret(t: int) -> None:
    shares = list(split(SECRET, threshold=t, holders=_holders(t + 1), rng=_rng(t)).values())
    with pytest.raises(ValueError, match=f"got {t - 1} shares, need at least threshold {t}"):
        combine(shares[: t - 1], threshold=t)
    # interpolating t-1 points as if they were enough gives a random field element, not the secret
    assert _lagrange([(s.x, s.y) for s in shares[: t - 1]], 0) != int.from_bytes(SECRET, "big")
    with pytest.raises(ValueError, match="32-byte secret"):
        combine(shares[: t - 1], threshold=t - 1)


@pytest.mark.req("SRS-SEC-005")
@pytest.mark.parametrize("t", [2, 3, 5])
def test_t_minus_1_shares_are_consistent_with_every_secret(t: int) -> None:
    """Perfect secrecy: t-1 fixed shares can be completed to a sharing of ANY candidate secret."""
    n = t + 2
    shares = list(split(SECRET, threshold=t, holders=_holders(n), rng=_rng(10 + t)).values())
    known = shares[: t - 1]
    free_x = shares[-1].x  # an x the adversary does not hold
    for candidate in (SECRET, bytes(32), b"\xff" * 32, bytes(reversed(SECRET))):
        pts = [(0, int.from_bytes(candidate, "big"))] + [(s.x, s.y) for s in known]
        completion = Share(x=free_x, y=_lagrange(pts, free_x))
        assert combine([*known, completion], threshold=t) == candidate


@pytest.mark.req("SRS-SEC-005")
def test_tampered_share_gives_wrong_secret_or_error() -> None:
    shares = list(split(SECRET, threshold=3, holders=_holders(5), rng=_rng(2)).values())
    # Shamir shares are not authenticated: y + 1 at x=1 shifts the secret by L_1(0) = 3 (x = 1, 2, 3)
    bad = Share(x=shares[0].x, y=(shares[0].y + 1) % PRIME)
    wrong = combine([bad, *shares[1:3]], threshold=3)
    assert int.from_bytes(wrong, "big") == int.from_bytes(SECRET, "big") + 3
    garbled = Share(x=shares[0].x, y=int.from_bytes(_rng(99)(66), "big") % PRIME)
    with pytest.raises(ValueError, match="32-byte secret"):  # a random y: result ~uniform mod p
        combine([garbled, *shares[1:3]], threshold=3)
    moved = Share(x=5, y=shares[0].y)  # right y, wrong x (x=5 is not among shares[1:3])
    try:
        assert combine([moved, *shares[1:3]], threshold=3) != SECRET
    except ValueError:
        pass
    with pytest.raises(ValueError, match="share x=1 is inconsistent"):  # an extra share is checked
        combine([*shares[1:4], bad], threshold=3)
    with pytest.raises(ValueError, match=r"repeat an x-coordinate: \[2\]"):
        combine([shares[1], shares[1], shares[2]], threshold=3)


@pytest.mark.req("SRS-SEC-005")
def test_shares_of_another_sharing_do_not_mix() -> None:
    a = list(split(SECRET, threshold=2, holders=_holders(3), rng=_rng(3)).values())
    b = list(split(SECRET, threshold=2, holders=_holders(3), rng=_rng(4)).values())
    assert a != b  # fresh coefficients per sharing
    with pytest.raises(ValueError):
        combine([a[0], b[1]], threshold=2)


# ------------------------------------------------------------------ x-coordinates and arguments
@pytest.mark.req("SRS-SEC-005")
def test_x_coordinates_follow_sorted_holder_names() -> None:
    assert x_coordinates(["c", "a", "b"]) == {"a": 1, "b": 2, "c": 3}
    one = split(SECRET, threshold=2, holders=["c", "a", "b"], rng=_rng(5))
    two = split(SECRET, threshold=2, holders=["b", "c", "a"], rng=_rng(6))
    assert {h: s.x for h, s in one.items()} == {h: s.x for h, s in two.items()} == {"a": 1, "b": 2, "c": 3}
    assert split(SECRET, threshold=2, holders=["c", "a", "b"], rng=_rng(5)) == one  # same rng, same shares


@pytest.mark.req("SRS-SEC-005")
def test_split_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="exactly 32 bytes, got 31 bytes"):
        split(SECRET[:31], threshold=1, holders=["a"])
    with pytest.raises(ValueError, match="exactly 32 bytes, got 33 bytes"):
        split(SECRET + b"\x00", threshold=1, holders=["a"])
    with pytest.raises(ValueError, match="threshold must be an int >= 1"):
        split(SECRET, threshold=0, holders=["a", "b"])
    with pytest.raises(ValueError, match="threshold 3 exceeds the number of holders 2"):
        split(SECRET, threshold=3, holders=["a", "b"])
    with pytest.raises(ValueError, match=r"unique, repeated: \['a'\]"):
        split(SECRET, threshold=1, holders=["a", "b", "a"])
    with pytest.raises(ValueError, match="at least one"):
        split(SECRET, threshold=1, holders=[])
    with pytest.raises(ValueError, match=f"at most {MAX_HOLDERS} share holders, got {MAX_HOLDERS + 1}"):
        split(SECRET, threshold=1, holders=[str(i) for i in range(MAX_HOLDERS + 1)])
    with pytest.raises(ValueError, match="rng's output must be exactly 66 bytes, got 10 bytes"):
        split(SECRET, threshold=2, holders=["a", "b"], rng=lambda k: bytes(10))
    with pytest.raises(ValueError, match="threshold must be an int >= 1"):
        combine([], threshold=0)


@pytest.mark.req("SRS-SEC-005")
def test_coefficients_by_rejection_sampling() -> None:
    draws: list[int] = []

    def rng(k: int) -> bytes:
        draws.append(k)
        return b"\xff" * k if len(draws) == 1 else bytes(k - 1) + b"\x07"  # p itself, then 7

    shares = split(SECRET, threshold=2, holders=["a", "b"], rng=rng)
    assert draws == [66, 66]  # the out-of-range candidate (== p) was drawn again
    s = int.from_bytes(SECRET, "big")
    assert [shares["a"].y, shares["b"].y] == [s + 7, s + 14]
    with pytest.raises(ValueError, match="not random"):
        split(SECRET, threshold=2, holders=["a", "b"], rng=lambda k: b"\xff" * k)


# ------------------------------------------------------------------ encodings
@pytest.mark.req("SRS-SEC-005")
def test_share_encoding_round_trip_and_refusals() -> None:
    for share in split(SECRET, threshold=3, holders=_holders(4), rng=_rng(7)).values():
        raw = share.to_bytes()
        assert len(raw) == SHARE_BYTES == 68
        assert Share.from_bytes(raw) == share
        assert Share.from_bytes(bytearray(raw)) == share
    edge = Share(x=MAX_HOLDERS, y=PRIME - 1)
    assert Share.from_bytes(edge.to_bytes()) == edge
    for bad_len in (0, 67, 69, 2 + 32):
        with pytest.raises(ValueError, match=f"encoded share must be exactly 68 bytes, got {bad_len} bytes"):
            Share.from_bytes(bytes(bad_len))
    with pytest.raises(ValueError, match="share x must be in 1..65535, got 0"):
        Share.from_bytes(bytes(68))
    with pytest.raises(ValueError, match="field element"):
        Share.from_bytes(b"\x00\x01" + PRIME.to_bytes(66, "big"))
    with pytest.raises(ValueError, match="got str"):
        Share.from_bytes("00" * 34)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Share(x=True, y=1)
    with pytest.raises(ValueError):
        Share(x=1, y=-1)
    assert "y=" not in repr(Share(x=1, y=12345))  # the secret part stays out of logs


# ------------------------------------------------------------------ masks
@pytest.mark.req("SRS-SEC-005")
def test_self_mask_is_the_specified_hkdf_chacha20_stream() -> None:
    seed = bytes(range(100, 132))
    m = self_mask(seed, n_elements=5, context=CTX)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"fedprog/secagg/v1|self|" + CTX).derive(seed)
    stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(bytes(80))
    assert m == secagg.from_bytes(stream, (5,))
    assert self_mask(seed, n_elements=5, context=CTX) == m
    assert self_mask(seed, n_elements=5, context=CTX + b"x") != m
    assert self_mask(bytes(32), n_elements=5, context=CTX) != m
    assert self_mask(seed, n_elements=8, context=CTX).lo[:5].tolist() == m.lo.tolist()
    assert self_mask(seed, n_elements=0, context=CTX).shape == (0,)
    with pytest.raises(ValueError, match="seed must be exactly 32 bytes, got 16 bytes"):
        self_mask(bytes(16), n_elements=3, context=CTX)
    with pytest.raises(ValueError, match="n_elements"):
        self_mask(seed, n_elements=-1, context=CTX)


@pytest.mark.req("SRS-SEC-005")
def test_double_mask_cancels_when_nobody_drops() -> None:
    rng = np.random.default_rng(8)
    names = ["a", "b", "c"]
    x = {u: rng.normal(size=(2, 3)) for u in names}
    pair = {frozenset(p): _random_ring(rng, 6) for p in itertools.combinations(names, 2)}
    seeds = {u: rng.bytes(32) for u in names}
    y = {u: double_mask(secagg.encode(x[u]), self_seed=seeds[u], context=CTX,
                        pairwise=[(pair[frozenset((u, v))], adds_pair_mask(u, v)) for v in names if v != u])
         for u in names}
    assert all(y[u].shape == (2, 3) for u in names)
    total = secagg.ring_sum(list(y.values()))
    with pytest.raises(secagg.SecAggOverflow):
        secagg.decode(total, n_terms=3)
    out = unmask_sum(total, self_seeds=list(seeds.values()), dropped_pairwise=[], context=CTX)
    np.testing.assert_allclose(secagg.decode(out, n_terms=3), sum(x.values()), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="want 6 elements"):
        double_mask(secagg.encode(x["a"]), self_seed=seeds["a"], context=CTX,
                    pairwise=[(_random_ring(rng, 5), True)])


@pytest.mark.req("SRS-SEC-005")
@pytest.mark.parametrize("dropped", ["a", "b", "c"])
def test_docstring_worked_example(dropped: str) -> None:
    """The sign convention of :func:`unmask_sum`, whichever of a < b < c drops."""
    rng = np.random.default_rng(9)
    names = ["a", "b", "c"]
    x = {u: secagg.encode(rng.normal(size=4)) for u in names}
    pair = {frozenset(p): _random_ring(rng, 4) for p in itertools.combinations(names, 2)}
    seeds = {u: rng.bytes(32) for u in names}
    survivors = [u for u in names if u != dropped]
    y = [double_mask(x[u], self_seed=seeds[u], context=CTX,
                     pairwise=[(pair[frozenset((u, v))], adds_pair_mask(u, v)) for v in names if v != u])
         for u in survivors]
    dangling = [(pair[frozenset((u, dropped))], adds_pair_mask(u, dropped)) for u in survivors]
    out = unmask_sum(secagg.ring_add(*y), self_seeds=[seeds[u] for u in survivors],
                     dropped_pairwise=dangling, context=CTX)
    assert out == secagg.ring_add(x[survivors[0]], x[survivors[1]])
    assert adds_pair_mask("a", "c") and not adds_pair_mask("c", "a")
    with pytest.raises(ValueError):
        adds_pair_mask("a", "a")


@pytest.mark.req("SRS-SEC-005")
def test_dropout_recovery_simulation() -> None:
    """Four sites double-mask; d drops after the keys are agreed; t=3 survivors' shares recover the sum."""
    session, rnd, t = "study-42", 3, 3
    ctx = f"{session}|{rnd}".encode()
    names = ["a", "b", "c", "d"]
    values = {"a": np.array([1.5, -2.25, 1e6, 3.0e-7]), "b": np.array([0.125, 4.0, -7.5e5, 1.0]),
              "c": np.array([-3.0, 0.5, 12.0, -2.0]), "d": np.array([100.0, 200.0, 300.0, 400.0])}
    n = 4
    keys = {u: secagg.KeyPair.generate() for u in names}
    public = {u: keys[u].public_bytes() for u in names}
    seeds = {u: np.random.default_rng(ord(u)).bytes(32) for u in names}

    # round setup: every site shares its self seed and its private key with all sites (itself included)
    held: dict[str, dict[str, dict[str, bytes]]] = {h: {"seed": {}, "key": {}} for h in names}
    for u in names:
        raw_key = keys[u].private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        for kind, secret in (("seed", seeds[u]), ("key", raw_key)):
            for holder, share in split(secret, threshold=t, holders=names).items():
                held[holder][kind][u] = share.to_bytes()  # what travels (encrypted, in a real protocol)

    def masks(u: str) -> list[tuple[secagg.Ring, bool]]:
        return [(secagg.pair_mask(keys[u].private, public[v], session=session, round=rnd, me=u, peer=v,
                                  n_elements=n), adds_pair_mask(u, v)) for v in names if v != u]

    masked = {u: double_mask(secagg.encode(values[u]), self_seed=seeds[u], pairwise=masks(u), context=ctx)
              for u in names}
    survivors = ["a", "b", "c"]  # d's masked vector never arrives
    total = secagg.ring_sum([masked[u] for u in survivors])
    with pytest.raises(secagg.SecAggOverflow):
        secagg.decode(total, n_terms=3)

    # recovery: survivors reveal shares of d's key and of survivors' seeds (never both for one site)
    d_raw = combine([Share.from_bytes(held[h]["key"]["d"]) for h in survivors], threshold=t)
    d_key = X25519PrivateKey.from_private_bytes(d_raw)
    assert secagg.KeyPair(private=d_key).public_bytes() == public["d"]
    rebuilt_seeds = [combine([Share.from_bytes(held[h]["seed"][u]) for h in survivors], threshold=t)
                     for u in survivors]
    assert rebuilt_seeds == [seeds[u] for u in survivors]
    dangling = [(secagg.pair_mask(d_key, public[u], session=session, round=rnd, me="d", peer=u, n_elements=n),
                 adds_pair_mask(u, "d")) for u in survivors]
    out = unmask_sum(total, self_seeds=rebuilt_seeds, dropped_pairwise=dangling, context=ctx)
    expected = values["a"] + values["b"] + values["c"]
    np.testing.assert_allclose(secagg.decode(out, n_terms=3), expected, rtol=0, atol=1e-12)

    # either half alone leaves the sum masked
    for partial in ({"self_seeds": rebuilt_seeds, "dropped_pairwise": []},
                    {"self_seeds": [], "dropped_pairwise": dangling}):
        with pytest.raises(secagg.SecAggOverflow):
            secagg.decode(unmask_sum(total, context=ctx, **partial), n_terms=3)
    # two shares are not enough for d's key
    with pytest.raises(ValueError, match="need at least threshold 3"):
        combine([Share.from_bytes(held[h]["key"]["d"]) for h in survivors[:2]], threshold=t)
