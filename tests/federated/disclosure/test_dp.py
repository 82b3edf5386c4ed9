"""The maths of distributed Skellam noise (pure functions of :mod:`federated.disclosure.dp`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats
from scipy.special import ive

from federated.disclosure.dp import (
    KM_RELEASES,
    ORDERS,
    DPSettings,
    calibrate_mu,
    fit_epsilon,
    fresh_generator,
    km_cells,
    km_from_noisy,
    km_wire,
    rdp_curve,
    rdp_to_dp,
    release_mu,
    skellam_rdp,
    skellam_share,
)
from federated.site import local_stats as ls

ALPHA = 1e-3  # significance of the goodness-of-fit tests (fixed; deterministic through fixed seeds)


def skellam_chi2_p(samples: np.ndarray, mu: float) -> float:
    """p-value of Pearson's χ² test of ``samples`` against Sk(mu) (cells with expected count ≥ 5,
    the two tails pooled into the outermost cells)."""
    n = samples.size
    half = int(math.ceil(8 * math.sqrt(2 * mu))) + 2
    support = np.arange(-half, half + 1)
    pmf = stats.skellam.pmf(support, mu, mu)
    keep = support[pmf * n >= 5]
    lo, hi = int(keep.min()), int(keep.max())
    edges = np.arange(lo, hi + 1)
    observed = np.array([np.sum(samples <= lo)] + [np.sum(samples == k) for k in edges[1:-1]]
                        + [np.sum(samples >= hi)], dtype=float)
    expected = np.concatenate(([stats.skellam.cdf(lo, mu, mu)], stats.skellam.pmf(edges[1:-1], mu, mu),
                               [stats.skellam.sf(hi - 1, mu, mu)])) * n
    return float(stats.chisquare(observed, expected).pvalue)


# --- the mechanism ------------------------------------------------------------------------------

@pytest.mark.req("SRS-PRIV-016")
@pytest.mark.parametrize(("mu", "n_sites"), [(13.27, 3), (2.5, 4), (0.9, 2)])
def test_site_shares_sum_to_the_skellam_law(mu: float, n_sites: int) -> None:
    """n shares Sk(μ/n) sum to Sk(μ): χ² at significance 1e-3 over 200 000 sums; the same test
    rejects the sum when the shares were drawn for 1.5 μ (the test can fail)."""
    rng = np.random.default_rng(20240915)
    total = np.sum([skellam_share((200_000,), mu, n_sites, rng) for _ in range(n_sites)], axis=0)
    assert total.dtype == np.int64
    assert skellam_chi2_p(total, mu) > ALPHA
    wrong = np.sum([skellam_share((200_000,), 1.5 * mu, n_sites, rng) for _ in range(n_sites)], axis=0)
    assert skellam_chi2_p(wrong, mu) < ALPHA


def _exact_rdp(alpha: float, mu: float) -> float:
    """D_α(Sk(μ) + 1 ‖ Sk(μ)) by direct summation: p(k) = e^{-2μ} I_|k|(2μ)."""
    half = int(mu + 40 * math.sqrt(2 * mu) + 60)
    k = np.arange(-half, half + 2)
    with np.errstate(divide="ignore"):  # far tails underflow: their terms are below e^-300 of the top
        logp = np.log(ive(np.abs(k), 2 * mu))
    ok = np.isfinite(logp[1:]) & np.isfinite(logp[:-1])
    terms = alpha * logp[:-1][ok] + (1 - alpha) * logp[1:][ok]  # P = shifted by +1, Q = Sk(μ)
    top = terms.max()
    return float((top + math.log(np.exp(terms - top).sum())) / (alpha - 1))


@pytest.mark.req("SRS-PRIV-016")
@pytest.mark.parametrize("mu", [0.5, 2.0, 13.27, 100.0])
@pytest.mark.parametrize("alpha", [2, 4, 16, 64])
def test_the_rdp_bound_covers_the_exact_divergence(mu: float, alpha: int) -> None:
    """The accountant's bound (Agarwal et al. 2021) is at least the exact Rényi divergence of one
    count shifted by 1 (L1 = L2 = 1), and within 25 % of it at the noise levels and orders that
    matter for ε between 1 and 10 (μ ≥ 10, α ≤ 16)."""
    exact = _exact_rdp(alpha, mu)
    bound = skellam_rdp(alpha, mu, 1.0, 1.0)
    assert exact <= bound
    if mu >= 10 and alpha <= 16:
        assert bound <= 1.25 * exact


@pytest.mark.req("SRS-PRIV-016")
def test_conversion_and_calibration() -> None:
    # the conversion of Canonne, Kamath & Steinke (2020, Prop. 12), written out at one order
    rdp = rdp_curve(10.0, 1.0, 1.0)
    a = np.array(ORDERS, dtype=float)
    direct = rdp + np.log1p(-1 / a) - (math.log(1e-6) + np.log(a)) / (a - 1)
    assert rdp_to_dp(rdp, 1e-6) == pytest.approx(direct.min(), rel=1e-12)
    assert rdp_to_dp(np.zeros(len(ORDERS)), 0.5) == 0.0
    for eps in (0.5, 1.0, 5.0, 10.0):
        mu = calibrate_mu(eps, 1e-6)
        assert fit_epsilon(mu, 1e-6) <= eps < fit_epsilon(mu * (1 - 1e-6), 1e-6)
    mus = [calibrate_mu(e, 1e-6) for e in (0.5, 1.0, 5.0, 10.0)]
    assert mus == sorted(mus, reverse=True)
    dp = DPSettings(enabled=True, epsilon=1.0, delta=1e-6)
    assert release_mu(dp, "prepare") == 8 * release_mu(dp, "counts")
    assert [r.kind for r in KM_RELEASES] == ["prepare", "counts"]
    with pytest.raises(ValueError, match="no differentially private release"):
        release_mu(dp, "risk-set")


@pytest.mark.req("SRS-PRIV-016")
def test_fresh_generator_is_not_reproducible() -> None:
    draws = [fresh_generator().integers(0, 2**62, size=4).tolist() for _ in range(3)]
    assert len({tuple(d) for d in draws}) == 3


# --- the Kaplan–Meier cells -----------------------------------------------------------------------

@pytest.mark.req("SRS-PRIV-016")
def test_one_patient_changes_one_cell_by_one() -> None:
    """(events, censorings) per interval: adding one patient (any time, event or not) changes
    exactly one cell by 1 over the pair of vectors: L1 = L2 = 1, on any strictly increasing grid."""
    rng = np.random.default_rng(3)
    grid = np.array([0.0, 3.0, 7.0, 20.0, 50.0])

    def cells(time: np.ndarray, event: np.ndarray) -> np.ndarray:
        order = np.argsort(time, kind="stable")
        t, e = time[order], event[order]
        n, d = ls.at_risk_counts(t, grid)[None, :], ls.event_counts(t, e, grid)[None, :]
        return np.concatenate([d, km_cells(n, d)])

    for _ in range(200):
        time = rng.integers(0, 60, 40).astype(float)
        event = np.where(np.isin(time, grid), rng.integers(0, 2, 40), 0)  # events lie on the grid
        t_new = float(rng.choice(np.append(grid, rng.integers(0, 60))))
        e_new = int(rng.integers(0, 2)) if t_new in grid else 0
        diff = cells(np.append(time, t_new), np.append(event, e_new)) - cells(time, event)
        assert np.abs(diff).sum() == 1 and diff.max() == 1


@pytest.mark.req("SRS-PRIV-018")
def test_cells_round_trip_and_post_processing() -> None:
    n = np.array([[10, 8, 5, 2], [6, 6, 3, 0]])
    d = np.array([[1, 2, 1, 1], [0, 2, 3, 0]])
    c = km_cells(n, d)
    assert c.tolist() == [[1, 1, 2, 1], [0, 1, 0, 0]]
    wire_n, wire_d = km_wire(d, c)
    assert wire_n.tolist() == n.tolist() and wire_d.tolist() == d.tolist()
    assert [a.tolist() for a in km_from_noisy(wire_n, wire_d)] == [n.tolist(), d.tolist()]
    # noisy sums: rounded, clipped at 0, non-increasing; events within [0, at risk]
    at, ev = km_from_noisy(np.array([[9.0, 11.0, -2.0, 1.0]]), np.array([[3.0, -1.0, 4.0, 5.0]]))
    assert at.tolist() == [[11, 11, 1, 1]] and ev.tolist() == [[3, 0, 1, 1]]
    with pytest.raises(ValueError, match="inconsistent"):
        km_cells(np.array([[3, 5]]), np.array([[0, 0]]))
    with pytest.raises(ValueError, match="finite"):
        km_from_noisy(np.array([[np.nan]]), np.array([[0.0]]))


# --- settings -----------------------------------------------------------------------------------

@pytest.mark.req("SRS-PRIV-018")
def test_settings_hold_no_seed_and_old_files_fail_in_one_line() -> None:
    s = DPSettings()
    assert not s.enabled and s.mechanism == "skellam" and s.epsilon == 1.0 and s.delta == 1e-6
    assert "seed" not in DPSettings.model_fields
    with pytest.raises(ValidationError):
        s.epsilon = 2.0
    for old, match in (({"enabled": True, "seed": 3}, "no longer accepted"),
                       ({"blocks": 10}, "sample-and-aggregate"), ({"clip": 5.0}, "sample-and-aggregate"),
                       ({"mechanism": "gaussian"}, "added noise at the coordinator")):
        with pytest.raises(ValidationError, match=match) as info:
            DPSettings.model_validate(old)
        assert info.value.error_count() == 1


@pytest.mark.req("SRS-PRIV-016")
@pytest.mark.parametrize("bad", [{"epsilon": 0.0}, {"epsilon": -1.0}, {"epsilon": math.inf}, {"delta": 0.0},
                                 {"delta": 1.0}, {"mechanism": "exponential"}, {"sigma": 2.0}])
def test_settings_reject_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        DPSettings.model_validate(bad)


@pytest.mark.req("SRS-PRIV-016")
def test_rdp_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="alpha"):
        skellam_rdp(1.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="mu"):
        skellam_rdp(2.0, 0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="delta"):
        rdp_to_dp(np.zeros(len(ORDERS)), 0.0)
    with pytest.raises(ValueError, match="n_sites"):
        skellam_share((2,), 1.0, 0, np.random.default_rng(0))
