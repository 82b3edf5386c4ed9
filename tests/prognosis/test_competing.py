"""Absolute risk from cause-specific Cox models: against a direct sum over lifelines' fitted hazards.

One lifelines CoxPHFitter per cause on a seeded synthetic cohort with two competing causes (the
other cause's events censored), Breslow baselines from ``baseline_cumulative_hazard_`` (at
lifelines' covariate means, so η = ``predict_log_partial_hazard``). The reference recomputes the
risk with plain loops from lifelines' own per-patient cumulative hazards
(``predict_cumulative_hazard``), independently of the module's matrix arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from prognosis.competing import absolute_risk, event_free_survival

pytestmark = pytest.mark.req("SRS-MOD-022")

COVARIATES = ["x1", "x2"]


def cohort(n: int, seed: int) -> pd.DataFrame:
    """Two competing causes with covariate-dependent exponential hazards and uniform censoring."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.binomial(1, 0.4, n).astype(float)
    t1 = rng.exponential(1.0 / (0.10 * np.exp(0.5 * x1 - 0.4 * x2)))
    t2 = rng.exponential(1.0 / (0.06 * np.exp(-0.3 * x1 + 0.6 * x2)))
    censor = rng.uniform(0.0, 15.0, n)
    time = np.minimum.reduce([t1, t2, censor])
    return pd.DataFrame({"x1": x1, "x2": x2, "time": time,
                         "cause": np.select([time == t1, time == t2], [1, 2], 0)})


@dataclass(frozen=True)
class Fitted:
    models: list[CoxPHFitter]
    times: list[np.ndarray]
    cumhaz: list[np.ndarray]
    patients: pd.DataFrame
    lp: np.ndarray  # (C, n)


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    data = cohort(400, seed=11)
    models = []
    for k in (1, 2):
        frame = data[COVARIATES + ["time"]].assign(event=(data["cause"] == k).astype(int))
        models.append(CoxPHFitter().fit(frame, duration_col="time", event_col="event"))
    patients = pd.concat([cohort(25, seed=12)[COVARIATES],
                          pd.DataFrame({"x1": [-3.0, 3.0], "x2": [0.0, 1.0]})], ignore_index=True)
    base = [m.baseline_cumulative_hazard_.iloc[:, 0] for m in models]
    lp = np.stack([m.predict_log_partial_hazard(patients).to_numpy() for m in models])
    return Fitted(models=models, times=[b.index.to_numpy() for b in base],
                  cumhaz=[b.to_numpy() for b in base], patients=patients, lp=lp)


def reference(fitted: Fitted, t: np.ndarray, cause: int, product_limit: bool) -> np.ndarray:
    """Loop over the union of jump times with lifelines' H_k(u | x) per patient."""
    union = np.unique(np.concatenate(fitted.times))
    hazards = []
    for m in fitted.models:
        h = m.predict_cumulative_hazard(fitted.patients)  # at every training duration
        hazards.append(h.reindex(union, method="ffill").fillna(0.0).to_numpy().T)  # (n, U)
    out = np.zeros((len(fitted.patients), t.size))
    for i in range(len(fitted.patients)):
        risk, surv_before, prev = 0.0, 1.0, [0.0] * len(hazards)
        values = []
        for u in range(union.size):
            now = [h[i, u] for h in hazards]
            if not product_limit:
                surv_before = float(np.exp(-sum(prev)))
            risk += surv_before * (now[cause] - prev[cause])
            if product_limit:
                surv_before *= 1.0 - sum(a - b for a, b in zip(now, prev, strict=True))
            values.append(risk)
            prev = now
        for col, when in enumerate(t):
            last = [v for v, u in zip(values, union, strict=True) if u <= when]
            out[i, col] = last[-1] if last else 0.0
    return out


def eval_times(fitted: Fitted, to_end: bool = True) -> np.ndarray:
    """Before the first jump, at and between jumps, after the last one; unsorted. Without ``to_end``
    only up to the 90th centile of follow-up: in the last few risk sets (2–3 patients) a Breslow
    jump times e^η exceeds 1 for some patients, where the product limit is undefined and a single
    cause's exponential-form risk exceeds 1 (both refused, tested below)."""
    union = np.unique(np.concatenate(fitted.times))
    t = np.concatenate(([0.0, union[0] / 2], union[::37], union[5::41] + 1e-6, [union[-1], union[-1] + 5.0]))
    return t if to_end else t[t <= np.quantile(union, 0.9)]


@pytest.mark.parametrize("cause", [0, 1])
@pytest.mark.parametrize("product_limit", [False, True])
def test_absolute_risk_equals_the_direct_sum(fitted: Fitted, cause: int, product_limit: bool) -> None:
    t = eval_times(fitted, to_end=not product_limit)
    assert np.array_equal(fitted.times[0], fitted.times[1])  # lifelines lists every training duration
    risk = absolute_risk(fitted.times, fitted.cumhaz, fitted.lp, t, cause=cause, product_limit=product_limit)
    ref = reference(fitted, t, cause, product_limit)
    assert risk.shape == (len(fitted.patients), t.size)
    assert np.max(np.abs(risk - ref)) <= 1e-12
    assert risk[:, 0].max() == 0.0 and risk.max() > 0.3  # the extreme patients carry a large risk


