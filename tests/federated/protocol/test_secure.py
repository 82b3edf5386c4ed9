"""Secure aggregation in the engine: exact, masked on the wire, and checked on receipt."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from federated import CohortSpec, Coordinator, InProcessTransport, Site, fit_cox, fit_km
from federated.protocol import secagg
from federated.protocol.messages import KeysRequest, PrepareRequest, SecureRound, decode_reply, encode
from tests.conftest import GBSG2_COVARIATES, PERMISSIVE_FLOORS, approve, fed_cox, fed_km, split_frame

COHORT = CohortSpec(time="time", event="event", covariates=GBSG2_COVARIATES)


@pytest.mark.req("SRS-SEC-003")
@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("n_sites", [2, 4, 6])
def test_secure_fit_equals_plaintext_fit(gbsg2: pd.DataFrame, ties: str, n_sites: int) -> None:
    parts = split_frame(gbsg2, n_sites, seed=n_sites)
    secure = fed_cox(parts, COHORT, ties=ties, secure=True)
    plain = fed_cox(parts, COHORT, ties=ties, secure=False)
    assert secure.secure and not plain.secure
    assert np.max(np.abs(secure.coef - plain.coef)) <= 1e-8
    assert np.max(np.abs(secure.se / plain.se - 1)) <= 1e-8
    h_secure, h_plain = secure.baselines[0].cumulative_hazard, plain.baselines[0].cumulative_hazard
    assert np.max(np.abs(h_secure - h_plain)) <= 1e-10


@pytest.mark.req("SRS-SEC-003")
def test_secure_km_equals_plaintext_km(gbsg2_raw: pd.DataFrame) -> None:
    parts = split_frame(gbsg2_raw, 4, seed=0)
    cohort = CohortSpec(time="time", event="event", partition="tgrade", levels=("1", "2", "3"))
    secure = fed_km(parts, cohort, secure=True).to_dict()
    plain = fed_km(parts, cohort, secure=False).to_dict()
    assert secure.pop("secure_aggregation") is True and plain.pop("secure_aggregation") is False
    assert secure == plain


def _sites(parts: list[pd.DataFrame]) -> list[Site]:
    """One site per part, ``h0``, ``h1``, …, with the maths tests' floors (rules tested elsewhere)."""
    return [Site(f"h{i}", p, floors=PERMISSIVE_FLOORS) for i, p in enumerate(parts)]


class _Tap:
    """A transport that keeps a copy of every reply the coordinator receives."""

    def __init__(self, inner: InProcessTransport) -> None:
        self.inner = inner
        self.seen: list[tuple[str, bytes]] = []

    @property
    def sites(self) -> list[str]:
        return self.inner.sites

    def exchange(self, payloads: dict[str, bytes], timeout: float) -> dict[str, bytes]:
        out = self.inner.exchange(payloads, timeout)
        self.seen += list(out.items())
        return out


