"""Differentially private Cox by noisy Newton: the maths without noise, the sensitivity bounds, the
sites' refusals and the accountant, and the utility on a large synthetic cohort.

The noise-free checks compare the sites' own sums, combined by the coordinator's Newton iteration,
with an independent pooled fit: a Poisson GLM with offset log(exposure) on person-interval rows built
here from the raw table (statsmodels is not installed; the GLM is fitted by its own Newton loop)."""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federated import CohortSpec, Coordinator, InProcessTransport
from federated import pwe_math as pwe
from federated.analyses.dp_cox import fit_dp_cox, noisy_newton
from federated.demo_study import DEMO_INPUTS
from federated.disclosure import dp_cox
from federated.disclosure.dp import DPSettings
from federated.exceptions import DataError, SiteError
from federated.protocol.arrays import WireArray
from federated.protocol.messages import (
    ErrorReply,
    KeysRequest,
    PweEventsRequest,
    PweRoundRequest,
    SecureRound,
    decode_reply,
    encode,
)
from federated.site.data import prepare_cohort
from federated.site.handler import Site
from federated.site.statistics import SiteSession
from tests.conftest import PERMISSIVE, PERMISSIVE_FLOORS, approve, make_sites, split_frame

COX = CohortSpec(time="time", event="event", covariates=tuple(DEMO_INPUTS), time_grid="year",
                 max_time=1826.25, ranges={n: (s.min, s.max) for n, s in DEMO_INPUTS.items()},
                 reference={n: s.reference_value() for n, s in DEMO_INPUTS.items()})
K = COX.n_bins() - 1
P = len(COX.covariates)


def _sessions(parts: list[pd.DataFrame]) -> list[SiteSession]:
    """Each part's site session after its pwe-events request (the sites' own code, no protocol)."""
    out = []
    for i, part in enumerate(parts):
        sess = SiteSession(cohort=prepare_cohort(part, COX, f"s{i}", "test"), spec=COX)
        sess.pwe_events(PweEventsRequest(session="s", round=0, study="0" * 64, cohort=COX), bound=math.inf)
        out.append(sess)
    return out


