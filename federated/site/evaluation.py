"""A site's answer to ``evaluate``: a Cox model's performance on its own consented rows.

The parts every kind of model shares — suppression, subgroups, rounding, bootstrap seeds and draws,
the CI of a metric (:func:`reply_of`, :func:`subgroup_blocks`, :func:`rounded`, :func:`block_seeds`,
:func:`resample_draws`, :func:`metric_result`, :func:`quantile_groups`) — are used by the logistic
model's evaluation too (:mod:`federated.site.binary_evaluation`).

The reply holds aggregates only — metrics with percentile-bootstrap 95% CIs
(:mod:`federated.site.performance`), per declared subgroup, and per group of predicted risk — and is
plaintext by design: the issue asks for performance "computed at the sites without pooling",
so each site's results are its own (the transcript marks them as plaintext). No array in it has
the length of the site's number of patients. Disclosure control (:class:`DisclosurePolicy`):

* the site, a subgroup or a risk group with fewer than ``min_patients_per_site`` patients or
  ``min_events_per_site`` events is *suppressed*: reported by name with the rule, no values;
* a suppressed subgroup's counts are withheld too, and when exactly one subgroup of a partition
  (e.g. the age bands) holds a small cell (a count below ``min_cell_count``), the counts of the
  next-smallest subgroup are withheld as well, so that subtraction from the site's total cannot
  reveal it (complementary suppression);
* risk groups are quantile groups of the linear predictor, as many as ``risk_groups`` allows
  while every group meets the minimums (fewer groups at small sites); their Kaplan–Meier
  curves are released only at public grid times where at least ``min_cell_count`` events have
  accumulated and ``min_cell_count`` remain at risk (:func:`federated.disclosure.policy.released_steps`);
* every count the reply shows (patients, events of the site, a subgroup, a risk group) is rounded
  to a multiple of ``min_cell_count``, against a reader who differences two reports.

**Bootstrap**: ``n_boot`` resamples of the group's patients with replacement (Efron &
Tibshirani 1993), seeded by the request's seed, the site's name and the group's index; the CI
is the 2.5/97.5 percentiles of the replicates in which the metric could be computed (given
only when at least 90% could), the standard error their SD on the pooling scale.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import numpy as np

from federated.disclosure.policy import DisclosurePolicy, PolicyError, released_steps, round_to_k
from federated.protocol.messages import (
    EvaluateReply,
    EvaluateRequest,
    EvaluationBlock,
    EvaluationModel,
    MetricResult,
    RiskGroup,
    Subgroup,
    Unavailable,
)
from federated.site.bootstrap import replicates
from federated.site.data import Cohort
from federated.site.performance import SCALES, Key, Rows, Scale, metrics, to_scale, truncation
from federated.site.statistics import InputBox
from federated.study import CohortSpec, grid_width, rungs_from
from prognosis import CoxModel, step_at

#: a CI is given only when the metric could be computed in this share of the replicates
MIN_VALID_SHARE = 0.9


def evaluated_model(m: EvaluationModel, covariates: tuple[str, ...] | list[str]
                    ) -> tuple[CoxModel, tuple[float, ...]]:
    """The model under evaluation (sealed and validated on receipt) and the horizons asked, sorted.

    Refused (``ValueError``): a stratified model (no shared baseline), inputs other than the
    cohort's covariates, or a horizon that is not positive or lies past the released baseline.
    """
    model = m.cox()
    if model.stratified:
        raise ValueError(f"{model.ref} is stratified: an evaluation needs one shared baseline")
    if model.names != tuple(covariates):
        raise ValueError(f"the model's inputs ({', '.join(model.names)}) are not the cohort's covariates "
                         f"({', '.join(covariates)})")
    horizons = m.horizons.to_numpy()
    if horizons.ndim != 1 or horizons.size == 0 or np.any(horizons <= 0) \
            or horizons.max() > model.baseline_times[-1]:
        raise ValueError("horizons must be positive and within the released baseline")
    return model, tuple(float(h) for h in np.sort(horizons))


def evaluate(cohort: Cohort, req: EvaluateRequest, site: str, policy: DisclosurePolicy,
             max_abs_lp: float = 30.0) -> EvaluateReply:
    """The site's reply to ``req`` computed on ``cohort`` (its consented, checked rows), under the
    site's own ``policy`` (never the coordinator's) and bound on the linear predictor."""
    if req.cohort.time is None:
        raise ValueError("a Cox model is evaluated on a survival cohort (time and event), not a binary one")
    model, horizons = evaluated_model(req.model, req.cohort.covariates)
    box = InputBox.of(req.cohort.design_matrix(cohort.x), req.cohort)
    box.check_centre(model.center)
    box.check_beta(model.beta, max_abs_lp)
    lp = model.lp(cohort.x)
    grid = req.ibs_times.to_numpy().astype(float)
    k = policy.min_cell_count

    def block_of(name: str, keep: np.ndarray, seed: np.random.SeedSequence) -> EvaluationBlock:
        rows = Rows.sorted(cohort.time[keep], cohort.event[keep], lp[keep])
        return evaluate_block(name, rows, model, horizons, grid, req.n_boot, seed, k)

    def groups() -> list[RiskGroup]:
        rows = Rows.sorted(cohort.time, cohort.event, lp)
        km_times = req.km_times.to_numpy().astype(float)
        return risk_groups(rows, model, horizons, req.risk_groups, km_times, policy)

    return reply_of(cohort, req, site, policy, partial(below_minimums, policy), block_of, groups)


#: a group's reason for suppression from its patient and event counts (``None``: above the minimums)
Minimums = Callable[[int, int], str | None]
#: a group's results: its name, the mask of its rows in the cohort, and its bootstrap seed
BlockOf = Callable[[str, np.ndarray, np.random.SeedSequence], EvaluationBlock]


def reply_of(cohort: Cohort, req: EvaluateRequest, site: str, policy: DisclosurePolicy, below: Minimums,
             block_of: BlockOf, groups: Callable[[], list[RiskGroup]], *, binary: bool = False
             ) -> EvaluateReply:
    """The reply every kind of model shares (module docstring): the site suppressed below the
    minimums ``below``; otherwise its results (``block_of``), its subgroups' (:func:`subgroup_blocks`)
    and its risk groups (``groups``), every count rounded to k (:func:`rounded`). Seeds: one child of
    (``req.seed``, crc32 of the site's name) per block, the site first (:func:`block_seeds`)."""
    n, events = int(cohort.event.size), int(cohort.event.sum())
    reason = below(n, events)
    if reason:
        return EvaluateReply(session=req.session, round=req.round,
                             overall=EvaluationBlock(name=site, suppressed=reason))
    seeds = block_seeds(req.seed, site, len(req.subgroups))
    k = policy.min_cell_count
    overall = block_of(site, np.ones(n, dtype=bool), seeds[0])
    subgroups = subgroup_blocks(cohort, req, seeds[1:], below, block_of, k, binary=binary)
    return EvaluateReply(session=req.session, round=req.round, overall=rounded(overall, k),
                         subgroups=[rounded(b, k) for b in subgroups],
                         risk_groups=[rounded(g, k) for g in groups()])


def block_seeds(seed: int, site: str, n_subgroups: int) -> list[np.random.SeedSequence]:
    """The bootstrap seeds of a site's blocks: the site's own, then one per subgroup."""
    root = np.random.SeedSequence(seed, spawn_key=(zlib.crc32(site.encode("utf-8")),))
    return root.spawn(1 + n_subgroups)


def resample_draws(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` row indices: resample ``b`` is the ``b``-th draw of ``n`` from ``rng``, with
    replacement (Efron & Tibshirani 1993)."""
    draws = np.array([rng.integers(0, n, n) for _ in range(n_boot)], dtype=np.int64)
    return draws.reshape(n_boot, n)


_Counted = TypeVar("_Counted", EvaluationBlock, RiskGroup)


def rounded(block: _Counted, k: int) -> _Counted:
    """``block`` with its patient and event counts rounded to a multiple of ``k``
    (:func:`~federated.disclosure.policy.round_to_k`): a validation report is a release, and a
    reader who differences two of them (before and after a withdrawal) must not see one patient."""
    update = {name: int(round_to_k(value, k)) for name in ("n", "events")
              if (value := getattr(block, name)) is not None}
    return block.model_copy(update=update)


def below_minimums(policy: DisclosurePolicy, n: int, events: int) -> str | None:
    """The policy's reason for suppressing a group of ``n`` patients with ``events`` events, or ``None``."""
    try:
        policy.check_site(n, events)
    except PolicyError as exc:
        return str(exc)
    return None


def evaluate_block(name: str, rows: Rows, model: CoxModel, horizons: tuple[float, ...], grid: np.ndarray,
                   n_boot: int, seed: np.random.SeedSequence, min_cell: int = 5) -> EvaluationBlock:
    """Every metric at ``horizons`` on ``rows`` with its bootstrap CI and standard error."""
    tau = truncation(rows, horizons, min_cell)
    values, reasons = metrics(rows, model, horizons, grid, tau, min_cell)
    reps = _bootstrap(rows, model, horizons, grid, tau, n_boot, np.random.default_rng(seed), list(values),
                      min_cell)
    results = [metric_result(key, est, reps.get(key), n_boot, SCALES[key[0]]) for key, est in values.items()]
    return EvaluationBlock(
        name=name, n=rows.n, events=rows.events, metrics=results,
        unavailable=[Unavailable(metric=m, horizon=h, reason=r) for (m, h), r in sorted(
            reasons.items(), key=lambda kv: (kv[0][0], -1.0 if kv[0][1] is None else kv[0][1]))])


def _bootstrap(rows: Rows, model: CoxModel, horizons: tuple[float, ...], grid: np.ndarray, tau: float | None,
               n_boot: int, rng: np.random.Generator, keys: list[Key], min_cell: int = 5
               ) -> dict[Key, np.ndarray]:
    """Replicates of each metric (NaN where a replicate could not compute it), all resamples at once
    (:func:`federated.site.bootstrap.replicates`); resample ``b`` is the ``b``-th draw of ``rng``."""
    return replicates(rows, model, horizons, grid, tau, resample_draws(rows.n, n_boot, rng), keys, min_cell)


def metric_result(key: Key, estimate: float, reps: np.ndarray | None, n_boot: int, scale: Scale
                  ) -> MetricResult:
    """One metric's estimate with its percentile-bootstrap CI from the replicates ``reps`` (NaN where
    a resample could not compute it): given only when at least :data:`MIN_VALID_SHARE` of ``n_boot``
    could; the standard error is the replicates' SD on the pooling ``scale``."""
    metric, horizon = key
    out = MetricResult(metric=metric, horizon=horizon, estimate=estimate, scale=scale, n_boot=0)
    if reps is None or n_boot == 0:
        return out
    ok = reps[np.isfinite(reps)]
    on_scale = to_scale(ok, scale)
    on_scale = on_scale[np.isfinite(on_scale)]
    if ok.size < max(2, MIN_VALID_SHARE * n_boot) or on_scale.size < 2:
        return out.model_copy(update={"n_boot": int(ok.size)})
    lo, hi = np.percentile(ok, [2.5, 97.5])
    return out.model_copy(update={"ci_lower": float(lo), "ci_upper": float(hi), "n_boot": int(ok.size),
                                  "se": float(np.std(on_scale, ddof=1))})


#: the age bands a site evaluates (years; low inclusive, high exclusive) — the only ranged
#: subgroups it accepts, so a coordinator cannot difference overlapping ranges down to single
#: patients; every other subgroup is a yes/no split of a binary covariate
AGE_BANDS: tuple[tuple[str, float | None, float | None], ...] = (
    ("age < 50", None, 50.0), ("age 50–64", 50.0, 65.0), ("age ≥ 65", 65.0, None))


def check_subgroups(x: np.ndarray, names: tuple[str, ...] | list[str], subs: list[Subgroup]) -> None:
    """Refuse (``ValueError``) any subgroup the site has not pinned: a ranged subgroup must be one
    of :data:`AGE_BANDS` on ``age``; an ``equals`` subgroup must be 0 or 1 on a covariate whose
    values at this site are all 0 or 1; no subgroup twice; and every partition complete — all three
    age bands, or both values of one binary covariate, and nothing else — so that no request can
    split a partition to get round complementary suppression (issue 14 review, F7)."""
    bands = {(lo, hi) for _, lo, hi in AGE_BANDS}
    seen = set()
    for sub in subs:
        key = (sub.variable, sub.low, sub.high, sub.equals)
        if key in seen:
            raise ValueError(f"subgroup {sub.name!r} is requested twice")
        seen.add(key)
        if sub.equals is None:
            if sub.variable != "age" or (sub.low, sub.high) not in bands:
                raise ValueError(f"subgroup {sub.name!r}: only the declared age bands are evaluated")
            continue
        if sub.variable not in names or sub.equals not in (0.0, 1.0):
            raise ValueError(f"subgroup {sub.name!r}: only yes/no splits of a binary covariate are evaluated")
        v = x[:, list(names).index(sub.variable)]
        if not np.isin(v, (0.0, 1.0)).all():
            raise ValueError(f"subgroup {sub.name!r}: {sub.variable!r} is not binary at this site")
    for part in dict.fromkeys(s.partition for s in subs):
        members = {(s.variable, s.low, s.high, s.equals) for s in subs if s.partition == part}
        variables = {v for v, *_ in members}
        whole = ({("age", lo, hi, None) for _, lo, hi in AGE_BANDS} if variables == {"age"}
                 else {(v, None, None, e) for v in variables for e in (0.0, 1.0)})
        if len(variables) != 1 or members != whole:
            raise ValueError(f"partition {part!r} is not one whole partition (all age bands, or yes and no "
                             "of one binary covariate)")


def public_km_times(cohort: CohortSpec, horizons: tuple[float, ...] | list[float],
                    intervals: int = 10) -> np.ndarray:
    """The risk groups' Kaplan–Meier times, fixed by the approved study alone: every point, from 0 to
    the largest horizon, of the finest rung of the study's time ladder with at most ``intervals``
    intervals. A site answers no other times (different times per request would let a coordinator
    divide one released curve by another and isolate single event days)."""
    tmax = float(max(horizons))
    for rung in rungs_from(cohort.time_grid):
        width = grid_width(rung, cohort.time_unit)
        if tmax / width <= intervals:
            return np.arange(0.0, tmax + width, width)
    return np.linspace(0.0, tmax, intervals + 1)  # the exact grid: the study opted into small cells


def member(x: np.ndarray, names: tuple[str, ...] | list[str], sub: Subgroup) -> np.ndarray:
    """Boolean mask of the rows in subgroup ``sub`` (``low <= x < high`` or ``x == equals``)."""
    if sub.variable not in names:
        raise ValueError(f"subgroup {sub.name!r}: {sub.variable!r} is not a covariate of the model")
    v = x[:, list(names).index(sub.variable)]
    if sub.equals is not None:
        return np.asarray(v == sub.equals)
    keep = np.ones(v.size, dtype=bool)
    if sub.low is not None:
        keep &= v >= sub.low
    if sub.high is not None:
        keep &= v < sub.high
    return keep


def subgroup_blocks(cohort: Cohort, req: EvaluateRequest, seeds: list[np.random.SeedSequence],
                    below: Minimums, block_of: BlockOf, min_cell: int, *, binary: bool = False
                    ) -> list[EvaluationBlock]:
    """Each declared subgroup's results (:func:`check_subgroups` first): suppressed below the minimums
    ``below``, its counts and complementary counts withheld (:func:`withhold_counts`)."""
    check_subgroups(cohort.x, req.cohort.covariates, req.subgroups)
    blocks = []
    for sub, seed in zip(req.subgroups, seeds, strict=True):
        keep = member(cohort.x, req.cohort.covariates, sub)
        n, events = int(keep.sum()), int(cohort.event[keep].sum())
        reason = below(n, events)
        if reason:
            blocks.append(EvaluationBlock(name=sub.name, n=n, events=events, suppressed=reason))
        else:
            blocks.append(block_of(sub.name, keep, seed))
    return withhold_counts(blocks, req.subgroups, min_cell, binary=binary)


def withhold_counts(blocks: list[EvaluationBlock], subs: list[Subgroup], min_cell: int, *,
                    binary: bool = False) -> list[EvaluationBlock]:
    """Withhold the counts of suppressed subgroups, and complementary counts (module docstring); for a
    ``binary`` outcome the non-events n − events are a count of the block too."""
    def small(b: EvaluationBlock) -> bool:
        counts = [b.n, b.events]
        if binary and b.n is not None and b.events is not None:
            counts.append(b.n - b.events)
        return any(c is not None and 0 < c < min_cell for c in counts)

    out = list(blocks)
    for part in dict.fromkeys(s.partition for s in subs):
        idx = [i for i, s in enumerate(subs) if s.partition == part]
        withheld = [i for i in idx if out[i].suppressed is not None or small(out[i])]
        shown = sorted((i for i in idx if i not in withheld), key=lambda i: out[i].n or 0)
        if len(withheld) == 1 and small(out[withheld[0]]) and shown:
            withheld.append(shown[0])
        for i in withheld:
            out[i] = out[i].model_copy(update={"n": None, "events": None})
    return out


def risk_groups(rows: Rows, model: CoxModel, horizons: tuple[float, ...], wanted: int, km_times: np.ndarray,
                policy: DisclosurePolicy) -> list[RiskGroup]:
    """Quantile groups of predicted risk (as many as ``wanted`` while each meets the minimums)."""
    return [_risk_group(k + 1, rows.take(p), model, horizons, km_times, policy.min_cell_count)
            for k, p in enumerate(quantile_groups(rows.lp, rows.event, wanted, policy))]


def quantile_groups(lp: np.ndarray, event: np.ndarray, wanted: int, policy: DisclosurePolicy, *,
                    binary: bool = False) -> list[np.ndarray]:
    """Row indices (each sorted) of the most quantile groups of ``lp`` (low to high), at most ``wanted``,
    in which every group holds at least max(``min_patients_per_site``, k) patients and
    max(``min_events_per_site``, k) events — and, for a ``binary`` outcome, as many non-events; none
    when no grouping meets them."""
    min_n = max(policy.min_patients_per_site, policy.min_cell_count)
    min_events = max(policy.min_events_per_site, policy.min_cell_count)
    order = np.argsort(lp, kind="stable")
    for g in range(min(wanted, lp.size // max(min_n, 1)), 0, -1):
        parts = [np.sort(p) for p in np.array_split(order, g)]
        if all(p.size >= min_n and int(event[p].sum()) >= min_events
               and (not binary or p.size - int(event[p].sum()) >= min_events) for p in parts):
            return parts
    return []


def _risk_group(k: int, rows: Rows, model: CoxModel, horizons: tuple[float, ...], km_times: np.ndarray,
                min_cell: int) -> RiskGroup:
    from sksurv.nonparametric import kaplan_meier_estimator

    times, surv, (lo, hi) = kaplan_meier_estimator(rows.event.astype(bool), rows.time, conf_type="log-log")
    grid = km_times[km_times > 0]
    starts = np.concatenate(([0.0], grid[:-1]))
    at_risk = np.array([int((rows.time > s).sum()) for s in starts])
    events = np.array([int(((rows.time > s) & (rows.time <= e) & (rows.event == 1)).sum())
                       for s, e in zip(starts, grid, strict=True)])
    keep = released_steps(events, min_cell, at_risk)
    released = grid[keep]
    # horizons up to the last released step: decided from what the reply releases anyway
    hs = np.array([h for h in horizons if released.size and h <= released[-1]])
    predicted = (1.0 - model.survival_at(rows.lp, hs)).mean(axis=0)
    km = step_at(times, surv, released)

    def risk_at(curve: np.ndarray, t: np.ndarray) -> list[float]:
        """1 − the curve at the last RELEASED step ≤ t: the observed risk at a horizon reveals no
        more than the disclosure-controlled KM curve does (never an individual event time)."""
        return (1.0 - step_at(released, step_at(times, curve, released), t)).tolist()

    # the log-log CI of S gives the CI of the risk 1 − S: (1 − upper, 1 − lower)
    return RiskGroup(group=k, n=rows.n, events=rows.events, horizons=hs.tolist(),
                     predicted=predicted.tolist(), observed=risk_at(surv, hs),
                     observed_lower=risk_at(hi, hs), observed_upper=risk_at(lo, hs),
                     km_times=grid[keep].tolist(), km_survival=km.tolist())
