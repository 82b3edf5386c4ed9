"""The model artifact (``fedprog.model/v1``) of a federated Cox fit: what is released, and how.

The writer decides the content (baseline steps of at least k events, counts rounded to k, the
declared ranges, the training record); the model object and its file format are
:class:`prognosis.CoxModel`'s, which seals (``sha256`` over the canonical JSON of every other field:
the same fit always gives the same hash, any edit is detected by :func:`verify_sha256`) and
validates the result against the one schema the device reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from federated.analyses.cox import CoxFit
from federated.analyses.knots import placed_study
from federated.analyses.logistic import FederatedLogisticFit
from federated.disclosure.policy import released_steps, round_to_k
from federated.study import StudySpec
from prognosis import SCHEMA, CoxModel, InputSpec, seal, verify_sha256, wald
from prognosis.logistic import LogisticModel
from prognosis.schema import INTERCEPT

__all__ = ["SCHEMA", "build_artifact", "build_logistic_artifact", "build_model", "seal", "verify_sha256"]


def _input(name: str, spec: InputSpec | None, coverage: np.ndarray | None, bins: int,
           min_cell: int) -> dict[str, Any]:
    spec = spec or InputSpec()
    code = spec.code.model_dump() if spec.code else \
        {"system": "urn:fedprog:covariate", "code": name, "display": name}
    out: dict[str, Any] = {"name": name, "code": code, "unit": spec.unit, "kind": spec.kind,
                           "min": spec.min, "max": spec.max}
    if spec.kind == "category":
        out["categories"] = [c.model_dump() for c in spec.categories or []]
        if spec.bands is not None:
            out["bands"] = spec.bands.model_dump()
        if spec.ordinal:
            out["ordinal"] = True
    if spec.spline is not None:
        out["spline"] = spec.spline.model_dump()
    out.update({k: v for k, v in (("title", spec.title), ("below", spec.below)) if v is not None})
    if coverage is not None and spec.min is not None and spec.max is not None:
        out["coverage"] = {"edges": np.linspace(spec.min, spec.max, bins + 1).tolist(),
                           "counts": round_to_k(coverage, min_cell).tolist()}
    return out


def _step_sums(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Sums of ``values`` (K, …) over each released step: grid times after the previous released
    time up to and including this one (the cells merged into it); trailing cells are not released."""
    if keep.size == 0:
        return values[:0]
    starts = np.concatenate(([0], keep[:-1] + 1))
    return np.add.reduceat(values[: keep[-1] + 1], starts, axis=0)


def _baseline(fit: CoxFit, study: StudySpec) -> dict[str, Any]:
    """Baseline survival released only where ≥ ``min_cell_count`` events accumulated.

    With it, when the fit has them, the increments of the hazard's variance over each released
    step (:func:`federated.cox_math.breslow_variance_increments`): ``variance_increments`` Σ d/S0²
    and ``xbar_increments`` Σ (x̄ − c) dH0, summed over the same merged cells as the released
    step function, so that their running sums at a released time are the exact pooled ones there.
    Not a new disclosure: both are functions of the per-time totals d, S0 and S1 at β̂ that the
    coordinator already decodes for the baseline itself (which releases Σ d/S0 per step), summed
    over the same steps of at least k events; no patient-level value, and no finer time
    resolution than the released curve.
    """
    mc = study.policy.min_cell_count
    strata = []
    for b in fit.baselines:
        keep = released_steps(b.events, mc)
        curve: dict[str, Any] = {"label": b.label, "times": b.times[keep].tolist(),
                                 "survival": b.survival[keep].tolist()}
        if b.variance is not None and b.xbar is not None:
            curve.update(variance_increments=_step_sums(b.variance, keep).tolist(),
                         xbar_increments=_step_sums(b.xbar, keep).tolist())
        strata.append(curve)
    baseline: dict[str, Any] = {"center": fit.center.tolist(), "min_cell_count": mc}
    if fit.strata is None and not study.strata_by_site and len(strata) == 1:
        baseline.update({k: v for k, v in strata[0].items() if k != "label"})
    else:  # stratified: one baseline per stratum, none shared
        baseline.update(times=[], survival=[], strata=strata,
                        strata_column=fit.strata, strata_by_site=study.strata_by_site)
    return baseline


