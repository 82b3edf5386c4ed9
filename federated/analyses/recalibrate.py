"""Model updating at a hospital that did not train (coordinator side): ask one site to recalibrate a
released Cox model on its own rows, and seal the updated model as a new ``fedprog.model/v1`` artifact;
:func:`recalibrate` is the one entry for every kind (a logistic model's:
:mod:`federated.analyses.recalibrate_logistic`; what both share:
:mod:`federated.analyses.recalibration_common`).

Recalibration in slope and baseline (van Houwelingen 2000, *Stat Med* 19:3401; Royston & Altman
2013, *BMC Med Res Methodol* 13:33; Steyerberg 2019, *Clinical Prediction Models*, 2nd ed., ch. 20):
the site fits the calibration slope γ̂ of the model's linear predictor η = β·(x − c) and Breslow's
baseline at the offset γ̂η (:mod:`federated.site.recalibration`); the updated model has
β' = γ̂ β, the same centre c, that baseline, and the predecessor's inputs, outcome, horizons and
intended use. The site answers in plaintext (there is one site: nothing to mask it in) with
aggregates only — baseline steps of at least k events, counts rounded to k.

Uncertainty: the artifact's covariance is γ̂² Σ (Σ the predecessor's), the covariance of γ̂ β
**conditional on γ̂**: the slope's own uncertainty (its standard error is recorded in
``training.recalibration``) is not propagated, so the standard errors, Wald intervals and the
device's prediction intervals (which use the covariance and the baseline's variance terms,
:meth:`prognosis.CoxModel.se_loglog`) are narrower than a full account would give. Nor is γ̂ |SE(β)|
a standard error of β' from the site's data: the coefficients were not re-estimated there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from federated.analyses import recalibrate_logistic
from federated.analyses.artifact import build_artifact
from federated.analyses.cox import Baseline, CoxFit
from federated.analyses.knots import model_study
from federated.analyses.recalibration_common import (
    RecalibrationError,
    SiteUpdate,
    asked_model,
    base_record,
    check_kept,
    declared,
    one_site,
    recalibration_cohort,
    wald_ci,
)
from federated.disclosure.rules import StudyProtocol
from federated.exceptions import SiteError
from federated.protocol.messages import ConsentGate, RecalibrateReply, RecalibrateRequest
from federated.protocol.transport import Endpoint, Transport
from federated.study import LADDER, StudySpec, rungs_from
from prognosis import CoxModel, ModelError, evaluable, seal

_SHIFTED = ", its censored patients of a yearly cell holding fewer than k censored at the start of their year"


def ask_site(sites: Endpoint | Sequence[Endpoint] | Transport, artifact: dict[str, Any], study: StudySpec, *,
             consent: ConsentGate | None = None, protocol: StudyProtocol | None = None
             ) -> SiteUpdate[RecalibrateReply]:
    """Send ``recalibrate`` for ``artifact`` to the one site ``sites`` reaches, on the model's own time
    grid (``training.time_grid``), climbing the public ladder while the site refuses a grid for
    small cells (each attempt spends one of the site's evaluations of the study); the reply is
    checked before use (:func:`check_reply`).

    ``protocol`` is the approved study the site answers for (default: for an in-process site, the
    study's own, approved there by the caller as its operator,
    :func:`federated.analyses.runner.study_protocol`).
    """
    model = _loaded(artifact)
    cohort = recalibration_cohort(study, model)
    coord, site = one_site(sites, model, study, protocol)
    fields = {"consent": consent, "model": asked_model(model)}
    grid = str(model.artifact.training.get("time_grid") or cohort.time_grid)
    refused: SiteError | None = None
    for rung in rungs_from(grid) or (grid,):
        try:
            replies = coord.broadcast(RecalibrateRequest, RecalibrateReply,
                                      cohort=cohort.model_copy(update={"time_grid": rung}), **fields)
        except SiteError as exc:
            if exc.code != "cells":
                raise
            refused = exc
            continue
        return SiteUpdate(site, check_reply(replies[site], model, rung, site), coord.rounds)
    assert refused is not None
    raise refused


def check_reply(reply: RecalibrateReply, model: CoxModel, grid: str, site: str) -> RecalibrateReply:
    """``reply`` if consistent (Flower's rule: validate before arithmetic), else
    :class:`RecalibrationError`: the grid asked, K ≥ 1 released steps with one value per step in each
    array (p per step for ``xbar_increments``), times strictly increasing and positive, the cumulative
    hazard positive and non-decreasing, variance increments ≥ 0, counts multiples of k."""
    times, hazard = reply.times.to_numpy(), reply.cumulative_hazard.to_numpy()
    v, xbar = reply.variance_increments.to_numpy(), reply.xbar_increments.to_numpy()
    k, p = times.size, len(model.columns)
    problems = [
        (reply.time_grid != grid, f"time_grid {reply.time_grid!r}, asked {grid!r}"),
        (times.ndim != 1 or k == 0, f"times: want a non-empty vector, got shape {times.shape}"),
        (hazard.shape != (k,) or v.shape != (k,), f"cumulative_hazard, variance_increments: want ({k},)"),
        (xbar.shape != (k, p), f"xbar_increments: shape {xbar.shape}, want ({k}, {p})"),
        (bool(k) and (times[0] <= 0 or np.any(np.diff(times) <= 0)), "times: not positive and increasing"),
        (bool(k) and (hazard[0] <= 0 or np.any(np.diff(hazard) < 0)), "cumulative_hazard: not positive and "
                                                                       "non-decreasing"),
        (bool(np.any(v < 0)), "variance_increments: negative"),
        (reply.n % reply.min_cell_count or reply.events % reply.min_cell_count,
         "n, events: not multiples of min_cell_count"),
    ]
    bad = [why for wrong, why in problems if wrong]
    if bad:
        raise RecalibrationError(f"site {site!r}: inconsistent recalibration reply: {bad[0]}")
    return reply


def recalibrated_artifact(artifact: dict[str, Any], study: StudySpec, update: SiteUpdate[RecalibrateReply], *,
                          model_id: str,
                          version: str = "1", consent: ConsentGate | None = None) -> dict[str, Any]:
    """The sealed ``fedprog.model/v1`` artifact of ``artifact`` recalibrated by ``update``.

    Built by :func:`federated.analyses.artifact.build_artifact` from a :class:`CoxFit` holding
    β' = γ̂ β, covariance γ̂² Σ (conditional on γ̂, see the module docstring), the predecessor's centre,
    ties and penalty, the site's released baseline steps and its log-likelihoods; the inputs are the
    predecessor's verbatim (with their training coverage); ``training.exact_on`` says what the
    baseline is exact on and ``training.recalibration`` records the update: predecessor, site, slope
    with SE and 95% Wald CI, n and events (rounded), and what coefficients and covariance are.
    Refused when the result's inputs, outcome or intended use differ from the predecessor's.
    """
    model = _loaded(artifact)
    reply, k = update.reply, update.reply.min_cell_count
    times = reply.times.to_numpy()
    steps = Baseline(label="", times=times, cumulative_hazard=reply.cumulative_hazard.to_numpy(),
                     events=np.full(times.size, k),  # each released step holds ≥ k events (the site's rule)
                     variance=reply.variance_increments.to_numpy(), xbar=reply.xbar_increments.to_numpy())
    s = reply.slope
    fit = CoxFit(covariates=model.columns, coef=s * model.beta, covariance=s * s * model.covariance,
                 center=np.array(model.center), baselines=(steps,), loglik=reply.loglik,
                 loglik_null=reply.loglik_null, iterations=reply.iterations, rounds=update.rounds,
                 converged=True, ties=model.artifact.ties or "efron",
                 penalty=float(model.artifact.penalty or 0.0),
                 sites=(update.site,), n=reply.n, events=reply.events, secure=False,
                 time_grid=reply.time_grid,
                 consent_checkpoint=None if consent is None else consent.model_dump(exclude={"job"}))
    spec = model_study(study, artifact).model_copy(update={  # a spline's knots as the model records them
        "model_id": model_id, "version": version, "strata": None, "strata_by_site": False,
        "policy": study.policy.model_copy(update={"min_cell_count": k})})
    built = build_artifact(fit, spec)
    if declared(built["inputs"]) != declared(artifact["inputs"]):
        raise RecalibrationError(f"inputs: the study's differ from {model.ref}'s (recalibrate with the study "
                                 "the model was trained under)")
    training = dict(built["training"])
    training["exact_on"] = (f"the baseline: event times of site {update.site!r} inside the intended-use "
                            f"envelope, coarsened to the {reply.time_grid} grid"
                            + (f", administratively censored at {study.max_time:g} {study.time_unit}s"
                               if study.max_time is not None else "")
                            + (_SHIFTED if study.shift_sparse_censoring and reply.time_grid == LADDER[-1]
                               else "")
                            + f"; the coefficients: {model.ref}'s times the slope")
    training["recalibration"] = _record(model, update)
    # the predecessor's inputs verbatim: with their training coverage (the release gate's envelope check)
    try:
        new = CoxModel.from_artifact(seal({**built, "inputs": artifact["inputs"], "training": training}))
    except ModelError as exc:
        raise RecalibrationError(f"the recalibrated model is not a valid artifact: {exc}") from None
    check_kept(new, model)
    return new.to_artifact()


def _record(model: CoxModel, update: SiteUpdate[RecalibrateReply]) -> dict[str, Any]:
    """The ``training.recalibration`` block: what was updated, where, by how much, and what is not
    propagated."""
    r = update.reply
    return {
        **base_record(model, update, "recalibration in slope and baseline (van Houwelingen 2000; Royston & "
                                     "Altman 2013; Steyerberg 2019, ch. 20)"),
        "slope": r.slope, "slope_se": r.slope_se, "slope_ci": wald_ci(r.slope, r.slope_se),
        "coefficients": "the predecessor's coefficients times the slope (not re-estimated at the site)",
        "covariance": "slope² times the predecessor's covariance: conditional on the slope, whose own "
                      "uncertainty is not propagated (standard errors, confidence intervals, p-values and "
                      "prediction intervals are narrower than a full account)",
        "baseline": "Breslow's at the site with the offset slope × the predecessor's linear predictor, at "
                    "the predecessor's centre, released at steps of at least min_cell_count events",
    }


def _loaded(artifact: dict[str, Any]) -> CoxModel:
    try:
        return evaluable(artifact, "a recalibration")
    except ModelError as exc:
        raise RecalibrationError(f"the model cannot be recalibrated: {exc}") from None


#: per kind of model: ask the site, then seal its update (each kind's own pair)
_KINDS: dict[str, tuple[Callable[..., SiteUpdate[Any]], Callable[..., dict[str, Any]]]] = {
    "cox-ph": (ask_site, recalibrated_artifact),
    "logistic": (recalibrate_logistic.ask_site, recalibrate_logistic.recalibrated_artifact),
}


def recalibrate(sites: Endpoint | Sequence[Endpoint] | Transport, artifact: dict[str, Any], study: StudySpec,
                *, model_id: str, version: str = "1", consent: ConsentGate | None = None,
                protocol: StudyProtocol | None = None) -> dict[str, Any]:
    """The sealed recalibrated model, by the artifact's kind: for a Cox model :func:`ask_site` then
    :func:`recalibrated_artifact`, for a logistic one
    :func:`federated.analyses.recalibrate_logistic.ask_site` then its
    :func:`~federated.analyses.recalibrate_logistic.recalibrated_artifact`."""
    kind = str(artifact.get("kind", "cox-ph"))
    if kind not in _KINDS:
        raise RecalibrationError(f"a {kind!r} model cannot be recalibrated (kinds: {', '.join(_KINDS)})")
    ask, sealed = _KINDS[kind]
    update = ask(sites, artifact, study, consent=consent, protocol=protocol)
    return sealed(artifact, study, update, model_id=model_id, version=version, consent=consent)


__all__ = ["RecalibrationError", "SiteUpdate", "ask_site", "check_reply", "recalibrate",
           "recalibrated_artifact", "recalibration_cohort"]