@pytest.mark.req("SRS-SEC-003", "RC-PRIV-002")
def test_what_the_coordinator_receives_from_one_site_looks_uniform(gbsg2: pd.DataFrame) -> None:
    """Every summed statistic arrives masked: its bytes pass a uniformity test, although the
    underlying values (sums of exp(β·x), counts, Σx²) are anything but uniform."""
    parts = split_frame(gbsg2, 3, seed=1)
    sites = _sites(parts)
    tap = _Tap(InProcessTransport(sites))
    fit = fit_cox(Coordinator(tap, session="tap", protocol=approve(sites, [COHORT])), COHORT)
    one_site = b""
    for site, raw in tap.seen:
        reply = decode_reply(raw)
        if site != "h0":
            continue
        for name in reply.SUMMED:  # type: ignore[union-attr]
            wire = getattr(reply, name)
            if wire is not None:
                assert wire.masked, f"{reply.kind}.{name} arrived unmasked"
                one_site += secagg.to_bytes(wire.ring())
    assert len(one_site) > 1_000_000
    counts = np.bincount(np.frombuffer(one_site, dtype=np.uint8), minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-6
    bits = np.unpackbits(np.frombuffer(one_site, dtype=np.uint8)).mean()
    assert abs(bits - 0.5) < 5 * 0.5 / np.sqrt(8 * len(one_site))
    assert fit.converged  # … and the sums were right (exactness checked above)


class _Unmasking(Site):
    """A site that 'forgets' to mask: sends its plaintext statistics in a secure round."""

    def _secure(self, req, protocol, reply, digest):  # type: ignore[no-untyped-def]
        masked = super()._secure(req, protocol, reply, digest)
        return masked.model_copy(update={name: getattr(reply, name) for name in reply.SUMMED})


@pytest.mark.req("SRS-SEC-003", "SRS-FED-009", "RC-FED-001")
def test_an_unmasked_reply_in_a_secure_round_is_refused_and_the_site_dropped(gbsg2: pd.DataFrame) -> None:
    parts = split_frame(gbsg2, 4, seed=2)
    sites = _sites(parts[:3]) + [_Unmasking("leaky", parts[3], floors=PERMISSIVE_FLOORS)]
    protocol = approve(sites, [COHORT])
    fit = fit_cox(Coordinator(InProcessTransport(sites), session="s", protocol=protocol), COHORT)
    assert fit.dropped == {"leaky": "unmasked statistics in a secure round"}
    assert fit.sites == ("h0", "h1", "h2")
    ref = fed_cox(parts[:3], COHORT)
    assert np.max(np.abs(fit.coef - ref.coef)) <= 1e-10


@pytest.mark.req("SRS-SEC-002")
def test_keys_are_fresh_every_round(gbsg2: pd.DataFrame) -> None:
    parts = split_frame(gbsg2, 3, seed=3)
    sites = _sites(parts)
    cohort = CohortSpec(time="time", event="event")
    tap = _Tap(InProcessTransport(sites))
    fit_km(Coordinator(tap, session="k", protocol=approve(sites, [cohort])), cohort)
    keys = [decode_reply(raw).next_key for site, raw in tap.seen if site == "h0"]
    assert len(keys) == 3 and len(set(keys)) == 3


@pytest.mark.req("SRS-SEC-001", "SRS-PRIV-003", "RC-FED-002")
@pytest.mark.parametrize("secure_study", [False, True])
def test_statistic_too_large_for_the_ring_is_an_overflow_not_a_wrap(secure_study: bool) -> None:
    """A masked round whose statistic does not fit the ring is refused, never wrapped. The site's own
    wording (a study approved in plaintext, run masked) quotes no value; in a secure study the
    message is also scrubbed of every number."""
    site = Site("a", pd.DataFrame({"t": [1.0, 2.0], "e": [1, 1], "x": [3e15, -3e15]}),
                floors=PERMISSIVE_FLOORS)
    other = Site("b", pd.DataFrame({"t": [1.0], "e": [1], "x": [0.0]}), floors=PERMISSIVE_FLOORS)
    cohort = CohortSpec(time="t", event="e", covariates=("x",))
    study = approve([site, other], [cohort], secure=secure_study).sha256
    peers = {s.name: decode_reply(s.handle(encode(KeysRequest(session="s", round=0, study=study)))).next_key
             for s in (site, other)}
    reply = decode_reply(site.handle(encode(PrepareRequest(
        session="s", round=1, study=study, cohort=cohort, secure=SecureRound(peers=peers)))))  # type: ignore[arg-type]
    assert reply.kind == "error" and reply.code == "overflow", reply  # type: ignore[union-attr]
    assert "beyond the secure-aggregation range" in reply.message  # type: ignore[union-attr]
    assert "3e+15" not in reply.message and "9e+30" not in reply.message  # type: ignore[union-attr]
    if secure_study:
        assert not any(ch.isdigit() for ch in reply.message), reply.message  # type: ignore[union-attr]
