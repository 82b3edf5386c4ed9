"""A site's answer to ``evaluate`` for a logistic model: its performance on the site's binary cohort.

The counterpart of :mod:`federated.site.evaluation` (Cox models) for a released ``kind: "logistic"``
artifact evaluated on the study's approved *binary* cohort (a recorded 0/1 outcome, no time column).
The reply has the same type (:class:`~federated.protocol.messages.EvaluateReply`) and is built by the
same shared code — suppression, subgroups with complementary suppression, rounding to k, bootstrap
seeding and :data:`~federated.site.evaluation.MIN_VALID_SHARE` (:func:`~federated.site.evaluation.reply_of`)
— with the binary metrics of :mod:`federated.site.binary_performance` (Steyerberg 2019, *Clinical
Prediction Models*, 2nd ed., ch. 15; Van Calster et al. 2016, *J Clin Epidemiol* 74:167):

* ``c_statistic`` (horizon ``None``), and at the model's one horizon h (when the outcome was
  recorded) ``brier``, ``e_o_ratio``, ``calibration_intercept`` and ``calibration_slope``, each with a
  percentile-bootstrap 95% CI (patients resampled with replacement; Efron & Tibshirani 1993) and
  its standard error on the pooling scale (:data:`~federated.site.binary_performance.SCALES`).

Disclosure control (:class:`~federated.disclosure.policy.DisclosurePolicy`), adversary: a reader of
the plaintext reply, or of two of them (before and after a withdrawal). For a binary outcome both
classes identify patients, so the site, a subgroup or a risk group is suppressed below
``min_patients_per_site`` patients or below ``min_events_per_site`` patients *with* the event or
*without* it (:func:`below_binary_minimums`); a subgroup partition's small non-event count triggers
complementary suppression like its other counts; every count shown is rounded to a multiple of k.
Risk groups are quantile groups of the predicted probability, as many as ``risk_groups`` while every
group meets those minimums (each class at least max(``min_events_per_site``, k)); each gives its
mean predicted probability and the observed proportion of its rounded counts with the Wilson (1927)
95% score interval (:func:`binary_risk_groups`).

A logistic model on a survival cohort, or a Cox model on a binary cohort, is refused
(``not-approved``) by :func:`evaluator` before anything is computed or spent: the approved cohort
fixes the study's outcome, and a model of the other kind asks a question the operator did not
approve (a survival outcome is never cut at a horizon into a binary one).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from federated.disclosure.policy import DisclosurePolicy, round_to_k
from federated.disclosure.rules import Refusal
from federated.protocol.messages import (
    EvaluateReply,
    EvaluateRequest,
    EvaluationBlock,
    EvaluationModel,
    RecalibrateRequest,
    RiskGroup,
    Unavailable,
)
from federated.site.binary_performance import SCALES, metrics
from federated.site.data import Cohort
from federated.site.evaluation import (
    below_minimums,
    evaluate,
    metric_result,
    quantile_groups,
    reply_of,
    resample_draws,
)
from federated.site.statistics import InputBox
from federated.study import CohortSpec
from prognosis import Z95
from prognosis.logistic import LogisticModel, expit

Key = tuple[str, float | None]
#: a site's evaluation of one kind of model: (cohort, request, site, policy, bound on |η|) → reply
Evaluate = Callable[[Cohort, EvaluateRequest, str, DisclosurePolicy, float], EvaluateReply]


def evaluator(req: EvaluateRequest) -> Evaluate:
    """The evaluation of ``req``'s kind of model: :func:`evaluate_binary` for a logistic model on a
    binary cohort, :func:`federated.site.evaluation.evaluate` for a Cox model on a survival cohort.

    Raises
    ------
    Refusal
        ``not-approved``: the model's kind does not match the approved cohort's outcome.
    """
    return evaluate_binary if binary_outcome(req, "evaluated") else evaluate


def binary_outcome(req: EvaluateRequest | RecalibrateRequest, done: str) -> bool:
    """Whether ``req`` asks about the approved binary cohort (no time column), once its model's kind has
    been checked against that outcome (a logistic model is ``done`` — evaluated, recalibrated — on the
    binary cohort, a Cox model on a survival one).

    Raises
    ------
    Refusal
        ``not-approved``: the model's kind does not match the approved cohort's outcome (a survival
        outcome is never cut at a horizon into a binary one).
    """
    binary = req.cohort.time is None
    if req.model.kind == "logistic" and not binary:
        raise Refusal("not-approved", f"a logistic model is {done} on the study's binary cohort (a "
                      "recorded 0/1 outcome), never on a survival cohort cut at a horizon")
    if req.model.kind == "cox-ph" and binary:
        raise Refusal("not-approved", f"a Cox model is {done} on a survival cohort (time and event), "
                      "not on the study's binary one")
    return binary


def logistic_model(m: EvaluationModel, cohort: CohortSpec) -> tuple[LogisticModel, float]:
    """The model under evaluation (sealed, validated on receipt) and its one horizon.

    Refused (``ValueError``): design columns other than the cohort's, or horizons other than the one
    the artifact states (when its binary outcome was recorded).
    """
    model = m.logistic()
    if model.columns != tuple(cohort.columns):
        raise ValueError(f"the model's columns ({', '.join(model.columns)}) are not the cohort's "
                         f"({', '.join(cohort.columns)})")
    assert model.artifact is not None  # from_artifact
    stated = [float(h) for h in model.artifact.outcome.horizons]
    asked = m.horizons.to_numpy()
    if asked.ndim != 1 or asked.tolist() != stated:
        raise ValueError("a logistic model is evaluated at the one horizon its outcome was recorded at")
    return model, stated[0]


def below_binary_minimums(policy: DisclosurePolicy, n: int, events: int) -> str | None:
    """The policy's reason for suppressing a group of ``n`` patients with ``events`` events — the
    site's minimums on patients and events, and the events' minimum on the non-events too — or ``None``."""
    reason = below_minimums(policy, n, events)
    if reason is None and n - events < policy.min_events_per_site:
        return f"min_events_per_site: fewer than {policy.min_events_per_site} patients without the event"
    return reason


def evaluate_binary(cohort: Cohort, req: EvaluateRequest, site: str, policy: DisclosurePolicy,
                    max_abs_lp: float = 30.0) -> EvaluateReply:
    """The site's reply to ``req`` (a logistic model) on ``cohort`` (its consented, checked binary rows),
    under the site's own ``policy`` and bound on the slopes (:meth:`InputBox.check_beta`, as in its
    logistic rounds)."""
    if req.cohort.time is not None:
        raise ValueError("a logistic model is evaluated on a binary cohort (no time column)")
    model, horizon = logistic_model(req.model, req.cohort)
    design = req.cohort.design_matrix(cohort.x)
    box = InputBox.of(design, req.cohort)
    box.check_centre(model.center)
    box.check_beta(model.beta, max_abs_lp)
    lp = model.lp(cohort.x)  # the model builds its design columns from the raw inputs
    y = cohort.event.astype(float)

    def block_of(name: str, keep: np.ndarray, seed: np.random.SeedSequence) -> EvaluationBlock:
        return binary_block(name, y[keep], lp[keep], horizon, req.n_boot, seed)

    def groups() -> list[RiskGroup]:
        return binary_risk_groups(y, lp, horizon, req.risk_groups, policy)

    return reply_of(cohort, req, site, policy, partial(below_binary_minimums, policy), block_of, groups,
                    binary=True)


def _key(metric: str, horizon: float) -> Key:
    return (metric, None if metric == "c_statistic" else horizon)


def binary_block(name: str, y: np.ndarray, lp: np.ndarray, horizon: float, n_boot: int,
                 seed: np.random.SeedSequence) -> EvaluationBlock:
    """Every binary metric on the rows (outcome ``y``, linear predictor ``lp``) with its bootstrap CI."""
    values, reasons = metrics(y, lp=lp)
    draws = resample_draws(y.size, n_boot, np.random.default_rng(seed))
    reps = binary_replicates(y, lp, draws, list(values))
    results = [metric_result(_key(m, horizon), est, reps.get(m), n_boot, SCALES[m])
               for m, est in values.items()]
    return EvaluationBlock(
        name=name, n=int(y.size), events=int(y.sum()), metrics=results,
        unavailable=[Unavailable(metric=m, horizon=_key(m, horizon)[1], reason=r)
                     for m, r in sorted(reasons.items())])


def binary_replicates(y: np.ndarray, lp: np.ndarray, draws: np.ndarray, names: list[str]
                      ) -> dict[str, np.ndarray]:
    """Each metric in ``names`` on each resample (``draws``: ``(B, n)`` row indices): arrays ``(B,)``
    of :func:`~federated.site.binary_performance.metrics` on the resampled rows, NaN where it gave a
    reason instead."""
    out = {m: np.full(len(draws), np.nan) for m in names}
    for b, idx in enumerate(draws):
        values, _ = metrics(y[idx], lp=lp[idx])
        for m in names:
            out[m][b] = values.get(m, np.nan)
    return out


def wilson_interval(events: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's (1927, JASA 22:209) score interval of a proportion p̂ = events / n (n > 0):
    (p̂ + z²/2n ∓ z √(p̂(1 − p̂)/n + z²/4n²)) / (1 + z²/n); inside [0, 1], and good coverage for
    small n (Brown, Cai & DasGupta 2001, Stat Sci 16:101)."""
    p = events / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def binary_risk_groups(y: np.ndarray, lp: np.ndarray, horizon: float, wanted: int, policy: DisclosurePolicy
                       ) -> list[RiskGroup]:
    """Quantile groups of predicted probability (as many as ``wanted`` while each meets the binary
    minimums, :func:`~federated.site.evaluation.quantile_groups`): mean predicted probability, and the
    observed proportion with its Wilson 95% interval, at the model's one horizon (no curves).

    The counts are rounded to a multiple of k = ``min_cell_count`` (:func:`round_to_k`) and the observed
    proportion and its interval are those of the *rounded* counts: an exact proportion such as 6/53
    would give the exact counts back, and two reports differenced (before and after a withdrawal) the
    withdrawn patient's group and outcome. The price is a rounding error of at most k/2 events and
    patients in the observed proportion, inside its interval at the group sizes the minimums allow.
    """
    k = policy.min_cell_count
    out = []
    for g, rows in enumerate(quantile_groups(lp, y, wanted, policy, binary=True), start=1):
        n, events = int(round_to_k(int(rows.size), k)), int(round_to_k(int(y[rows].sum()), k))
        lo, hi = wilson_interval(events, n)
        out.append(RiskGroup(group=g, n=n, events=events, horizons=[horizon],
                             predicted=[float(expit(lp[rows]).mean())], observed=[events / n],
                             observed_lower=[lo], observed_upper=[hi], km_times=[], km_survival=[]))
    return out