def test_event_free_survival_is_the_product_of_lifelines_survivals(fitted: Fitted) -> None:
    t = eval_times(fitted)
    surv = event_free_survival(fitted.times, fitted.cumhaz, fitted.lp, t)
    ref = np.ones((len(fitted.patients), t.size))
    for m in fitted.models:
        s = m.predict_survival_function(fitted.patients)
        idx = np.searchsorted(s.index.to_numpy(), t, side="right") - 1
        ref *= np.where(idx[:, None] >= 0, s.to_numpy()[np.maximum(idx, 0)], 1.0).T
    assert np.max(np.abs(surv - ref)) <= 1e-12


def exp_form_excess(fitted: Fitted, t: np.ndarray, causes: list[int],
                    bound: bool = False) -> np.ndarray:
    """Σ_{u ≤ t} S(u−)(ΔH − 1 + e^{−ΔH}) per patient and time, ΔH summed over ``causes`` (with
    ``bound`` its upper bound ½ Σ_{u ≤ t} S(u−) ΔH² instead)."""
    union = np.unique(np.concatenate([fitted.times[k] for k in causes]))
    cum = sum(np.exp(fitted.lp[k])[:, None] * np.interp(union, fitted.times[k], fitted.cumhaz[k])[None, :]
              for k in causes)  # the times are the union here, so interp reads the step exactly
    jump = np.diff(cum, axis=1, prepend=0.0)
    before = np.exp(-(cum - jump))
    terms = np.cumsum(before * (0.5 * jump ** 2 if bound else jump - 1.0 + np.exp(-jump)), axis=1)
    idx = np.searchsorted(union, t, side="right") - 1
    return np.where(idx >= 0, terms[:, np.maximum(idx, 0)], 0.0)


def test_the_identities_that_hold(fitted: Fitted) -> None:
    pl = (fitted.times, fitted.cumhaz, fitted.lp, eval_times(fitted, to_end=False))
    # product limit: the risks and the event-free survival add up to 1
    total = sum(absolute_risk(*pl, cause=k, product_limit=True) for k in (0, 1))
    assert np.max(np.abs(total + event_free_survival(*pl, product_limit=True) - 1.0)) <= 1e-12
    t = eval_times(fitted)
    args = (fitted.times, fitted.cumhaz, fitted.lp, t)
    # exponential form: they exceed 1 by Σ S(u−)(ΔH − 1 + e^{−ΔH}) ≥ 0, a second-order term
    total = sum(absolute_risk(*args, cause=k) for k in (0, 1))
    excess = total + event_free_survival(*args) - 1.0
    assert np.max(np.abs(excess - exp_form_excess(fitted, t, [0, 1]))) <= 1e-12
    assert excess.min() >= -1e-15 and np.all(excess <= exp_form_excess(fitted, t, [0, 1], bound=True) + 1e-15)
    assert excess.max() > 0.0


def test_one_cause(fitted: Fitted) -> None:
    t = eval_times(fitted, to_end=False)
    args = ([fitted.times[0]], [fitted.cumhaz[0]], fitted.lp[0], t)
    risk = absolute_risk(*args)
    idx = np.searchsorted(fitted.times[0], t, side="right") - 1
    h0 = np.where(idx >= 0, fitted.cumhaz[0][np.maximum(idx, 0)], 0.0)
    closed = 1.0 - np.exp(-np.exp(fitted.lp[0])[:, None] * h0[None, :])
    # 1 − exp(−H e^η) only up to the second-order term: F − (1 − e^{−H}) = Σ S(u−)(ΔH − 1 + e^{−ΔH})
    gap = risk - closed
    assert np.max(np.abs(gap - exp_form_excess(fitted, t, [0]))) <= 1e-12
    assert gap.min() >= -1e-15 and np.all(gap <= exp_form_excess(fitted, t, [0], bound=True) + 1e-15)
    # the product limit with one cause is the product-limit survival's complement, exactly
    steps = np.exp(fitted.lp[0])[:, None] * np.diff(fitted.cumhaz[0], prepend=0.0)[None, :]
    pl = 1.0 - np.cumprod(1.0 - steps, axis=1)
    idx = np.searchsorted(fitted.times[0], t, side="right") - 1
    expected = np.where(idx >= 0, pl[:, np.maximum(idx, 0)], 0.0)
    risk = absolute_risk([fitted.times[0]], [fitted.cumhaz[0]], fitted.lp[0], t, product_limit=True)
    assert np.max(np.abs(risk - expected)) <= 1e-12


