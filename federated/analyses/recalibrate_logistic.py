"""Model updating of a logistic model at a hospital that did not train (coordinator side): ask one site
for the calibration of a released logistic model on its own rows, and seal the updated model as a new
``fedprog.model/v1`` artifact (``kind: "logistic"``).

Logistic recalibration (Cox 1958, *Biometrika* 45:562; Steyerberg 2019, *Clinical Prediction
Models*, 2nd ed., ch. 20, "recalibration in the large and slope"; Van Calster et al. 2016,
*J Clin Epidemiol* 74:167): with η = α + β·(d(x) − c) the released model's log-odds, the site fits
logit P(y = 1) = a + b η on its consented binary rows inside the intended-use envelope
(:mod:`federated.site.logistic_recalibration`) and the updated model predicts

    η'(x) = â + b̂ η(x) = (â + b̂ α) + (b̂ β)·(d(x) − c),

so α' = â + b̂ α is again the log-odds of the reference patient at the *same* centre c and
β' = b̂ β; the inputs, design, centre, outcome, horizon and intended use are the predecessor's verbatim
(the artifact is the predecessor's with these fields replaced). The site answers in plaintext (there is
one site: nothing to mask it in) with aggregates only — two coefficients, their covariance, counts
rounded to k.

Uncertainty: the artifact's covariance of (α', β') is b̂² Σ (Σ the predecessor's covariance of
(α, β)), the covariance of â + b̂ (α, β) **conditional on (â, b̂)**: the uncertainty of the site's
â and b̂ (their standard errors and covariance are recorded in ``training.recalibration``) is not
propagated, so the standard errors, Wald intervals and the device's prediction intervals
(:meth:`prognosis.logistic.LogisticModel.se_lp`) are narrower than a full account would give. Nor is
b̂ |SE(β)| a standard error of β' from the site's data: the coefficients were not re-estimated there.
(The site's own information about the reference patient's log-odds, Var(â + b̂ α) given α, is in the
recorded covariance of (â, b̂); it is not combined with Σ either.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from federated.analyses.recalibration_common import (
    RecalibrationError,
    SiteUpdate,
    asked_model,
    base_record,
    check_kept,
    one_site,
    recalibration_cohort,
    wald_ci,
)
from federated.disclosure.rules import StudyProtocol
from federated.protocol.messages import ConsentGate, RecalibrateLogisticReply, RecalibrateRequest
from federated.protocol.transport import Endpoint, Transport
from federated.study import StudySpec
from prognosis import ModelError, seal, wald
from prognosis.logistic import LogisticModel
from prognosis.schema import INTERCEPT

METHOD = ("logistic recalibration of the intercept and slope of the linear predictor (Cox 1958; "
          "Steyerberg 2019, ch. 20; Van Calster et al. 2016)")


def ask_site(sites: Endpoint | Sequence[Endpoint] | Transport, artifact: dict[str, Any], study: StudySpec, *,
             consent: ConsentGate | None = None, protocol: StudyProtocol | None = None
             ) -> SiteUpdate[RecalibrateLogisticReply]:
    """Send ``recalibrate`` for the logistic model ``artifact`` to the one site ``sites`` reaches, on the
    study's binary cohort (one attempt: a binary cohort has no time grid to coarsen); the reply is
    checked before use (:func:`check_reply`). ``protocol`` as in
    :func:`federated.analyses.recalibration_common.one_site`."""
    model = _loaded(artifact)
    cohort = recalibration_cohort(study, model)
    coord, site = one_site(sites, model, study, protocol)
    replies = coord.broadcast(RecalibrateRequest, RecalibrateLogisticReply, cohort=cohort, consent=consent,
                              model=asked_model(model))
    return SiteUpdate(site, check_reply(replies[site], site), coord.rounds)


def check_reply(reply: RecalibrateLogisticReply, site: str) -> RecalibrateLogisticReply:
    """``reply`` if consistent (validate before arithmetic), else :class:`RecalibrationError`: a 2×2
    symmetric positive definite covariance, 0 < events < n, counts multiples of k, the log-likelihood at
    the estimate at least that of the unchanged model (it is the maximum) and both ≤ 0."""
    cov = reply.covariance.to_numpy()
    k = reply.min_cell_count
    pd_ = cov.shape == (2, 2) and cov[0, 0] > 0 and cov[1, 1] > 0 and np.linalg.det(cov) > 0
    problems = [
        (not pd_, f"covariance: want a 2×2 positive definite matrix, got shape {cov.shape}"),
        (pd_ and not np.allclose(cov, cov.T, rtol=1e-10, atol=0), "covariance: not symmetric"),
        (not 0 < reply.events < reply.n, "events: want 0 < events < n"),
        (reply.n % k or reply.events % k, "n, events: not multiples of min_cell_count"),
        (reply.loglik > 0 or reply.loglik_unchanged > 0, "loglik: a Bernoulli log-likelihood is ≤ 0"),
        (reply.loglik < reply.loglik_unchanged - 1e-9 * max(1.0, abs(reply.loglik_unchanged)),
         "loglik: below the unchanged model's (not the maximum)"),
    ]
    bad = [why for wrong, why in problems if wrong]
    if bad:
        raise RecalibrationError(f"site {site!r}: inconsistent recalibration reply: {bad[0]}")
    return reply


def updated(model: LogisticModel, intercept: float, slope: float) -> tuple[np.ndarray, np.ndarray]:
    """(α', β') = (â + b̂ α, b̂ β), intercept first, and their covariance b̂² Σ conditional on (â, b̂)
    (module docstring)."""
    coef = np.concatenate(([intercept + slope * model.intercept], slope * model.beta))
    return coef, slope * slope * model.covariance


def recalibrated_artifact(artifact: dict[str, Any], study: StudySpec,
                          update: SiteUpdate[RecalibrateLogisticReply], *, model_id: str, version: str = "1",
                          consent: ConsentGate | None = None) -> dict[str, Any]:
    """The sealed ``fedprog.model/v1`` artifact of the logistic ``artifact`` recalibrated by ``update``.

    The predecessor's artifact with the coefficients (α', β') of :func:`updated`, their Wald standard
    errors, intervals and p-values (:func:`prognosis.wald`) and covariance (conditional on (â, b̂), see
    the module docstring), the site's k, and a new ``training`` record: the site, its rounded counts,
    the calibration fit's log-likelihood, the study's policy at the site's k, the consent checkpoint,
    and ``training.recalibration`` (predecessor, site, â and b̂ with SEs, 95% Wald CIs and their
    covariance, the log-likelihoods at (â, b̂) and at (0, 1) with Cox's likelihood-ratio statistic,
    and what the coefficients and covariance are). Validated by
    :meth:`prognosis.logistic.LogisticModel.from_artifact`; its outcome and intended use are checked
    against the predecessor's.
    """
    model = _loaded(artifact)
    r, k = update.reply, update.reply.min_cell_count
    coef, cov = updated(model, r.intercept, r.slope)
    se, ci, p = wald(coef, cov)
    names = [INTERCEPT, *model.columns]
    policy = study.policy.model_copy(update={"min_cell_count": k})
    training = {
        "sites": [update.site], "dropped": [], "n": r.n, "events": r.events, "rounds": update.rounds,
        "iterations": r.iterations, "converged": True, "loglik": r.loglik, "loglik_null": None,
        "secure_aggregation": False,
        "exact_on": (f"the recorded binary outcome of site {update.site!r} inside the intended-use envelope "
                     f"(the calibration intercept and slope); the coefficients: {model.ref}'s times the "
                     "slope, the intercept shifted by the calibration intercept"),
        "policy": policy.model_dump(), "differential_privacy": None,
        "release": {"rounded_to_multiple_of": k, "rounded": ["training.n", "training.events"],
                    "exact": ["coefficients", "standard_errors", "confidence_intervals", "p_values",
                              "covariance", "training.loglik", "training.recalibration"],
                    "noisy": [], "center": f"{model.ref}'s (the study's reference patient)",
                    "withheld": ["training.loglik_null (the intercept-only log-likelihood is a function "
                                 "of the exact counts)"]},
        "consent_checkpoint": None if consent is None else consent.model_dump(exclude={"job"}),
        "recalibration": _record(model, update),
    }
    body = {key: value for key, value in artifact.items() if key != "sha256"}
    body.update({
        "model_id": model_id, "version": version,
        "coefficients": dict(zip(names, coef.tolist(), strict=True)),
        "standard_errors": dict(zip(names, se.tolist(), strict=True)),
        "confidence_intervals": dict(zip(names, ci.tolist(), strict=True)),
        "p_values": dict(zip(names, p.tolist(), strict=True)),
        "covariance": cov.tolist(), "logistic": {**artifact["logistic"], "min_cell_count": k},
        "training": training,
    })
    try:
        new = LogisticModel.from_artifact(seal(body))
    except ModelError as exc:
        raise RecalibrationError(f"the recalibrated model is not a valid artifact: {exc}") from None
    check_kept(new, model)
    return new.to_artifact()


def _record(model: LogisticModel, update: SiteUpdate[RecalibrateLogisticReply]) -> dict[str, Any]:
    """The ``training.recalibration`` block: what was updated, where, by how much, and what is not
    propagated."""
    r = update.reply
    cov = r.covariance.to_numpy()
    a_se, b_se = (float(v) for v in np.sqrt(np.diag(cov)))
    return {
        **base_record(model, update, METHOD),
        "intercept": r.intercept, "intercept_se": a_se, "intercept_ci": wald_ci(r.intercept, a_se),
        "slope": r.slope, "slope_se": b_se, "slope_ci": wald_ci(r.slope, b_se),
        "calibration_covariance": cov.tolist(),
        "loglik": r.loglik, "loglik_unchanged": r.loglik_unchanged,
        "likelihood_ratio": 2.0 * (r.loglik - r.loglik_unchanged),
        "coefficients": "intercept: the calibration intercept plus the slope times the predecessor's "
                        "intercept (at the same centre); slopes: the predecessor's times the slope (not "
                        "re-estimated at the site)",
        "covariance": "slope² times the predecessor's covariance: conditional on the calibration intercept "
                      "and slope, whose own uncertainty is not propagated (standard errors, confidence "
                      "intervals, p-values and prediction intervals are narrower than a full account)",
        "likelihood_ratio_test": "2 (loglik − loglik_unchanged), χ² on 2 degrees of freedom under perfect "
                                 "calibration of the predecessor at the site (Cox 1958)",
    }


def _loaded(artifact: dict[str, Any]) -> LogisticModel:
    try:
        model = LogisticModel.from_artifact(artifact)
    except ModelError as exc:
        raise RecalibrationError(f"the model cannot be recalibrated: {exc}") from None
    if not model.horizons:
        raise RecalibrationError(f"{model.ref} states no horizon for a recalibration (its binary outcome "
                                 "was not recorded at one)")
    return model


__all__ = ["METHOD", "ask_site", "check_reply", "recalibrated_artifact", "updated"]
