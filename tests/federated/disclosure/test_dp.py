"""Differential privacy: analytic Gaussian σ, noise scales, accountant, private KM counts and Cox."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.special import ndtr

from federated.disclosure.dp import (
    BudgetExceeded,
    DPSettings,
    PrivacyAccountant,
    add_noise,
    gaussian_sigma,
    km_counts_from_at_risk,
    laplace_scale,
    noisy_km_counts,
    sample_and_aggregate,
)

pytestmark = pytest.mark.req("SRS-PRIV-005")

MECHANISMS = ["gaussian", "laplace"]


def _delta_at(sigma: float, sens: float, eps: float) -> float:
    """Balle & Wang (2018) condition, evaluated naively (fine for moderate ε)."""
    a, b = sens / (2 * sigma), eps * sigma / sens
    return float(ndtr(a - b) - math.exp(eps) * ndtr(-a - b))


def _settings(mechanism: str, **kw: object) -> DPSettings:
    return DPSettings(enabled=True, mechanism=mechanism, **kw)  # type: ignore[arg-type]


# --- analytic Gaussian mechanism ------------------------------------------------------------

@pytest.mark.parametrize(("sens", "eps", "delta"),
                         [(1.0, 0.5, 1e-6), (1.0, 1.0, 1e-5), (2.5, 5.0, 1e-6), (0.3, 0.05, 1e-3)])
def test_gaussian_sigma_is_the_smallest_satisfying_sigma(sens: float, eps: float, delta: float) -> None:
    sigma = gaussian_sigma(sens, eps, delta)
    assert _delta_at(sigma, sens, eps) <= delta
    assert _delta_at(sigma * (1 - 1e-6), sens, eps) > delta


def test_gaussian_sigma_known_value_and_beats_classic_bound() -> None:
    assert gaussian_sigma(1.0, 1.0, 1e-5) == pytest.approx(3.7306, abs=1e-4)  # Balle & Wang (2018)
    classic = math.sqrt(2 * math.log(1.25 / 1e-6)) / 0.5
    assert gaussian_sigma(1.0, 0.5, 1e-6) < classic


def test_gaussian_sigma_large_epsilon_and_scaling() -> None:
    sigma = gaussian_sigma(1.0, 5.0, 1e-6)
    assert math.isfinite(sigma) and 0 < sigma < 1.1
    assert gaussian_sigma(3.0, 5.0, 1e-6) == pytest.approx(3 * sigma, rel=1e-12)
    assert 0 < gaussian_sigma(1.0, 1e9, 1e-6) < 1e-4  # no overflow of e^ε


def test_gaussian_sigma_monotone() -> None:
    by_eps = [gaussian_sigma(1.0, e, 1e-6) for e in (0.1, 0.5, 1.0, 2.0, 5.0, 20.0)]
    by_delta = [gaussian_sigma(1.0, 1.0, d) for d in (1e-9, 1e-6, 1e-3, 0.1)]
    assert all(np.diff(by_eps) < 0) and all(np.diff(by_delta) < 0)


@pytest.mark.parametrize(("args", "match"), [((0.0, 1.0, 1e-6), "sensitivity"), ((1.0, -1.0, 1e-6), "-1.0"),
                                             ((1.0, math.inf, 1e-6), "inf"), ((1.0, 1.0, 1.0), "delta")])
def test_gaussian_sigma_rejects_bad_arguments(args: tuple[float, float, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        gaussian_sigma(*args)


# --- noise ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_noise_std_matches_theory(mechanism: str) -> None:
    settings = _settings(mechanism, delta=1e-5)
    sens, eps = 2.0, 0.8
    noisy = add_noise(np.full(200_000, 7.0), sens, eps, settings, np.random.default_rng(1))
    expected = (math.sqrt(2) * laplace_scale(sens, eps) if mechanism == "laplace"
                else gaussian_sigma(sens, eps, 1e-5))
    assert laplace_scale(sens, eps) == sens / eps
    assert np.std(noisy - 7.0) == pytest.approx(expected, rel=0.02)
    assert abs(np.mean(noisy) - 7.0) < 0.05 * expected


def test_add_noise_rejects_bad_arguments() -> None:
    rng, settings = np.random.default_rng(0), DPSettings()
    with pytest.raises(ValueError, match="0.0"):
        add_noise(np.zeros(3), 0.0, 1.0, settings, rng)
    with pytest.raises(ValueError, match="nan"):
        add_noise(np.zeros(3), 1.0, math.nan, settings, rng)
    with pytest.raises(ValueError, match="finite"):
        add_noise(np.array([1.0, np.inf]), 1.0, 1.0, settings, rng)


# --- accountant -------------------------------------------------------------------------------

def test_accountant_sums_and_reports() -> None:
    acc = PrivacyAccountant(DPSettings(enabled=True, epsilon=1.0, delta=1e-5))
    acc.spend("a", 0.1, 2e-6)
    acc.spend("b", 0.2, 3e-6)
    assert acc.spent == (pytest.approx(0.3), pytest.approx(5e-6))
    assert acc.to_dict() == {
        "mechanism": "gaussian", "epsilon_budget": 1.0, "delta_budget": 1e-5,
        "epsilon_spent": pytest.approx(0.3), "delta_spent": pytest.approx(5e-6),
        "releases": [{"what": "a", "epsilon": 0.1, "delta": 2e-6},
                     {"what": "b", "epsilon": 0.2, "delta": 3e-6}],
    }


def test_accountant_refuses_over_budget_and_allows_exact_spend() -> None:
    acc = PrivacyAccountant(DPSettings(enabled=True, epsilon=1.0, delta=1e-6))
    acc.spend("first", 0.1, 3e-7)
    acc.spend("second", 0.2, 3e-7)
    with pytest.raises(BudgetExceeded, match="'too much'.*0.8.*remain"):
        acc.spend("too much", 0.8)
    with pytest.raises(BudgetExceeded, match="'delta hog'"):
        acc.spend("delta hog", 0.1, 5e-7)
    eps_left, delta_left = 1.0 - acc.spent[0], 1e-6 - acc.spent[1]
    acc.spend("rest", eps_left, delta_left)  # exactly the remainder, up to float rounding
    assert acc.spent == (pytest.approx(1.0, abs=1e-12), pytest.approx(1e-6, abs=1e-18))
    assert len(acc.to_dict()["releases"]) == 3  # type: ignore[arg-type]
    with pytest.raises(BudgetExceeded, match="'more'"):
        acc.spend("more", 1e-9)


def test_laplace_accountant_has_no_delta_budget() -> None:
    acc = PrivacyAccountant(_settings("laplace", epsilon=2.0))
    assert acc.to_dict()["delta_budget"] == 0.0
    acc.spend("pure", 1.0)
    with pytest.raises(BudgetExceeded, match="'approx'"):
        acc.spend("approx", 0.5, 1e-9)
    with pytest.raises(ValueError, match="-0.5"):
        acc.spend("negative", -0.5)


# --- Kaplan–Meier counts ----------------------------------------------------------------------

def _km_data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    events = rng.integers(0, 6, size=(3, 12))
    censored = rng.integers(0, 4, size=(3, 12))
    return events, censored, np.array([2, 0, 5])


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_noisy_km_counts_exact_at_huge_epsilon(mechanism: str) -> None:
    events, censored, n_before = _km_data(np.random.default_rng(3))
    settings = _settings(mechanism, epsilon=1e9)
    acc = PrivacyAccountant(settings)
    d, n = noisy_km_counts(events, censored, n_before, 1e9, settings, acc, np.random.default_rng(4))
    expected_n = np.cumsum((events + censored)[:, ::-1], axis=1)[:, ::-1]
    assert np.array_equal(d, events) and np.array_equal(n, expected_n)
    assert d.dtype == np.int64 and n.dtype == np.int64


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_noisy_km_counts_post_processing_and_accounting(mechanism: str) -> None:
    events, censored, n_before = _km_data(np.random.default_rng(5))
    settings = _settings(mechanism, epsilon=1.0)
    acc = PrivacyAccountant(settings)
    d, n = noisy_km_counts(events, censored, n_before, 1.0, settings, acc, np.random.default_rng(6))
    assert d.shape == n.shape == events.shape
    assert np.issubdtype(d.dtype, np.integer) and np.issubdtype(n.dtype, np.integer)
    assert d.min() >= 0 and n.min() >= 0 and np.all(d <= n)
    assert np.all(np.diff(n, axis=1) <= 0)
    delta = 1e-6 if mechanism == "gaussian" else 0.0
    assert acc.to_dict()["releases"] == [{"what": "kaplan-meier counts", "epsilon": 1.0, "delta": delta}]
    with pytest.raises(BudgetExceeded, match="kaplan-meier counts"):
        noisy_km_counts(events, censored, n_before, 1.0, settings, acc, np.random.default_rng(6))


def test_noisy_km_counts_rejects_bad_input() -> None:
    settings, rng = _settings("gaussian"), np.random.default_rng(0)
    events, censored, n_before = _km_data(rng)
    with pytest.raises(ValueError, match="shapes disagree"):
        noisy_km_counts(events, censored[:, 1:], n_before, 1.0, settings, PrivacyAccountant(settings), rng)
    with pytest.raises(ValueError, match="non-negative integers"):
        noisy_km_counts(events - 9, censored, n_before, 1.0, settings, PrivacyAccountant(settings), rng)
    with pytest.raises(ValueError, match="0.0"):
        noisy_km_counts(events, censored, n_before, 0.0, settings, PrivacyAccountant(settings), rng)


def test_km_counts_from_at_risk_round_trips() -> None:
    events, censored, n_before = _km_data(np.random.default_rng(7))
    at_risk = np.cumsum((events + censored)[:, ::-1], axis=1)[:, ::-1]
    n_total = at_risk[:, 0] + n_before
    c, nb = km_counts_from_at_risk(at_risk, events, n_total)
    assert np.array_equal(c, censored) and np.array_equal(nb, n_before)
    rebuilt = np.cumsum((events + c)[:, ::-1], axis=1)[:, ::-1]
    assert np.array_equal(rebuilt, at_risk)
    with pytest.raises(ValueError, match="inconsistent"):
        km_counts_from_at_risk(at_risk, events, n_total - n_before - 1)


# --- sample and aggregate ---------------------------------------------------------------------

@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sample_and_aggregate_exact_at_huge_epsilon(mechanism: str) -> None:
    rng = np.random.default_rng(8)
    estimates = rng.normal(0.0, 2.0, size=(10, 3))
    scales = np.array([1.0, 4.0, 0.5])
    settings = _settings(mechanism, epsilon=1e9, clip=3.0)
    acc = PrivacyAccountant(settings)
    out = sample_and_aggregate(estimates, scales, 1e9, settings, acc, rng)
    expected = np.clip(estimates * scales, -3.0, 3.0).mean(axis=0) / scales
    assert out.shape == (3,)
    assert np.allclose(out, expected, rtol=0, atol=1e-3)  # gaussian σ shrinks only like 1/√ε
    assert acc.to_dict()["releases"][0]["what"] == "cox coefficients"  # type: ignore[index]


def test_sample_and_aggregate_clips_outlier_block() -> None:
    m, clip = 10, 5.0
    estimates = np.full((m, 2), 0.3)
    settings = _settings("laplace", epsilon=1e9, clip=clip)
    base = sample_and_aggregate(estimates, np.ones(2), 1e9, settings, PrivacyAccountant(settings),
                                np.random.default_rng(9))
    estimates[4] = [1e6, -1e6]
    moved = sample_and_aggregate(estimates, np.ones(2), 1e9, settings, PrivacyAccountant(settings),
                                 np.random.default_rng(9))
    assert np.all(np.abs(moved - base) <= 2 * clip / m + 1e-6)
    assert moved == pytest.approx([0.3 + (clip - 0.3) / m, 0.3 - (clip + 0.3) / m], abs=1e-6)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sample_and_aggregate_noise_matches_sensitivity(mechanism: str) -> None:
    m, p, clip, eps = 8, 3, 2.0, 0.7
    rng = np.random.default_rng(10)
    estimates = rng.normal(0.0, 0.5, size=(m, p))
    scales = np.array([1.0, 2.0, 10.0])
    settings = _settings(mechanism, epsilon=eps, clip=clip)
    center = np.clip(estimates * scales, -clip, clip).mean(axis=0)
    draws = np.array([sample_and_aggregate(estimates, scales, eps, settings, PrivacyAccountant(settings), rng)
                      for _ in range(4000)]) * scales - center
    if mechanism == "laplace":
        expected = math.sqrt(2) * laplace_scale(2 * clip * p / m, eps)
    else:
        expected = gaussian_sigma(2 * clip * math.sqrt(p) / m, eps, settings.delta)
    assert np.std(draws, axis=0) == pytest.approx(np.full(p, expected), rel=0.05)


def test_sample_and_aggregate_rejects_bad_input() -> None:
    settings, rng = _settings("gaussian"), np.random.default_rng(0)
    acc = PrivacyAccountant(settings)
    with pytest.raises(ValueError, match=r"\(1, 2\)"):
        sample_and_aggregate(np.zeros((1, 2)), np.ones(2), 1.0, settings, acc, rng)
    with pytest.raises(ValueError, match="scales"):
        sample_and_aggregate(np.zeros((4, 2)), np.array([1.0, 0.0]), 1.0, settings, acc, rng)
    with pytest.raises(ValueError, match="finite"):
        sample_and_aggregate(np.full((4, 2), np.nan), np.ones(2), 1.0, settings, acc, rng)
    assert acc.spent == (0.0, 0.0)  # nothing spent on a rejected call


# --- settings ---------------------------------------------------------------------------------

def test_settings_defaults_off_and_frozen() -> None:
    s = DPSettings()
    assert not s.enabled and s.mechanism == "gaussian" and s.epsilon == 1.0 and s.blocks == 10
    with pytest.raises(ValidationError):
        s.epsilon = 2.0


@pytest.mark.parametrize("bad", [{"epsilon": 0.0}, {"epsilon": -1.0}, {"epsilon": math.inf}, {"delta": 0.0},
                                 {"delta": 1.0}, {"delta": -0.1}, {"blocks": 1}, {"clip": 0.0},
                                 {"mechanism": "exponential"}, {"sigma": 2.0}])
def test_settings_reject_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        DPSettings.model_validate(bad)