@pytest.mark.parametrize("product_limit", [False, True])
def test_risk_is_a_probability_rising_in_time(fitted: Fitted, product_limit: bool) -> None:
    t = np.sort(eval_times(fitted, to_end=not product_limit))
    for cause in (0, 1):
        risk = absolute_risk(fitted.times, fitted.cumhaz, fitted.lp, t, cause=cause,
                             product_limit=product_limit)
        assert np.all(np.diff(risk, axis=1) >= 0.0)
        assert risk.min() >= 0.0 and risk.max() <= 1.0
        assert np.all(risk[:, 0] == 0.0)
    # a stronger competing cause lowers the risk of the cause of interest, a stronger own cause raises it
    base = absolute_risk(fitted.times, fitted.cumhaz, fitted.lp, t, product_limit=product_limit)
    competing = absolute_risk(fitted.times, fitted.cumhaz, fitted.lp + np.array([[0.0], [0.5]]), t,
                              product_limit=product_limit)
    own = absolute_risk(fitted.times, fitted.cumhaz, fitted.lp + np.array([[0.5], [0.0]]), t,
                        product_limit=product_limit)
    assert np.all(competing <= base) and np.all(own >= base)
    assert np.all(competing[:, -1] < base[:, -1]) and np.all(own[:, -1] > base[:, -1])


def test_the_sparse_tail_is_refused_where_the_risk_is_no_probability(fitted: Fitted) -> None:
    t = eval_times(fitted)  # up to the end of follow-up
    with pytest.raises(ValueError, match=r"exceeds 1 by t = .* for patient\(s\) \["):
        absolute_risk(fitted.times, fitted.cumhaz, fitted.lp, t, product_limit=True)
    with pytest.raises(ValueError, match="exceeds 1"):
        event_free_survival(fitted.times, fitted.cumhaz, fitted.lp, t, product_limit=True)
    # one cause, exponential form: Σ e^{−H(u−)} ΔH(u) passes 1 for a high-risk patient in the tail
    with pytest.raises(ValueError, match=r"absolute risk above 1 by t = .* for patient\(s\) \["):
        absolute_risk([fitted.times[0]], [fitted.cumhaz[0]], fitted.lp[0], t)
    # both causes, exponential form: a probability here, holding its value after the last jump
    risk = absolute_risk(fitted.times, fitted.cumhaz, fitted.lp, np.sort(t))
    assert risk.min() >= 0.0 and risk.max() <= 1.0 and np.array_equal(risk[:, -1], risk[:, -2])


def test_a_scalar_time_and_unsorted_times() -> None:
    times, cumhaz = [np.array([1.0, 2.0]), np.array([1.5])], [np.array([0.1, 0.3]), np.array([0.2])]
    lp = np.zeros((2, 1))
    # by hand: F_1(1) = 0.1; F_1(2) = 0.1 + exp(−(0.1 + 0.2)) · 0.2
    assert absolute_risk(times, cumhaz, lp, 1.0).tolist() == [[pytest.approx(0.1, abs=1e-15)]]
    risk = absolute_risk(times, cumhaz, lp, [2.0, 0.5, 1.7])
    assert np.max(np.abs(risk - [[0.1 + np.exp(-0.3) * 0.2, 0.0, 0.1]])) <= 1e-15
    other = absolute_risk(times, cumhaz, lp, [1.5], cause=1)
    assert np.max(np.abs(other - np.exp(-0.1) * 0.2)) <= 1e-15


@pytest.mark.parametrize(("times", "cumhaz", "lp", "kw", "message"), [
    ([[1.0, 2.0]], [[0.1, 0.2]], [[0.0], [0.0]], {}, "one linear predictor per cause"),
    ([[1.0, 2.0]], [[0.1, 0.2], [0.1]], [[0.0]], {}, "one baseline per cause"),
    ([[1.0, 2.0]], [[0.1]], [[0.0]], {}, "one length"),
    ([[2.0, 1.0]], [[0.1, 0.2]], [[0.0]], {}, "strictly increasing"),
    ([[1.0, 2.0]], [[0.2, 0.1]], [[0.0]], {}, "non-decreasing"),
    ([[1.0, 2.0]], [[-0.1, 0.1]], [[0.0]], {}, "non-negative"),
    ([[1.0, np.inf]], [[0.1, 0.2]], [[0.0]], {}, "finite"),
    ([[1.0, 2.0]], [[0.1, 0.2]], [[np.nan]], {}, "finite"),
    ([[1.0, 2.0]], [[0.1, 0.2]], [[0.0]], {"cause": 1}, "cause must index"),
    ([[1.0, 2.0]], [[0.5, 0.7]], [[1.0]], {"product_limit": True}, "exceeds 1 by t = 2 for patient"),
    # exponential form: F(2) = 0.5 + e^{−0.5} · 5 > 1
    ([[1.0, 2.0]], [[0.5, 5.5]], [[0.0]], {}, r"absolute risk above 1 by t = 2 for patient\(s\) \[0\]"),
])
def test_inconsistent_inputs_are_refused(times: list[list[float]], cumhaz: list[list[float]],
                                         lp: list[list[float]], kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        absolute_risk([np.array(x) for x in times], [np.array(x) for x in cumhaz], np.array(lp), [1.0, 2.0],
                      **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        absolute_risk([np.array([1.0])], [np.array([0.1])], np.zeros((1, 1)), [np.nan])
