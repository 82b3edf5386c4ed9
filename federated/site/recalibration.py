"""A site's answer to ``recalibrate``: a released Cox model updated on its own rows (pure maths + the
reply); :func:`answerer` picks it or the logistic one (:mod:`federated.site.logistic_recalibration`) by
the model's kind.

Model updating by recalibration (van Houwelingen 2000, *Stat Med* 19:3401; Royston & Altman 2013,
*BMC Med Res Methodol* 13:33; Steyerberg 2019, *Clinical Prediction Models*, 2nd ed., ch. 20): with
η = β·(x − c) the released model's linear predictor, the site fits the one-covariate Cox model
h(t | x) = h0(t) exp(γ η) on its rows (:func:`slope_fit`, the model's ``ties``), and estimates the
baseline hazard of the updated model β' = γ̂ β, centre c unchanged, by Breslow (1974) with the
offset γ̂ η (:func:`offset_baseline`)::

    dH0(g_k) = d_k / S0_k,          S0_k = Σ_{t_i ≥ g_k} exp(γ̂ η_i)
    v_k = d_k / S0_k²,              w_k = (S1_k / S0_k) dH0(g_k),   S1_k = Σ_{t_i ≥ g_k} (x_i − c) exp(γ̂ η_i)

— the Breslow hazard the artifact releases whatever its ``ties``, as training does
(:func:`federated.cox_math.breslow_cumulative_hazard`), with the variance increments the
prediction interval needs (:func:`federated.cox_math.breslow_variance_increments`), at the centre
c directly (η = 0 there). The rows are the site's consented patients inside the model's
intended-use envelope (:meth:`federated.site.data.Cohort.within_envelope`), administratively
censored at the study's ``max_time`` and coarsened to the request's ladder rung.

Disclosure control (adversary: an **honest-but-curious coordinator** that reads the reply, which
is plaintext by design — there is one site, so there is nothing to mask it in): the reply holds
aggregates only. The baseline is released only at grid times where at least k events
(``min_cell_count``, the stricter of the study's and the site's) accumulated since the previous
released time (:func:`federated.disclosure.policy.released_steps`, the rule training applies), the
variance terms summed over the same merged cells; trailing events that never reach k are not
released; the counts n and events are rounded to multiples of k
(:func:`federated.disclosure.policy.round_to_k`). So the coordinator learns no single patient's
event time or covariates from a step: a step is a sum over at least k events, and a lone trailing
event is never released. (A released time is the grid time at which a step's k-th event fell: on
a study's ladder rung that is a cell of at least k patients; only on the exact grid, a study's loud
opt-in to small cells, is it one patient's event day — as for training.) The site also
refuses the grid when a cell of it holds 1 to k − 1 patients (the k-cell rule of
:mod:`federated.disclosure.cells`, checked by the handler), as it does for training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from federated import cox_math as cm
from federated.disclosure.policy import DisclosurePolicy, PolicyError, released_steps, round_to_k
from federated.exceptions import DataError
from federated.protocol.arrays import WireArray
from federated.protocol.messages import RecalibrateLogisticReply, RecalibrateReply, RecalibrateRequest
from federated.site import local_stats as ls
from federated.site.binary_evaluation import binary_outcome
from federated.site.data import Cohort
from federated.site.evaluation import evaluated_model
from federated.site.logistic_recalibration import answer_logistic
from federated.site.statistics import InputBox

#: a site's recalibration of one kind of model: (cohort, request, policy, bound on |η|) → reply
Answer = Callable[[Cohort, RecalibrateRequest, DisclosurePolicy, float],
                  RecalibrateReply | RecalibrateLogisticReply]


@dataclass(frozen=True)
class SlopeFit:
    """The calibration slope γ̂ with its standard error 1/√I(γ̂), the log partial likelihoods at γ̂
    and at γ = 0, and the Newton iterations taken."""

    slope: float
    se: float
    loglik: float
    loglik_null: float
    iterations: int


def slope_fit(time: np.ndarray, event: np.ndarray, lp: np.ndarray, *, efron: bool = True,
              tol: float = 1e-10, max_iter: int = 50) -> SlopeFit:
    """Partial-likelihood fit of γ in h(t | x) = h0(t) exp(γ η) (Efron 1977 or Breslow 1974 ties).

    Newton–Raphson from γ = 1 (perfect calibration) with step halving, on η centred internally
    (γ and the log-likelihood do not change). ``time``, ``event`` (0/1) and ``lp`` are (n,), in
    any order.

    Raises
    ------
    FloatingPointError
        No events, a constant η, or no convergence (a monotone likelihood).
    """
    order = np.argsort(time, kind="stable")
    t = np.asarray(time, dtype=float)[order]
    d = np.asarray(event, dtype=np.int64)[order]
    eta = np.asarray(lp, dtype=float)[order]
    z = (eta - eta.mean())[:, None]
    grid = np.unique(t[d == 1])
    if grid.size == 0 or np.ptp(z) == 0:
        raise FloatingPointError("a calibration slope needs events and a non-constant linear predictor")
    dk = ls.event_counts(t, d, grid)
    z_events = z[d == 1].sum(axis=0)

    def at(gamma: np.ndarray) -> tuple[float, np.ndarray, float]:
        w = np.exp(z @ gamma)
        s0, s1, t0, t1 = ls.risk_set_sums(t, d, z * w[:, None], w, grid, efron=efron)
        terms = cm.tie_terms(dk, s0, t0)
        ll, score = cm.loglik_and_score(gamma, z_events, s1, t1, terms, 0.0)
        info = cm.information(ls.information_sum(t, d, z, w, grid, terms.a, terms.b), s1, t1, terms, 0.0)
        return ll, score, float(info[0, 0])

    gamma = np.ones(1)
    ll, score, info = at(gamma)
    for it in range(1, max_iter + 1):
        step = score / info
        for _ in range(30):
            new = at(gamma + step)
            if np.isfinite(new[0]) and new[0] >= ll - 1e-12 * max(1.0, abs(ll)):
                break
            step = step / 2
        else:
            raise FloatingPointError("calibration slope: no step improves the likelihood")
        gamma, (ll, score, info) = gamma + step, new
        if abs(step[0]) < tol:
            if not info > 0:
                raise FloatingPointError("calibration slope: no information at the estimate")
            return SlopeFit(float(gamma[0]), float(1.0 / np.sqrt(info)), ll, at(np.zeros(1))[0], it)
    raise FloatingPointError(f"calibration slope did not converge in {max_iter} iterations")


@dataclass(frozen=True)
class OffsetBaseline:
    """Breslow's baseline at a fixed offset on the rows' distinct event times ``times`` (K,): events
    ``d`` (K,), hazard increments ``hazard`` (K,) d/S0, ``variance`` (K,) d/S0² and ``xbar`` (K, p)
    (S1/S0) d/S0 — the increments of :func:`federated.cox_math.breslow_variance_increments`."""

    times: np.ndarray
    d: np.ndarray
    hazard: np.ndarray
    variance: np.ndarray
    xbar: np.ndarray


def offset_baseline(time: np.ndarray, event: np.ndarray, z: np.ndarray, offset: np.ndarray) -> OffsetBaseline:
    """Breslow's (1974) baseline hazard with the linear predictor fixed at ``offset`` (n,).

    ``z`` (n, p) are the covariates minus the model's centre c, so the baseline is that of the
    patient at c; ``time`` (n,) on the grid, ``event`` 0/1, any order. Requires at least one event.
    """
    order = np.argsort(time, kind="stable")
    t = np.asarray(time, dtype=float)[order]
    d = np.asarray(event, dtype=np.int64)[order]
    zz = np.asarray(z, dtype=float)[order]
    w = np.exp(np.asarray(offset, dtype=float)[order])
    grid = np.unique(t[d == 1])
    s0, s1, _, _ = ls.risk_set_sums(t, d, zz * w[:, None], w, grid, efron=False)
    dk = ls.event_counts(t, d, grid)
    v, xbar = cm.breslow_variance_increments(dk, s0, s1, 1.0, np.zeros(zz.shape[1]))
    return OffsetBaseline(grid, dk, dk / s0, v, xbar)


@dataclass(frozen=True)
class ReleasedBaseline:
    """The baseline as it may leave the site: released ``times`` (K',), the cumulative hazard there,
    and per released step the sums of the variance increments (K',) and (K', p)."""

    times: np.ndarray
    cumulative_hazard: np.ndarray
    variance: np.ndarray
    xbar: np.ndarray


def released(base: OffsetBaseline, k: int) -> ReleasedBaseline:
    """``base`` at the grid times where at least ``k`` events accumulated since the previous released
    one (:func:`~federated.disclosure.policy.released_steps`); the increments summed over the cells
    merged into each step, so their running sums at a released time are exact there (the rule and
    representation of :func:`federated.analyses.artifact.build_model`). Trailing cells are dropped."""
    keep = released_steps(base.d, k)
    if keep.size == 0:
        return ReleasedBaseline(base.times[:0], base.hazard[:0], base.variance[:0], base.xbar[:0])
    starts = np.concatenate(([0], keep[:-1] + 1))
    upto = keep[-1] + 1
    return ReleasedBaseline(base.times[keep], np.cumsum(base.hazard)[keep],
                            np.add.reduceat(base.variance[:upto], starts),
                            np.add.reduceat(base.xbar[:upto], starts, axis=0))


def answer(cohort: Cohort, req: RecalibrateRequest, policy: DisclosurePolicy,
           max_abs_lp: float = 30.0) -> RecalibrateReply:
    """The site's reply to ``req`` on ``cohort`` (its consented rows inside the envelope, checked and
    on the request's grid), under its own ``policy`` and bound on the linear predictor.

    Refused: a model that is not the cohort's (:func:`~federated.site.evaluation.evaluated_model`),
    in another time unit, or whose updated β' = γ̂ β can exceed the bound (``bound``); a site below
    the minimums (:class:`PolicyError`); no released step (:class:`PolicyError`, ``min_cell_count``);
    a slope that cannot be estimated (:class:`DataError`).
    """
    model, _ = evaluated_model(req.model, req.cohort.covariates)
    if model.time_unit != req.cohort.time_unit:
        raise ValueError(f"the model counts time in {model.time_unit}s, the cohort in "
                         f"{req.cohort.time_unit}s")
    x = req.cohort.design_matrix(cohort.x)
    box = InputBox.of(x, req.cohort)
    box.check_centre(model.center)
    box.check_beta(model.beta, max_abs_lp)
    n, events = int(cohort.time.size), int(cohort.event.sum())
    policy.check_site(n, events)
    policy.check_saturation(events, 1)
    lp = model.lp(cohort.x)
    try:
        fit = slope_fit(cohort.time, cohort.event, lp, efron=model.artifact.ties == "efron")
    except FloatingPointError as exc:
        raise DataError(f"the calibration slope cannot be estimated at this site ({exc})") from None
    box.check_beta(fit.slope * model.beta, max_abs_lp)
    k = policy.min_cell_count
    base = released(offset_baseline(cohort.time, cohort.event, x - model.center, fit.slope * lp), k)
    if base.times.size == 0:
        raise PolicyError("min_cell_count", f"no baseline step holds {k} events")
    wire = WireArray.from_numpy
    return RecalibrateReply(
        session=req.session, round=req.round, slope=fit.slope, slope_se=fit.se, loglik=fit.loglik,
        loglik_null=fit.loglik_null, iterations=fit.iterations, n=int(round_to_k(n, k)),
        events=int(round_to_k(events, k)), min_cell_count=k, time_grid=req.cohort.time_grid,
        times=wire(base.times), cumulative_hazard=wire(base.cumulative_hazard),
        variance_increments=wire(base.variance), xbar_increments=wire(base.xbar))


def answerer(req: RecalibrateRequest) -> Answer:
    """The recalibration of ``req``'s kind of model: :func:`answer` for a Cox model on a survival
    cohort, :func:`federated.site.logistic_recalibration.answer_logistic` for a logistic model on a
    binary cohort.

    Raises
    ------
    Refusal
        ``not-approved``: the model's kind does not match the approved cohort's outcome (checked before
        anything is spent).
    """
    return answer_logistic if binary_outcome(req, "recalibrated") else answer


__all__ = ["Answer", "OffsetBaseline", "ReleasedBaseline", "SlopeFit", "answer", "answerer",
           "offset_baseline", "released", "slope_fit"]