def _pooled_glm(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(β̃, a) of the Poisson GLM on person-interval rows: y_ik ~ Poisson(exp(a_k + β̃·x̃_i + log e_ik)),
    the rows and the standardisation built here from the table (times in days, exposure in years)."""
    ref, lo, hi = COX.reference_point(), *np.array(list(COX.ranges.values())).T
    x = np.clip(table[list(COX.covariates)].to_numpy(float), lo, hi)
    xt = (x - ref) / np.maximum(hi - ref, ref - lo)
    time = np.minimum(table["time"].to_numpy(float), COX.max_time)
    event = (table["event"].to_numpy() == 1) & (table["time"].to_numpy(float) <= COX.max_time)
    w = COX.bin_width()
    rows, y, off, which = [], [], [], []
    for i in range(len(table)):
        for k in range(K):
            start, end = k * w, (k + 1) * w
            if time[i] <= start:
                break
            rows.append(xt[i])
            which.append(k)
            off.append(math.log((min(time[i], end) - start) / 365.25))
            y.append(float(event[i] and time[i] <= end))
    dummies = np.eye(K)[which]
    design = np.column_stack([dummies, np.array(rows)])
    y_, off_ = np.array(y), np.array(off)
    theta = np.zeros(design.shape[1])
    for _ in range(50):
        mu = np.exp(design @ theta + off_)
        step = np.linalg.solve(design.T @ (design * mu[:, None]), design.T @ (y_ - mu))
        theta += step
        if np.max(np.abs(step)) < 1e-13:
            break
    return theta[K:], theta[:K]


@pytest.mark.req("SRS-PRIV-023")
def test_the_site_sums_reproduce_the_pooled_piecewise_exponential_mle(gbsg2: pd.DataFrame) -> None:
    sessions = _sessions(split_frame(gbsg2, 3, seed=0))
    events = sum(pwe.event_sums(s.pwe[1], s.pwe[2], K) for s in sessions if s.pwe is not None)
    assert events[0] == len(gbsg2)

    def evaluate(beta: np.ndarray) -> np.ndarray:
        req = PweRoundRequest(session="s", round=1, study="0" * 64, beta=WireArray.from_numpy(beta))
        return sum(s.pwe_round(req).sums.to_numpy() for s in sessions)  # type: ignore[return-value]

    path = noisy_newton(events[1:K + 1], events[K + 1:], evaluate, iterations=30, bound=math.inf,
                        sd_round=0.0)
    beta, log_lambda = _pooled_glm(gbsg2)
    assert np.max(np.abs(path.beta - beta)) < 1e-6
    # the coordinator's a_k is per interval (one year here): e^{a_k} = λ_k · w, w = 1826.25 / 5 days
    assert np.max(np.abs(path.log_hazard - (log_lambda + math.log(COX.bin_width() / 365.25)))) < 1e-6
    assert path.last_step < 1e-10 and np.linalg.eigvalsh(path.information).min() > 1.0  # floor unused


@pytest.mark.req("SRS-PRIV-023")
def test_the_sensitivity_bounds_hold_and_are_reached() -> None:
    """One patient's coordinates after coupled rounding differ by ⌈γ|v|⌉: at x̃ = ±1, t = K w and
    β̃ with Σ|β̃| = b aligned with x̃, the bounds of :func:`dp_cox.sensitivities` are met exactly."""
    b, p, k = 3.0, 3, 5
    xt = np.array([[1.0, -1.0, 1.0]])
    beta = b / p * np.sign(xt[0])
    e, idx = pwe.exposure(np.array([5.0]), np.array([1]), 1.0, k)
    v = pwe.round_sums(e, xt, beta).ravel()
    top = np.ceil(dp_cox.SCALE * np.abs(v))
    l1, l2 = dp_cox.sensitivities(dp_cox.ROUND, b, k, p)
    assert top.sum() == pytest.approx(l1) and math.sqrt(np.sum(top ** 2)) == pytest.approx(l2)
    ev = np.ceil(dp_cox.SCALE * np.abs(pwe.event_sums(idx, xt, k)))
    l1, l2 = dp_cox.sensitivities(dp_cox.EVENTS, b, k, p)
    assert ev.sum() == l1 and math.sqrt(np.sum(ev ** 2)) == pytest.approx(l2)
    l1, l2 = dp_cox.sensitivities(dp_cox.ROUND, b, k, p)
    rng = np.random.default_rng(3)  # any other patient, time and bounded β̃ stays within them
    for _ in range(200):
        x = rng.uniform(-1, 1, (1, p))
        bt = rng.uniform(-1, 1, p)
        bt *= b / np.abs(bt).sum()
        e, _ = pwe.exposure(rng.uniform(0, k + 1, 1), np.array([1]), 1.0, k)
        top = np.ceil(dp_cox.SCALE * np.abs(pwe.round_sums(e, x, bt).ravel()))
        assert top.sum() <= l1 and math.sqrt(np.sum(top ** 2)) <= l2


@pytest.mark.req("SRS-PRIV-023")
def test_randomised_rounding_is_unbiased_and_integer() -> None:
    rng = np.random.default_rng(5)
    values = np.full(20_000, 0.3 / dp_cox.SCALE)
    q = dp_cox.quantise(values, rng)
    assert q.dtype == np.int64 and set(np.unique(q)) == {0, 1}
    assert abs(q.mean() - 0.3) < 4 * math.sqrt(0.21 / q.size)
    with pytest.raises(ValueError, match="too large"):
        dp_cox.quantise(np.array([2.0 ** 50]), rng)


def _secure(sites: list[Site], study: str) -> SecureRound:
    keys = {s.name: decode_reply(s.handle(encode(KeysRequest(session="c", round=0, study=study)))).next_key
            for s in sites}
    return SecureRound(peers=keys)  # type: ignore[arg-type]


@pytest.mark.req("SRS-PRIV-023")
def test_a_site_refuses_beta_beyond_the_bound_and_charges_nothing(gbsg2: pd.DataFrame) -> None:
    sites = make_sites(split_frame(gbsg2, 2, seed=0), PERMISSIVE_FLOORS)
    protocol = approve(sites, [COX], PERMISSIVE, dp=DPSettings(enabled=True, cox_bound=2.0))
    secure = _secure(sites, protocol.sha256)
    first = [decode_reply(s.handle(encode(PweEventsRequest(session="c", round=1, study=protocol.sha256,
                                                           cohort=COX, secure=secure)))) for s in sites]
    assert not any(isinstance(r, ErrorReply) for r in first)
    spent = len(sites[0]._privacy.releases)
    assert spent == 1 and sites[0]._privacy.releases[0]["kind"] == "pwe-events"
    beta = np.zeros(P)
    beta[0], beta[3] = 1.5, -0.6  # Σ|β̃| = 2.1 > 2
    secure = SecureRound(peers={s.name: r.next_key for s, r in zip(sites, first, strict=True)})  # type: ignore[misc]
    reply = decode_reply(sites[0].handle(encode(PweRoundRequest(session="c", round=2, study=protocol.sha256,
                                                                beta=WireArray.from_numpy(beta),
                                                                secure=secure))))
    assert isinstance(reply, ErrorReply) and reply.code == "bound"
    assert len(sites[0]._privacy.releases) == spent


@pytest.mark.req("SRS-PRIV-023")
def test_pwe_requests_need_a_private_study_and_bounded_inputs(gbsg2: pd.DataFrame) -> None:
    sites = make_sites(split_frame(gbsg2, 2, seed=0), PERMISSIVE_FLOORS)
    unranged = COX.model_copy(update={"ranges": {k: v for k, v in COX.ranges.items() if k != "age"}})
    plain = approve(sites, [COX])
    private = approve(sites, [COX, unranged], PERMISSIVE, dp=DPSettings(enabled=True))
    for protocol, cohort, text in ((plain, COX, "only in a differentially private study"),
                                   (private, unranged, "declared range for every input")):
        secure = _secure(sites, protocol.sha256)
        ask = PweEventsRequest(session="c", round=1, study=protocol.sha256, cohort=cohort, secure=secure)
        reply = decode_reply(sites[0].handle(encode(ask)))
        assert isinstance(reply, ErrorReply) and reply.code == "not-approved" and text in reply.message


@pytest.mark.req("SRS-PRIV-023")
@pytest.mark.req("SRS-PRIV-017")
def test_the_accountant_charges_every_release_and_refuses_when_spent(gbsg2: pd.DataFrame,
                                                                     tmp_path: Path) -> None:
    """A site budget of ε = 1.3 at δ = 1e-6 holds one fit at ε = 1 (1 + T releases, each charged
    before its reply leaves) and not two: the second fit is refused (``budget``). At ε = 1 the noise
    may hide this small cohort's exposure (a DataError after the last release): the releases count."""
    parts = split_frame(gbsg2, 2, seed=0)
    floors = PERMISSIVE_FLOORS.model_copy(update={"dp_epsilon": 1.3, "dp_delta": 1e-6})
    sites = [Site(f"h{i}", part, floors=floors, privacy=tmp_path / f"h{i}" / "privacy.json")
             for i, part in enumerate(parts)]
    dp = DPSettings(enabled=True, epsilon=1.0, cox_bound=3.0)
    protocol = approve(sites, [COX], PERMISSIVE, dp=dp)
    with contextlib.suppress(DataError):
        fit_dp_cox(Coordinator(InProcessTransport(sites), session="one", protocol=protocol), COX)
    kinds = [r["kind"] for r in sites[0]._privacy.releases]
    assert kinds == ["pwe-events"] + ["pwe-round"] * dp.cox_iterations
    assert sites[0]._privacy.spent(1e-6) == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(SiteError) as info:
        fit_dp_cox(Coordinator(InProcessTransport(sites), session="two", protocol=protocol), COX)
    assert info.value.code == "budget"
    assert 1.0 < sites[0]._privacy.spent(1e-6) <= 1.3 * (1 + 1e-9)  # RDP composes sublinearly


@pytest.mark.req("SRS-PRIV-023")
def test_with_negligible_noise_the_protocol_gives_the_pooled_mle(gbsg2: pd.DataFrame) -> None:
    """Through sites, masking and the coordinator at ε = 1e12: only the rounding to 1/256 and tiny
    noise remain."""
    rich = PERMISSIVE_FLOORS.model_copy(update={"dp_epsilon": 1e15})
    sites = make_sites(split_frame(gbsg2, 3, seed=0), rich)
    protocol = approve(sites, [COX], PERMISSIVE, dp=DPSettings(enabled=True, epsilon=1e12, cox_iterations=12,
                                                              cox_bound=5.0))
    fit = fit_dp_cox(Coordinator(InProcessTransport(sites), session="free", protocol=protocol), COX)
    beta, _ = _pooled_glm(gbsg2)
    ref, lo, hi = COX.reference_point(), *np.array(list(COX.ranges.values())).T
    scale = np.maximum(hi - ref, ref - lo)
    assert np.max(np.abs(fit.coef * scale - beta)) < 2e-3
    assert fit.n == len(gbsg2) and fit.converged and fit.time_grid == "year"
    assert np.all(np.diff(fit.baselines[0].cumulative_hazard) > 0)


@pytest.mark.req("SRS-PRIV-023")
@pytest.mark.slow
def test_utility_on_a_synthetic_cohort_of_20000_at_epsilon_10(monkeypatch: pytest.MonkeyPatch) -> None:
    """Harrell's C of the private model within 0.02 of the exact federated Cox model's, and its
    standardised coefficients within 0.25 (mean) of the noise-free fit's (benchmarks/dp_utility.py
    measures the spread over fresh noise). The sites' noise comes from a seeded generator here only."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
    import dp_utility as bench

    rng = np.random.default_rng(2024)
    monkeypatch.setattr("federated.site.handler.fresh_generator", lambda: rng)
    parts = bench.split(bench.synthetic(20_000, 1), 4, 1)
    table = pd.concat(parts, ignore_index=True)
    ref, lo, hi = COX.reference_point(), *np.array(list(COX.ranges.values())).T
    scale = np.maximum(hi - ref, ref - lo)
    exact = bench.cox(parts, None, "exact")
    free = bench.cox(parts, DPSettings(enabled=True, epsilon=1e12), "free")
    private = bench.cox(parts, DPSettings(enabled=True, epsilon=10.0), "dp")
    assert bench.harrell(private, table) > bench.harrell(exact, table) - 0.02
    assert np.mean(np.abs((private.coef - free.coef) * scale)) < 0.25


@pytest.mark.req("SRS-PRIV-023")
@pytest.mark.slow
def test_the_released_standard_errors_carry_the_privacy_noise(gbsg2: pd.DataFrame,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Refits on the same data with fresh noise scatter by the noise alone; the released standard
    errors (model-based plus the noise's share) must not claim less than that scatter, and must be
    wider than those of a fit without noise (else a clinician's risk interval would be too narrow)."""
    rng = np.random.default_rng(7)
    monkeypatch.setattr("federated.site.handler.fresh_generator", lambda: rng)
    rich = PERMISSIVE_FLOORS.model_copy(update={"dp_epsilon": 1e15})
    sites = make_sites(split_frame(gbsg2, 3, seed=0), rich)
    private = approve(sites, [COX], PERMISSIVE, dp=DPSettings(enabled=True, epsilon=10.0))
    coefs, ses = [], []
    for i in range(30):
        with contextlib.suppress(DataError):  # the noise can hide every interval (measured: 1 in 10)
            fit = fit_dp_cox(Coordinator(InProcessTransport(sites), session=f"r{i}", protocol=private), COX)
            coefs.append(fit.coef)
            ses.append(fit.se)
    assert len(coefs) >= 20
    scatter, released = np.std(coefs, axis=0, ddof=1), np.mean(ses, axis=0)
    assert np.all(scatter <= 1.5 * released), (scatter / released).round(2)
    free_sites = make_sites(split_frame(gbsg2, 3, seed=0), rich)
    free = approve(free_sites, [COX], PERMISSIVE, dp=DPSettings(enabled=True, epsilon=1e12))
    exact_se = fit_dp_cox(Coordinator(InProcessTransport(free_sites), session="free", protocol=free), COX).se
    assert np.all(released > exact_se)