def _exact_on(fit: CoxFit, study: StudySpec, privacy: dict[str, Any] | None) -> str:
    """What the fit is exact on: k-cells at the source coarsen the times, so an exact fit is exact
    on the coarsened times; a private fit states its own (a noisy likelihood, exact on nothing)."""
    if privacy is not None and "exact_on" in privacy:
        return str(privacy["exact_on"])
    return (f"event times coarsened to the {fit.time_grid} grid"
            + (f", administratively censored at {study.max_time:g} {study.time_unit}s"
               if study.max_time is not None else "")
            + ("; covariates clipped to their declared ranges" if study.cohort().ranges else "")
            + (_SHIFTED if study.shift_sparse_censoring and fit.time_grid == "year" else ""))


_SHIFTED = ("; at each site, censored patients of a yearly cell holding fewer than k censored at the "
            "start of their year (censored earlier: unbiased under non-informative censoring)")


def build_artifact(fit: CoxFit, study: StudySpec, *, privacy: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sealed artifact (JSON object) of :func:`build_model`."""
    return build_model(fit, study, privacy=privacy).to_artifact()


def build_model(fit: CoxFit, study: StudySpec, *, privacy: dict[str, Any] | None = None) -> CoxModel:
    """The released model of a Cox fit under ``study``'s settings, sealed and validated.

    Nothing patient-level: ranges are the declared ones (with securely summed coverage
    histograms), the baseline is released with small cells merged, and only totals over sites
    are recorded. Adversary: a reader of releases differencing two artifacts (e.g. before and
    after a withdrawal). Counts are rounded to multiples of k (:func:`round_to_k`) and the centre
    is the study's reference patient, never the data mean; ``training.release`` says which
    fields are exact and which rounded.
    """
    study = placed_study(study, fit.placed_knots)  # a spline's knots as the fit placed them
    k = study.policy.min_cell_count
    names = list(fit.covariates)
    body = {
        "schema": SCHEMA,
        "model_id": study.model_id,
        "version": study.version,
        "kind": "cox-ph",
        "outcome": {"name": study.outcome, "time_unit": study.time_unit,
                    "horizons": list(study.horizons)},
        "inputs": [_input(n, study.inputs.get(n), fit.range_counts.get(n), study.range_bins,
                          study.policy.min_cell_count) for n in study.covariates],
        "coefficients": dict(zip(names, fit.coef.tolist(), strict=True)),
        "standard_errors": dict(zip(names, fit.se.tolist(), strict=True)),
        "confidence_intervals": dict(zip(names, fit.ci.tolist(), strict=True)),
        "p_values": dict(zip(names, fit.p_value.tolist(), strict=True)),
        "covariance": fit.covariance.tolist(),
        "baseline_survival": _baseline(fit, study),
        "ties": fit.ties,
        "penalty": fit.penalty,
        "training": {
            "sites": list(fit.sites),
            "dropped": [{"site": s, "reason": r} for s, r in fit.dropped.items()],
            "n": int(round_to_k(fit.n, k)), "events": int(round_to_k(fit.events, k)), "rounds": fit.rounds,
            "iterations": fit.iterations, "converged": fit.converged,
            "loglik": fit.loglik, "loglik_null": fit.loglik_null,
            "secure_aggregation": fit.secure, "time_grid": fit.time_grid,
            "exact_on": _exact_on(fit, study, privacy),
            "policy": study.policy.model_dump(),
            "differential_privacy": privacy,
            "release": {
                "rounded_to_multiple_of": k,
                "rounded": ["training.n", "training.events", "inputs[].coverage.counts"],
                "exact": [] if privacy is not None else
                ["coefficients", "standard_errors", "confidence_intervals", "p_values", "covariance",
                 "baseline_survival (at the reference patient, steps of at least k events)",
                 "training.loglik", "training.loglik_null"],
                "noisy": [] if privacy is None else privacy.get("noisy", []),
                "center": "the study's reference patient (declared reference, else the middle of the "
                          "declared range, else 0), not a data mean",
            },
            "consent_checkpoint": fit.consent_checkpoint,
        },
    }
    if study.missing == "complete-case":  # only then: other studies' artifacts keep their bytes
        body["training"]["missing"] = {
            "policy": "complete-case: rows missing a value of the study's columns left out at each site",
            "rows_left_out": dict(fit.incomplete), "rounded_to_multiple_of": k}
    if study.intended_use is not None:  # only when declared: other studies' artifacts keep their bytes
        body["intended_use"] = study.intended_use.model_dump()
    if study.interactions:
        body["interactions"] = [list(pair) for pair in study.interactions]
    return CoxModel.from_artifact(seal(body))


def build_logistic_artifact(result: FederatedLogisticFit, study: StudySpec) -> dict[str, Any]:
    """The sealed ``fedprog.model/v1`` artifact (``kind: "logistic"``) of a federated logistic fit.

    The intercept is released at the study's reference patient (the log-odds of the event for her,
    ``coefficients["(intercept)"]``; :meth:`prognosis.logistic.LogisticModel.from_fit`), never at a
    data mean; counts are rounded to multiples of k. Adversary: a reader of releases, as for
    :func:`build_model`.
    """
    study = placed_study(study, result.placed_knots)  # a spline's knots as the fit placed them
    k = study.policy.min_cell_count
    fit, columns = result.fit, list(result.columns)
    center = study.cohort().reference_columns()
    model = LogisticModel.from_fit(columns, fit.coef, fit.covariance, center)
    names = [INTERCEPT, *columns]
    coef = np.concatenate(([model.intercept], model.beta))
    se, ci, p = wald(coef, model.covariance)
    body: dict[str, Any] = {
        "schema": SCHEMA, "model_id": study.model_id, "version": study.version, "kind": "logistic",
        "outcome": {"name": study.outcome, "time_unit": study.time_unit, "horizons": list(study.horizons)},
        "inputs": [_input(n, study.inputs.get(n), result.range_counts.get(n), study.range_bins, k)
                   for n in study.covariates],
        "coefficients": dict(zip(names, coef.tolist(), strict=True)),
        "standard_errors": dict(zip(names, se.tolist(), strict=True)),
        "confidence_intervals": dict(zip(names, ci.tolist(), strict=True)),
        "p_values": dict(zip(names, p.tolist(), strict=True)),
        "covariance": model.covariance.tolist(), "penalty": fit.ridge,
        "logistic": {"center": center.tolist(), "min_cell_count": k},
        "training": {
            "sites": list(result.sites), "dropped": [{"site": s, "reason": r} for s,
                                                     r in result.dropped.items()],
            "n": int(round_to_k(fit.n, k)), "events": int(round_to_k(fit.events, k)), "rounds": result.rounds,
            "iterations": fit.iterations, "converged": fit.converged, "loglik": fit.loglik,
            "loglik_null": fit.loglik_null, "secure_aggregation": result.secure,
            "exact_on": "the recorded binary outcome" + ("; covariates clipped to their declared ranges"
                                                         if study.cohort().ranges else ""),
            "policy": study.policy.model_dump(), "differential_privacy": None,
            "release": {"rounded_to_multiple_of": k,
                        "rounded": ["training.n", "training.events", "inputs[].coverage.counts"],
                        "exact": ["coefficients", "standard_errors", "confidence_intervals", "p_values",
                                  "covariance", "training.loglik", "training.loglik_null"],
                        "noisy": [], "center": "the study's reference patient, not a data mean"},
            "consent_checkpoint": result.consent_checkpoint,
        },
    }
    if study.intended_use is not None:
        body["intended_use"] = study.intended_use.model_dump()
    if study.interactions:
        body["interactions"] = [list(pair) for pair in study.interactions]
    if study.missing == "complete-case":
        body["training"]["missing"] = {
            "policy": "complete-case: rows missing a value of the study's columns left out at each site",
            "rows_left_out": dict(result.incomplete), "rounded_to_multiple_of": k}
    return LogisticModel.from_artifact(seal(body)).to_artifact()
