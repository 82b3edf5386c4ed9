"""Summary tables of fitted survival models, with the column names statisticians know from lifelines.

Pure functions of a fit (:class:`~federated.analyses.cox.CoxFit`, :class:`~federated.analyses.km.KMCurve`);
the estimators (:mod:`federated.analyses.estimator`) and the command line print what they return.

* Cox: one row per covariate — coefficient, hazard ratio, standard error, Wald limits, z and the
  two-sided p-value — as lifelines' ``CoxPHFitter.summary`` (Davidson-Pilon 2019, *J Open Source
  Softw* 4:1317) has them; the likelihood-ratio test of all coefficients (Klein & Moeschberger
  2003, §8.3) and the partial AIC.
* Kaplan–Meier: the survival function, its Greenwood log-log band and the median as lifelines'
  ``KaplanMeierFitter`` holds them (``timeline`` index starting at 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import chdtrc, ndtri

from federated.analyses.cox import CoxFit
from federated.analyses.km import KMCurve
from federated.exceptions import DataError


@dataclass(frozen=True)
class ChiSquareTest:
    """A χ² test: ``statistic`` on ``df`` degrees of freedom, upper-tail ``p_value``."""

    statistic: float
    df: int
    p_value: float


def _level(alpha: float) -> tuple[float, str]:
    """The normal quantile z_{1−α/2} and the label lifelines gives the level ("95")."""
    if not (isinstance(alpha, float | int) and 0.0 < alpha < 1.0):
        raise DataError(f"alpha={alpha!r}: want a number between 0 and 1 (0.05 for 95% intervals)")
    return float(ndtri(1.0 - alpha / 2.0)), f"{100 * (1 - alpha):g}"


def cox_summary(fit: CoxFit, alpha: float = 0.05) -> pd.DataFrame:
    """Coefficient table of a Cox fit, columns and index named as lifelines' ``CoxPHFitter.summary``.

    Columns: ``coef``, ``exp(coef)``, ``se(coef)``, ``coef lower 95%``, ``coef upper 95%``,
    ``exp(coef) lower 95%``, ``exp(coef) upper 95%``, ``cmp to`` (0), ``z``, ``p``, ``-log2(p)``
    (the level follows ``alpha``); index ``covariate``. Wald limits β ± z_{1−α/2}·se; z = β / se;
    p = 2(1 − Φ(|z|)). The standard errors are the model-based ones (inverse observed information).
    """
    z, level = _level(alpha)
    coef, se = fit.coef, fit.se
    p = fit.p_value
    lower, upper = coef - z * se, coef + z * se
    with np.errstate(divide="ignore", over="ignore"):  # p = 0 and exp(±huge) as lifelines: inf
        neg_log2_p = -np.log2(p)
        exp_lower, exp_upper = np.exp(lower), np.exp(upper)
    table = {
        "coef": coef, "exp(coef)": np.exp(coef), "se(coef)": se,
        f"coef lower {level}%": lower, f"coef upper {level}%": upper,
        f"exp(coef) lower {level}%": exp_lower, f"exp(coef) upper {level}%": exp_upper,
        "cmp to": np.zeros_like(coef), "z": fit.z, "p": p, "-log2(p)": neg_log2_p,
    }
    return pd.DataFrame(table, index=pd.Index(list(fit.covariates), name="covariate"))


def likelihood_ratio_test(fit: CoxFit) -> ChiSquareTest:
    """Likelihood-ratio test of β = 0: 2(ℓ(β̂) − ℓ(0)) on p degrees of freedom."""
    statistic = 2.0 * (fit.loglik - fit.loglik_null)
    df = len(fit.covariates)
    return ChiSquareTest(statistic, df, float(chdtrc(df, statistic)))


def _p_text(p: float, decimals: int) -> str:
    """A p-value as lifelines prints it: "<0.005" below half the last printed digit."""
    threshold = 0.5 * 10 ** (-decimals)
    return f"<{threshold:g}" if p < threshold else f"{p:.{decimals}f}"


def format_cox_summary(fit: CoxFit, *, alpha: float = 0.05, decimals: int = 2,
                       privacy: dict[str, Any] | None = None, title: str = "fedprog.FederatedCoxPH") -> str:
    """The fit's facts, coefficient table and global tests as text, laid out like lifelines'
    ``print_summary``. With ``privacy`` (the artifact's ``training.differential_privacy``) the
    counts are marked noisy ("≈") and the privacy loss is stated."""
    private = privacy is not None
    about = "≈" if private else ""
    how = "masked sums only (secure aggregation)" if fit.secure else "plaintext sums"
    facts = {
        "sites": f"{', '.join(fit.sites)} — the coordinator saw {how}",
        "ties": "piecewise-exponential, noisy Newton" if private else fit.ties, "penalty": f"{fit.penalty:g}",
        "time grid": f"{fit.time_grid} (the fit is exact on event times coarsened to it)",
        "strata": fit.strata or "none",
        "number of observations": f"{about}{fit.n}",
        "number of events observed": f"{about}{fit.events}",
        f"{'profile' if private else 'partial'} log-likelihood": f"{fit.loglik:.{decimals}f}",
        "Newton iterations": f"{fit.iterations} ({'converged' if fit.converged else 'NOT converged'}), "
                             f"{fit.rounds} rounds",
    }
    facts.update({f"dropped site {s}": reason for s, reason in fit.dropped.items()})
    if privacy is not None:
        facts["differential privacy"] = (f"epsilon = {privacy['epsilon']:g}, delta = {privacy['delta']:g} "
                                         f"({privacy['mechanism']} noise added by the sites): the estimates "
                                         "are noisy and the errors omit the noise's own variance")
    width = max(len(k) for k in facts)
    table = cox_summary(fit, alpha).to_string(
        float_format=lambda v: f"{v:.{decimals}{'f' if abs(v) < 1e6 else 'e'}}",
        formatters={"p": lambda v: _p_text(v, decimals)})
    lines = [f"<{title}: fitted over {len(fit.sites)} site(s), {about}{fit.n} patients, "
             f"{about}{fit.events} events>",
             *(f"{k:>{width}} = {v}" for k, v in facts.items()), "", "---", table, "---"]
    if private:  # a noisy profile likelihood: no likelihood-ratio test, no AIC
        return "\n".join([*lines, "log-likelihood ratio test = not available (noisy likelihood)"])
    lr = likelihood_ratio_test(fit)
    aic = -2.0 * fit.loglik + 2.0 * len(fit.covariates)
    return "\n".join([*lines, f"Partial AIC = {aic:.{decimals}f}",
                      f"log-likelihood ratio test = {lr.statistic:.{decimals}f} on {lr.df} df",
                      f"-log2(p) of ll-ratio test = {_neg_log2(lr.p_value):.{decimals}f}"])


def _neg_log2(p: float) -> float:
    return math.inf if p <= 0.0 else -math.log2(p)


# ------------------------------------------------------------------ Kaplan–Meier
def _timeline(curve: KMCurve) -> tuple[np.ndarray, bool]:
    """The curve's times with 0 prepended (lifelines' ``timeline`` starts at 0), and whether it was."""
    prepend = curve.times.size == 0 or curve.times[0] > 0
    return (np.concatenate(([0.0], curve.times)) if prepend else curve.times.astype(float)), prepend


def km_survival_frame(curve: KMCurve, label: str = "KM_estimate") -> pd.DataFrame:
    """S(t) as lifelines' ``KaplanMeierFitter.survival_function_``: one column ``label``, index
    ``timeline`` (0, then the released event times)."""
    times, prepend = _timeline(curve)
    values = np.concatenate(([1.0], curve.survival)) if prepend else curve.survival
    return pd.DataFrame({label: values}, index=pd.Index(times, name="timeline"))


def km_confidence_frame(curve: KMCurve, label: str = "KM_estimate") -> pd.DataFrame:
    """The 95% Greenwood log-log band as lifelines' ``confidence_interval_``
    (columns ``<label>_lower_0.95``, ``<label>_upper_0.95``)."""
    times, prepend = _timeline(curve)
    lower = np.concatenate(([1.0], curve.ci_lower)) if prepend else curve.ci_lower
    upper = np.concatenate(([1.0], curve.ci_upper)) if prepend else curve.ci_upper
    return pd.DataFrame({f"{label}_lower_0.95": lower, f"{label}_upper_0.95": upper},
                        index=pd.Index(times, name="timeline"))


def km_event_table(curve: KMCurve) -> pd.DataFrame:
    """Numbers at risk and events at each released time (events summed over merged small cells),
    with lifelines' ``event_table`` column names ``at_risk`` and ``observed``."""
    return pd.DataFrame({"at_risk": curve.at_risk, "observed": curve.events},
                        index=pd.Index(curve.times.astype(float), name="event_at"))


def median_survival_time(curve: KMCurve) -> float:
    """The first released time with S(t) ≤ 0.5 (lifelines' ``median_survival_time_``); ∞ if none."""
    below = np.flatnonzero(curve.survival <= 0.5)
    return float(curve.times[below[0]]) if below.size else math.inf
