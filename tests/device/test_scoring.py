"""Scoring equals the contract's formula; the 95% interval is the delta method on the log-log scale,
with the baseline hazard's variance (SRS-DEV-012) or, for an older artifact without it, β's only
(SRS-DEV-004, the ``legacy`` models)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from device.model import PrognosticModel, load_model
from device.scoring import Z95, ScoringError, check_inputs, score, survival_curve
from device.units import convert
from tests.device.test_model import demo_artifact, reseal


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The demo study's artifact, as JSON."""
    return demo_artifact()


@pytest.fixture(scope="module")
def model() -> PrognosticModel:
    return load_model(demo_artifact())


def without_baseline_variance(art: dict[str, Any]) -> dict[str, Any]:
    """``art`` as an older artifact: no ``variance_increments``/``xbar_increments`` (resealed)."""
    for key in ("variance_increments", "xbar_increments"):
        del art["baseline_survival"][key]
    return reseal(art)


@pytest.fixture(scope="module")
def legacy() -> PrognosticModel:
    """The demo model as an older artifact would carry it: the interval is β's only."""
    return load_model(without_baseline_variance(demo_artifact()))


@pytest.fixture(scope="module")
def continuous() -> PrognosticModel:
    """The demo model with its boolean inputs declared as quantities in [0, 1] (the centre is
    admissible), as an older artifact (β-only interval)."""
    art = demo_artifact()
    for item in art["inputs"]:
        item["kind"] = "quantity"
        item.pop("categories", None)
        item.pop("bands", None)
        item.pop("ordinal", None)
    return load_model(without_baseline_variance(art))


def patients(m: PrognosticModel, n: int, seed: int) -> np.ndarray:
    """``n`` random patients inside the envelope (uniform quantities, whole counts, category indices,
    0/1 booleans)."""
    rng = np.random.default_rng(seed)
    cols = []
    for spec in m.inputs:
        assert spec.min is not None and spec.max is not None
        if spec.kind == "boolean":
            cols.append(rng.integers(0, 2, n).astype(float))
        elif spec.kind in ("integer", "category"):  # a category is the index of its band
            cols.append(rng.integers(int(spec.min), int(spec.max) + 1, n).astype(float))
        else:
            cols.append(rng.uniform(spec.min, spec.max, n))
    return np.column_stack(cols)


def contract_risk(art: dict[str, Any], x: np.ndarray, h: float) -> float:
    """1 − S(h | x) with S(t | x) = survival(t) ^ exp(β·(x − center)), written out from the JSON."""
    base = art["baseline_survival"]
    eta = math.fsum(art["coefficients"][item["name"]] * (xj - cj)
                    for item, xj, cj in zip(art["inputs"], x, base["center"], strict=True))
    s0 = 1.0
    for t, s in zip(base["times"], base["survival"], strict=True):
        if t <= h:
            s0 = s
    return 1.0 - s0 ** math.exp(eta)


# --- point estimates --------------------------------------------------------------------


@pytest.mark.req("SRS-DEV-003")
def test_risk_equals_the_contract_formula(raw: dict[str, Any]) -> None:
    m = load_model(raw)
    times = raw["baseline_survival"]["times"]
    horizons = [*m.horizons, times[0], times[1], (times[1] + times[2]) / 2, times[-1], times[0] / 2]
    X = patients(m, 300, seed=1)
    got = score(m, X, horizons)
    want = np.array([[contract_risk(raw, x, h) for h in horizons] for x in X])
    assert got.risk.shape == (300, len(horizons))
    assert np.max(np.abs(got.risk - want)) <= 1e-12
    np.testing.assert_array_equal(got.horizons, horizons)
    default = score(m, X[:5])
    np.testing.assert_array_equal(default.horizons, m.horizons)
    np.testing.assert_allclose(default.risk, got.risk[:5, :2], rtol=0, atol=1e-15)


@pytest.mark.req("SRS-DEV-003")
def test_before_the_first_released_time_the_risk_is_zero(model: PrognosticModel) -> None:
    s = score(model, patients(model, 10, seed=2), [float(model.baseline_times[0]) / 2])
    assert np.all(s.risk == 0.0) and np.all(s.lower == 0.0) and np.all(s.upper == 0.0)


