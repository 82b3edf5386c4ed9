"""Federated Kaplan–Meier with Greenwood log-log intervals, and the k-group log-rank test.

Sites send at-risk and event counts per group on the global grid of event times; the
estimates are functions of the summed counts only, so they equal the pooled estimates.

* Kaplan & Meier (1958): S(t) = Π_{g_k ≤ t} (1 − d_k / n_k)
* Greenwood (1926) with the log-log transform (Kalbfleisch & Prentice 2002, §1.4):
  v(t) = Σ_{g_k ≤ t} d_k / (n_k (n_k − d_k)) / log(S(t))²,
  CI = S(t)^exp(∓ z √v(t))  — the interval lifelines reports.
* Log-rank (Mantel 1966; Peto & Peto 1972), k groups: χ² = (O − E)ᵀ V⁻ (O − E) on k − 1 df,
  k counting the groups with anyone at risk (as lifelines' ``multivariate_logrank_test``).

With differential privacy approved for the study (:attr:`StudyProtocol.dp
<federated.disclosure.rules.StudyProtocol>`), every site adds its share of Skellam noise to its
event and censoring counts before masking (:mod:`federated.site.privacy`): the coordinator decodes
noisy counts only, and everything released (curves, numbers at risk, totals, log-rank) is
post-processing of them. Adversary: the coordinator and a reader of releases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from federated.analyses.discovery import discover
from federated.disclosure.dp import km_from_noisy, release_record
from federated.disclosure.policy import DisclosurePolicy, released_steps
from federated.exceptions import DataError
from federated.protocol.arrays import WireArray
from federated.protocol.coordinator import Coordinator, with_dropouts
from federated.protocol.messages import ConsentGate, CountsReply, CountsRequest
from federated.study import CohortSpec
from prognosis import Z95


@dataclass(frozen=True)
class KMCurve:
    """A Kaplan–Meier curve at the grid times where anyone is at risk."""

    times: np.ndarray
    survival: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray
    ci_lower: np.ndarray
    ci_upper: np.ndarray

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        return {"times": self.times.tolist(), "survival": self.survival.tolist(),
                "at_risk": self.at_risk.tolist(), "events": self.events.tolist(),
                "ci_lower": self.ci_lower.tolist(), "ci_upper": self.ci_upper.tolist()}


@dataclass(frozen=True)
class LogRank:
    statistic: float
    df: int
    p_value: float


def kaplan_meier(times: np.ndarray, at_risk: np.ndarray, events: np.ndarray,
                 z: float = Z95) -> KMCurve:
    """Kaplan–Meier estimate and Greenwood log-log interval from counts per time.

    Times with nobody at risk are dropped. Where S = 1 the interval is [1, 1]; where S
    reaches 0 it is [0, 0] (the log-log transform is undefined there).
    """
    keep = at_risk > 0
    t, n, d = times[keep], at_risk[keep].astype(float), events[keep].astype(float)
    surv = np.cumprod(1.0 - d / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        greenwood = np.cumsum(np.where(n > d, d / (n * (n - d)), np.inf))
        log_s = np.log(surv)
        half = z * np.sqrt(greenwood) / log_s
        lower = np.exp(-np.exp(np.log(-log_s) - half))
        upper = np.exp(-np.exp(np.log(-log_s) + half))
    one, zero = surv >= 1.0, surv <= 0.0
    lower = np.where(one, 1.0, np.where(zero, 0.0, lower))
    upper = np.where(one, 1.0, np.where(zero, 0.0, upper))
    return KMCurve(t, surv, at_risk[keep].astype(np.int64), events[keep].astype(np.int64),
                   lower, upper)


def logrank(at_risk: np.ndarray, events: np.ndarray, labels: Sequence[str] | None = None) -> LogRank:
    """k-group log-rank test from counts of shape (groups, times).

    A group with nobody at risk at any time (a declared level no site holds) carries no
    information and is left out, so ``df`` = (groups with anyone at risk) − 1, the test
    lifelines' ``multivariate_logrank_test`` runs on the groups present in the data.
    ``labels`` (one per row) name the empty groups in the error when fewer than two remain.

    Raises
    ------
    DataError
        Fewer than two groups declared, or fewer than two with anyone at risk.
    """
    if at_risk.shape[0] < 2:
        raise DataError("the log-rank test needs at least two groups")
    present = (at_risk > 0).any(axis=1)
    if int(present.sum()) < 2:
        names = list(labels) if labels is not None else [str(i) for i in range(at_risk.shape[0])]
        empty = ", ".join(names[i] for i in np.flatnonzero(~present))
        raise DataError(f"log-rank needs at least two non-empty groups; level(s) {empty} hold no patients")
    n_gk, d_gk = at_risk[present].astype(float), events[present].astype(float)
    n, d = n_gk.sum(0), d_gk.sum(0)
    use = n > 0
    n_gk, d_gk, n, d = n_gk[:, use], d_gk[:, use], n[use], d[use]
    frac = n_gk / n
    observed_minus_expected = (d_gk - frac * d).sum(1)
    scale = np.where(n > 1, d * (n - d) / np.maximum(n - 1, 1), 0.0)
    v = np.diag((scale * frac).sum(1)) - (scale * frac) @ frac.T
    k = n_gk.shape[0] - 1
    # a quadratic form of a positive semi-definite matrix: never below 0, but rounding can give -1e-17,
    # for which scipy's chdtrc returns NaN (scipy/scipy#20972; the SOUP review of scipy 1.17.1)
    o_e = observed_minus_expected[:k]
    stat = max(0.0, float(o_e @ np.linalg.pinv(v[:k, :k]) @ o_e))
    from scipy.special import chdtrc  # χ² survival function; imported here to keep start-up fast

    return LogRank(statistic=stat, df=k, p_value=float(chdtrc(k, stat)))


@dataclass(frozen=True)
class KMFit:
    """Result of :func:`fit_km`: released curves (small cells merged), and the log-rank test.

    ``sites`` contributed; ``dropped`` were excluded during the run, with the reason;
    ``privacy`` records the differential privacy (ε, δ, mechanism) when it was on — then ``n``,
    ``events`` and every count are noisy (no exact count is released beside a private curve).
    """

    overall: KMCurve
    groups: dict[str, KMCurve]
    logrank: LogRank | None
    n: int
    events: int
    sites: tuple[str, ...]
    secure: bool
    min_cell_count: int
    dropped: dict[str, str] = field(default_factory=dict)
    privacy: dict[str, object] | None = None
    time_grid: str = "day"

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.overall.to_dict())
        out.update(n=self.n, n_events=self.events, sites=list(self.sites),
                   dropped=[{"site": s, "reason": r} for s, r in self.dropped.items()],
                   secure_aggregation=self.secure, min_cell_count=self.min_cell_count,
                   time_grid=self.time_grid)
        if self.groups:
            out["groups"] = {g: c.to_dict() for g, c in self.groups.items()}
        if self.logrank is not None:
            out["logrank"] = {"statistic": self.logrank.statistic, "df": self.logrank.df,
                              "p_value": self.logrank.p_value}
        if self.privacy is not None:
            out["differential_privacy"] = self.privacy
        return out


def release(curve: KMCurve, min_cell: int) -> KMCurve:
    """The curve at the times :func:`~federated.disclosure.policy.released_steps` allows.

    Survival, interval and number at risk at a released time are exact; ``events`` are
    summed over the merged interval since the previous released time. Events after the last released
    time are withheld, never added to its count (a reader of releases would learn them from it).
    """
    keep = released_steps(curve.events, min_cell, curve.at_risk)
    starts = np.concatenate(([0], keep[:-1] + 1)) if keep.size else keep
    merged = np.add.reduceat(curve.events[:keep[-1] + 1], starts) if keep.size else curve.events[:0]
    return KMCurve(curve.times[keep], curve.survival[keep], curve.at_risk[keep], merged,
                   curve.ci_lower[keep], curve.ci_upper[keep])


def fit_km(coord: Coordinator, cohort: CohortSpec, policy: DisclosurePolicy | None = None,
           consent: ConsentGate | None = None) -> KMFit:
    """Kaplan–Meier (per group if ``cohort.partition``) and log-rank over the sites.

    Sites send (masked) at-risk and event counts on the global grid; released curves
    merge small cells (``policy.min_cell_count``). When the approved study has differential
    privacy (``coord.protocol.dp``), the sites noise their event and censoring counts before
    masking, and everything is computed from the noisy sums (the log-rank test included).
    """
    if not isinstance(coord, Coordinator):
        raise TypeError("fit_km takes a Coordinator; for in-process sites use FederatedKaplanMeier.fit_sites")
    rules = policy or coord.protocol.policy
    return with_dropouts(coord, lambda: _fit_once(coord, cohort, rules, consent))


def _fit_once(coord: Coordinator, cohort: CohortSpec, policy: DisclosurePolicy,
              consent: ConsentGate | None) -> KMFit:
    dp = coord.protocol.dp
    private = dp is not None
    if private and cohort.time_grid == "exact":
        raise DataError("differential privacy needs a public time grid: use --time-grid "
                        "day|week|month|year (and a max_time for the study)")
    disc = discover(coord, cohort, policy, consent)
    cohort = disc.cohort  # on the rung of the time ladder every site accepted
    # with DP the grid is every public interval (a grid chosen from the data would leak)
    grid = np.arange(cohort.n_bins()) * cohort.bin_width() if private \
        else np.unique(np.concatenate([g for g in disc.grids if g.size]))
    labels = disc.labels
    counts = coord.broadcast(CountsRequest, CountsReply, labels=labels,
                             times=WireArray.from_numpy(grid))
    shape = (len(labels), grid.size)
    n_gk = coord.total(counts, "at_risk", shape).round().astype(np.int64)
    d_gk = coord.total(counts, "events", shape).round().astype(np.int64)
    privacy, n, events = None, disc.n, disc.events
    if dp is not None:  # the sums carry the sites' noise: valid counts by post-processing only
        n_gk, d_gk = km_from_noisy(n_gk, d_gk)
        privacy = release_record(dp, len(coord.sites))
        n, events = int(n_gk[:, 0].sum()), int(d_gk.sum())
    grouped = cohort.partition is not None or cohort.partition_by_site
    mc = policy.min_cell_count
    return KMFit(
        overall=release(kaplan_meier(grid, n_gk.sum(0), d_gk.sum(0)), mc),
        groups={lab: release(kaplan_meier(grid, n_gk[i], d_gk[i]), mc) for i, lab in enumerate(labels)}
        if grouped else {},
        logrank=logrank(n_gk, d_gk, labels) if grouped and len(labels) > 1 else None,
        n=n, events=events, sites=tuple(coord.sites), secure=coord.secure,
        min_cell_count=mc, dropped=dict(coord.dropped), privacy=privacy, time_grid=cohort.time_grid)

