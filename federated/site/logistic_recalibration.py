"""A site's answer to ``recalibrate`` for a logistic model: its calibration fit on the site's binary rows.

Logistic recalibration (Cox 1958, *Biometrika* 45:562; Steyerberg 2019, *Clinical Prediction
Models*, 2nd ed., ch. 20; Van Calster et al. 2016, *J Clin Epidemiol* 74:167): with
η = α + β·(d(x) − c) the released model's linear predictor (its log-odds), the site fits the
one-covariate logistic regression

    logit P(y = 1 | x) = a + b η

on its rows by maximum likelihood (:func:`calibration_fit`: the federated engine's Newton–Raphson,
:func:`federated.logistic_math.newton` over :func:`federated.logistic_math.site_sums`, as the
calibration slope of a binary evaluation is fitted,
:func:`federated.site.binary_performance.calibration_slope`) and replies with â, b̂, their
covariance I(â, b̂)⁻¹ (observed = expected information for the logit link), the log-likelihood
at (â, b̂) and at (0, 1) (the model as released; twice their difference is Cox's (1958)
likelihood-ratio test of calibration, χ² on 2 degrees of freedom). The rows are the
site's consented patients with a recorded 0/1 outcome inside the model's intended-use envelope
(:meth:`federated.site.data.Cohort.within_envelope`). The coordinator makes the updated model
α' = â + b̂ α, β' = b̂ β (:mod:`federated.analyses.recalibrate_logistic`).

Disclosure control (adversary: an **honest-but-curious coordinator** that reads the reply, which is
plaintext by design — there is one site, so there is nothing to mask it in): the reply holds two
coefficients, their 2×2 covariance, two log-likelihoods and the counts n and events rounded to
multiples of k (:func:`federated.disclosure.policy.round_to_k`). For a binary outcome both classes
identify patients, so the site refuses below ``min_patients_per_site`` patients or below
``min_events_per_site`` patients with the event *or* without it
(the rule of :func:`federated.site.binary_evaluation.below_binary_minimums`, :func:`check_minimums`),
and below ``min_events_per_covariate`` of the rarer class for its one covariate η, with messages that
quote the rules only, never its counts. No released number is a function of the exact counts alone:
the intercept-only log-likelihood n[ȳ log ȳ + (1 − ȳ) log(1 − ȳ)], ȳ = events/n, would be one (its
value picks out the exact (n, events) among the k² pairs the rounded counts allow), so it is not sent.
Residual (stated, as for the Cox path): two recalibrations before and after one patient's withdrawal
differ by that patient's contribution to the fit; each recalibration spends one of the site's
evaluations of the study (``max_evaluations``), which bounds such differencing.
"""

from __future__ import annotations

import numpy as np

from federated import logistic_math as lm
from federated.disclosure.policy import DisclosurePolicy, PolicyError, round_to_k
from federated.exceptions import ConvergenceError, DataError, SingularDesignError
from federated.protocol.arrays import WireArray
from federated.protocol.messages import RecalibrateLogisticReply, RecalibrateRequest
from federated.site.binary_evaluation import logistic_model
from federated.site.data import Cohort
from federated.site.statistics import InputBox

#: the released model's own predictions: a = 0, b = 1
UNCHANGED = np.array([0.0, 1.0])


def calibration_fit(y: np.ndarray, lp: np.ndarray) -> lm.LogisticFit:
    """Maximum-likelihood fit of logit P(y = 1) = a + b η, η = ``lp`` (n,), y (n,) 0/1: ``coef``
    (â, b̂), ``covariance`` their inverse information, ``loglik`` ℓ(â, b̂)
    (:func:`federated.logistic_math.newton` over :func:`federated.logistic_math.site_sums`).

    Raises
    ------
    DataError
        A constant η, one outcome class only, separation, or no convergence (the engine's message).
    """
    eta = np.asarray(lp, dtype=float)[:, None]
    yy = np.asarray(y, dtype=float)
    try:
        fit = lm.newton(lambda ab: lm.site_sums(eta, yy, ab), 1)
    except (SingularDesignError, ConvergenceError) as exc:
        raise DataError(f"the calibration of the model cannot be estimated at this site ({exc})") from None
    if not fit.converged:
        raise DataError("the calibration of the model did not converge at this site")
    return fit


def check_minimums(policy: DisclosurePolicy, n: int, events: int) -> None:
    """Refuse (:class:`PolicyError`, the rule's name, no count) below the binary minimums — patients,
    patients with the event, patients without it — or below ``min_events_per_covariate`` of the rarer
    class for the one covariate η."""
    policy.check_site(n, events)
    if n - events < policy.min_events_per_site:
        raise PolicyError("min_events_per_site", f"fewer than {policy.min_events_per_site} patients without "
                          "the event")
    if min(events, n - events) < policy.min_events_per_covariate:
        raise PolicyError("min_events_per_covariate", f"fewer than {policy.min_events_per_covariate:g} "
                          "patients of the rarer outcome class for the one covariate (the linear predictor)")


def answer_logistic(cohort: Cohort, req: RecalibrateRequest, policy: DisclosurePolicy,
                    max_abs_lp: float = 30.0) -> RecalibrateLogisticReply:
    """The site's reply to ``req`` (a logistic model) on ``cohort`` (its consented binary rows inside the
    envelope, checked), under its own ``policy`` and bound on the linear predictor.

    Refused: a survival cohort, a model that is not the cohort's (columns, horizon:
    :func:`~federated.site.binary_evaluation.logistic_model`), a centre outside the inputs' box or
    slopes β or b̂ β that can exceed the bound (``bound``); a site below the minimums
    (:func:`check_minimums`); a calibration that cannot be estimated (:class:`DataError`).
    """
    if req.cohort.time is not None:
        raise ValueError("a logistic model is recalibrated on a binary cohort (no time column)")
    model, _ = logistic_model(req.model, req.cohort)
    box = InputBox.of(req.cohort.design_matrix(cohort.x), req.cohort)
    box.check_centre(model.center)
    box.check_beta(model.beta, max_abs_lp)
    y = cohort.event.astype(float)
    n, events = int(y.size), int(y.sum())
    check_minimums(policy, n, events)
    lp = model.lp(cohort.x)  # the model builds its design columns from the raw inputs
    fit = calibration_fit(y, lp)
    a, b = (float(v) for v in fit.coef)
    box.check_beta(b * model.beta, max_abs_lp)
    k = policy.min_cell_count
    return RecalibrateLogisticReply(
        session=req.session, round=req.round, intercept=a, slope=b,
        covariance=WireArray.from_numpy(fit.covariance), loglik=fit.loglik,
        loglik_unchanged=lm.site_sums(lp[:, None], y, UNCHANGED).loglik, iterations=fit.iterations,
        n=int(round_to_k(n, k)), events=int(round_to_k(events, k)), min_cell_count=k)


__all__ = ["UNCHANGED", "answer_logistic", "calibration_fit", "check_minimums"]