@pytest.mark.req("SRS-DEV-003")
def test_contributions_sum_to_the_linear_predictor(model: PrognosticModel) -> None:
    X = patients(model, 1000, seed=3)
    s = score(model, X)
    assert s.contributions.shape == (1000, 8) and s.lp.shape == (1000,)
    np.testing.assert_allclose(s.contributions.sum(axis=1), s.lp, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.contributions, (X - model.center) * model.beta, rtol=0, atol=0)
    np.testing.assert_allclose(s.lp, (X - model.center) @ model.beta, rtol=0, atol=1e-13)
    assert s.names == model.names


@pytest.mark.req("SRS-DEV-006")
def test_units_are_converted_before_scoring(model: PrognosticModel) -> None:
    x = patients(model, 1, seed=4)[0]
    tsize_cm, age_mo = convert(x[1], "mm", "cm"), convert(x[0], "a", "mo")
    sent = x.copy()
    sent[0] = convert(age_mo, "mo", model.inputs[0].unit)
    sent[1] = convert(tsize_cm, "cm", model.inputs[1].unit)
    np.testing.assert_allclose(score(model, sent[None, :]).risk, score(model, x[None, :]).risk, rtol=1e-14)


@pytest.mark.req("SRS-DEV-003")
def test_survival_curve_over_the_released_times(raw: dict[str, Any]) -> None:
    m = load_model(raw)
    x = patients(m, 1, seed=5)[0]
    times, surv, lower, upper = survival_curve(m, x)
    np.testing.assert_array_equal(times, raw["baseline_survival"]["times"])
    want = np.array([1.0 - contract_risk(raw, x, t) for t in times])
    assert np.max(np.abs(surv - want)) <= 1e-12
    assert np.all(lower <= surv) and np.all(surv <= upper) and np.all(np.diff(surv) <= 0)
    s = score(m, x[None, :], list(times[[1, 3]]))
    np.testing.assert_allclose(1.0 - s.risk[0], surv[[1, 3]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(1.0 - s.upper[0], lower[[1, 3]], rtol=0, atol=1e-15)


# --- the interval -----------------------------------------------------------------------


@pytest.mark.req("SRS-DEV-004")
def test_interval_contains_the_point_estimate(model: PrognosticModel) -> None:
    s = score(model, patients(model, 5000, seed=6))
    assert np.all(0 < s.lower) and np.all(s.lower <= s.risk) and np.all(s.risk <= s.upper)
    assert np.all(s.upper <= 1)  # extreme corners of the envelope: the upper bound rounds to 1.0
    inner = s.upper < 1 - 1e-9
    assert inner.mean() > 0.9 and np.all(s.lower[inner] < s.upper[inner])


def contract_se_loglog(art: dict[str, Any], x: np.ndarray, h: float) -> float:
    """se of log(−log S(h | x)) written out from the JSON: sqrt(V/H0² + aᵀ Σ a), a = (x − c) − M/H0,
    V and M the sums of the increments up to the last released time ≤ h (Tsiatis 1981)."""
    base = art["baseline_survival"]
    names = [item["name"] for item in art["inputs"]]
    z = np.array(x) - np.array(base["center"])
    cov = np.array(art["covariance"])
    if "variance_increments" not in base:
        return math.sqrt(float(z @ cov @ z))
    i = max(j for j, t in enumerate(base["times"]) if t <= h)
    h0 = -math.log(base["survival"][i])
    v = math.fsum(base["variance_increments"][: i + 1])
    m = np.array([math.fsum(r[j] for r in base["xbar_increments"][: i + 1]) for j in range(len(names))])
    a = z - m / h0
    return math.sqrt(v / h0 ** 2 + float(a @ cov @ a))


@pytest.mark.req("SRS-DEV-004", "SRS-DEV-012")
@pytest.mark.parametrize("full", [True, False], ids=["with-baseline-variance", "older-artifact"])
def test_interval_is_the_delta_method_on_the_log_log_scale(raw: dict[str, Any], full: bool) -> None:
    art = raw if full else without_baseline_variance(json.loads(json.dumps(raw)))
    model = load_model(art)
    assert model.interval_includes_baseline is full
    X = patients(model, 200, seed=7)
    s = score(model, X)
    assert s.interval.complete is full and s.interval.scale == "log(-log S)"
    Z = X - model.center
    np.testing.assert_allclose(s.se_lp, np.sqrt(np.einsum("ij,jk,ik->i", Z, model.covariance, Z)), rtol=1e-12)
    se = np.array([[contract_se_loglog(art, x, h) for h in model.horizons] for x in X])
    np.testing.assert_allclose(s.interval.se, se, rtol=1e-10)
    ok = np.all(s.upper < 0.999, axis=1)  # away from 1, where log(−log(1 − r)) is well conditioned
    assert ok.sum() > 100

    def loglog(r: np.ndarray) -> np.ndarray:
        return np.log(-np.log1p(-r[ok]))

    half = Z95 * se[ok]
    np.testing.assert_allclose(loglog(s.upper) - loglog(s.risk), half, rtol=1e-8)
    np.testing.assert_allclose(loglog(s.risk) - loglog(s.lower), half, rtol=1e-8)


@pytest.mark.req("SRS-DEV-004")
def test_interval_widens_with_distance_from_the_centre(continuous: PrognosticModel) -> None:
    far = patients(continuous, 3, seed=8)
    for x_end in far:
        t = np.linspace(0.0, 1.0, 11)
        X = continuous.center + t[:, None] * (x_end - continuous.center)
        s = score(continuous, X)
        assert np.all(np.diff(s.se_lp) > 0)
        np.testing.assert_allclose(s.se_lp, t * s.se_lp[-1], rtol=1e-12, atol=1e-15)
        loglog_width = np.log(-np.log1p(-s.upper)) - np.log(-np.log1p(-s.lower))
        assert np.all(np.diff(loglog_width, axis=0) > 0)
        # the documented limitation: at the centre the interval (β uncertainty only) has zero width
        assert np.all(s.lower[0] == s.risk[0]) and np.all(s.risk[0] == s.upper[0])


@pytest.mark.req("SRS-DEV-004")
def test_same_risk_farther_from_the_centre_gives_a_wider_risk_interval(continuous: PrognosticModel) -> None:
    """Along a direction v ⟂ β from the centre the risk is constant and only sd(η) grows."""
    m = continuous
    lo = np.array([s.min for s in m.inputs], dtype=float)
    hi = np.array([s.max for s in m.inputs], dtype=float)
    inner = (m.center > lo) & (m.center < hi)  # a reference patient may sit at a boolean's edge: move inside
    u = np.random.default_rng(14).standard_normal(len(m.beta)) * (hi - lo) * inner
    b = m.beta * inner
    v = u - (u @ b) / (b @ b) * b
    room = np.where(v > 0, (hi - m.center) / np.where(v > 0, v, 1), (lo - m.center) / np.where(v < 0, v, -1))
    room = np.where(v == 0, np.inf, room)  # the inputs not moved set no limit
    X = m.center + np.linspace(0.0, 0.9 * room.min(), 8)[:, None] * v
    s = score(m, X)
    np.testing.assert_allclose(s.risk, np.broadcast_to(s.risk[0], s.risk.shape), rtol=1e-12)
    width = s.upper - s.lower
    assert width[0, 0] == 0.0 and np.all(np.diff(width, axis=0) > 0)


@pytest.mark.req("SRS-DEV-004")
def test_delta_method_agrees_with_monte_carlo_over_beta(legacy: PrognosticModel) -> None:
    """β ~ N(β̂, Σ): the spread of log(−log S) and the 2.5/97.5 % risk quantiles match the β-only
    interval (of an older artifact; the full interval is checked against its formula above)."""
    model = legacy
    x = np.array([[30.0, 2.0, 1.0, 14.0, 5.0, 400.0, 0.0, 0.0]])  # far from the centre, inside the envelope
    s = score(model, x)
    rng = np.random.default_rng(2026)
    cov = (model.covariance + model.covariance.T) / 2
    draws = model.beta + rng.standard_normal((400_000, len(model.beta))) @ np.linalg.cholesky(cov).T
    eta = (x[0] - model.center) @ draws.T
    h0 = -np.log(model.baseline_survival[np.searchsorted(model.baseline_times, model.horizons, "right") - 1])
    for k in range(len(model.horizons)):
        loglog = np.log(h0[k]) + eta
        se_ci = (np.log(-np.log1p(-s.upper[0, k])) - np.log(-np.log1p(-s.lower[0, k]))) / (2 * Z95)
        assert np.std(loglog) == pytest.approx(se_ci, rel=0.05)
        risk = -np.expm1(-np.exp(loglog))
        lo, hi = np.quantile(risk, [0.025, 0.975])
        assert lo == pytest.approx(s.lower[0, k], rel=0.05) and hi == pytest.approx(s.upper[0, k], rel=0.05)
        assert float(np.median(risk)) == pytest.approx(s.risk[0, k], rel=0.01)


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.req("SRS-DEV-005", "RC-INPUT-001")
def test_inputs_outside_the_envelope_are_refused_naming_the_input(model: PrognosticModel) -> None:
    X = patients(model, 6, seed=9)
    X[2, 0] = 95.0                 # age above 79 a
    X[4, 3] = -1.0                 # negative node count
    X[4, 6] = 0.5                  # hormone therapy neither 0 nor 1
    X[5, 1] = np.nan
    reasons = check_inputs(model, X)
    assert reasons[0] is None and reasons[1] is None and reasons[3] is None
    assert reasons[2] == ("Age: 95 years is outside the range this model was developed and validated for "
                          "(27 to 79 years)")
    assert reasons[4] == ("Positive lymph nodes: this model was developed for node-positive patients; -1 "
                          "positive nodes is outside it; Hormone therapy: 0.5 is not a boolean "
                          "(0 = false, 1 = true)")
    assert reasons[5] == "Tumour size: nan is not a finite number"
    with pytest.raises(ScoringError, match=r"^row 2: Age: 95 years is outside .* \(and 2 more rows; see"):
        score(model, X)
    with pytest.raises(ScoringError, match="Age: 95 years"):
        survival_curve(model, X[2])
    ok = [i for i, r in enumerate(reasons) if r is None]
    assert score(model, X[ok]).risk.shape == (3, 2)  # the rest of the batch still scores
    assert check_inputs(model, np.empty((0, 8))) == []


@pytest.mark.req("SRS-DEV-005", "RC-INPUT-001")
def test_values_are_never_clamped(model: PrognosticModel) -> None:
    x = patients(model, 1, seed=10)
    x[0, 5] = 400.0 + 1e-9
    with pytest.raises(ScoringError, match=r"Oestrogen receptor: 400\.000000001 fmol/mg is outside .* "
                                           r"\(0 to 400 fmol/mg\)"):
        score(model, x)
    x[0, 5], x[0, 1] = 400.0, 2.0 + 1e-9  # a category is an exact index, never rounded to one
    with pytest.raises(ScoringError, match=r"Tumour size: 2\.000000001 is not the index of a listed"):
        score(model, x)


@pytest.mark.req("SRS-DEV-003", "RC-DEV-002")
@pytest.mark.parametrize("horizon", [2373.0, 1e9, math.inf])
def test_horizons_beyond_the_baseline_are_refused(model: PrognosticModel, horizon: float) -> None:
    last = float(model.baseline_times[-1])
    X = patients(model, 3, seed=11)
    with pytest.raises(ScoringError, match="beyond the last released baseline time|positive finite"):
        score(model, X, [1095.0, last + (horizon - 2373.0) + 1.0])
    assert score(model, X, [last]).risk.shape == (3, 1)


@pytest.mark.req("SRS-DEV-003")
@pytest.mark.parametrize("horizons", [[0.0], [-1.0], [math.nan], []])
def test_bad_horizons_are_refused(model: PrognosticModel, horizons: list[float]) -> None:
    with pytest.raises(ScoringError, match="horizon"):
        score(model, patients(model, 2, seed=12), horizons)


@pytest.mark.req("SRS-DEV-003")
@pytest.mark.parametrize("shape", [(5, 7), (8,), (2, 8, 1)])
def test_wrong_shapes_are_refused(model: PrognosticModel, shape: tuple[int, ...]) -> None:
    with pytest.raises(ScoringError, match=r"expected an array of shape \(n, 8\), columns age, tsize"):
        score(model, np.zeros(shape))
    with pytest.raises(ScoringError, match=r"expected an array of shape \(8,\)"):
        survival_curve(model, np.zeros(7))
    with pytest.raises(ScoringError, match="not numeric"):
        score(model, [["a"] * 8])  # type: ignore[arg-type]


# --- scale ------------------------------------------------------------------------------


@pytest.mark.req("SRS-DEV-003")
def test_one_hundred_thousand_patients(model: PrognosticModel) -> None:
    X = patients(model, 100_000, seed=13)
    s = score(model, X)
    assert s.risk.shape == s.lower.shape == s.upper.shape == (100_000, 2)
    assert s.lp.shape == s.se_lp.shape == (100_000,) and s.contributions.shape == (100_000, 8)
