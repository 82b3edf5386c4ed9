"""Federated Kaplan–Meier with Greenwood log-log intervals, and the k-group log-rank test.

Sites send at-risk and event counts per group on the global grid of event times; the
estimates are functions of the summed counts only, so they equal the pooled estimates.

* Kaplan & Meier (1958): S(t) = Π_{g_k ≤ t} (1 − d_k / n_k)
* Greenwood (1926) with the log-log transform (Kalbfleisch & Prentice 2002, §1.4):
  v(t) = Σ_{g_k ≤ t} d_k / (n_k (n_k − d_k)) / log(S(t))²,
  CI = S(t)^exp(∓ z √v(t))  — the interval lifelines reports.
* Log-rank (Mantel 1966; Peto & Peto 1972), k groups: χ² = (O − E)ᵀ V⁻ (O − E) on k − 1 df.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arrays import WireArray
from .coordinator import Coordinator
from .exceptions import DataError
from .messages import CountsReply, CountsRequest, PrepareReply, PrepareRequest
from .study import CohortSpec

_Z95 = 1.959963984540054  # Φ⁻¹(0.975)


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
                 z: float = _Z95) -> KMCurve:
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


def logrank(at_risk: np.ndarray, events: np.ndarray) -> LogRank:
    """k-group log-rank test from counts of shape (groups, times)."""
    n_gk, d_gk = at_risk.astype(float), events.astype(float)
    n, d = n_gk.sum(0), d_gk.sum(0)
    use = n > 0
    n_gk, d_gk, n, d = n_gk[:, use], d_gk[:, use], n[use], d[use]
    frac = n_gk / n
    observed_minus_expected = (d_gk - frac * d).sum(1)
    scale = np.where(n > 1, d * (n - d) / np.maximum(n - 1, 1), 0.0)
    v = np.diag((scale * frac).sum(1)) - (scale * frac) @ frac.T
    k = at_risk.shape[0] - 1
    if k < 1:
        raise DataError("the log-rank test needs at least two groups")
    stat = float(observed_minus_expected[:k] @ np.linalg.pinv(v[:k, :k]) @ observed_minus_expected[:k])
    from scipy.special import chdtrc  # χ² survival function; imported here to keep start-up fast

    return LogRank(statistic=stat, df=k, p_value=float(chdtrc(k, stat)))


@dataclass(frozen=True)
class KMFit:
    """Result of :func:`fit_km`: the pooled curve, per-group curves and the log-rank test."""

    overall: KMCurve
    groups: dict[str, KMCurve]
    logrank: LogRank | None
    n: int
    events: int
    sites: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.overall.to_dict())
        out.update(n=self.n, n_events=self.events, sites=self.sites)
        if self.groups:
            out["groups"] = {g: c.to_dict() for g, c in self.groups.items()}
        if self.logrank is not None:
            out["logrank"] = {"statistic": self.logrank.statistic, "df": self.logrank.df,
                              "p_value": self.logrank.p_value}
        return out


def fit_km(coord: Coordinator, cohort: CohortSpec) -> KMFit:
    """Kaplan–Meier (per group if ``cohort.partition``) and log-rank over the sites."""
    prep = coord.broadcast(PrepareRequest, PrepareReply, cohort=cohort)
    labels = sorted({lab for r in prep.values() for lab in r.labels})
    times = [t.to_numpy() for r in prep.values() for t in r.event_times]
    grid = np.unique(np.concatenate(times)) if times else np.zeros(0)
    if grid.size == 0:
        raise DataError("no events at any site: nothing to estimate")
    counts = coord.broadcast(CountsRequest, CountsReply, labels=labels,
                             times=WireArray.from_numpy(grid))
    shape = (len(labels), grid.size)
    n_gk = coord.total(counts, "at_risk", shape).round().astype(np.int64)
    d_gk = coord.total(counts, "events", shape).round().astype(np.int64)
    overall = kaplan_meier(grid, n_gk.sum(0), d_gk.sum(0))
    grouped = cohort.partition is not None
    return KMFit(
        overall=overall,
        groups={lab: kaplan_meier(grid, n_gk[i], d_gk[i]) for i, lab in enumerate(labels)} if grouped else {},
        logrank=logrank(n_gk, d_gk) if grouped and len(labels) > 1 else None,
        n=sum(r.n for r in prep.values()), events=sum(r.events for r in prep.values()),
        sites={s: r.n for s, r in prep.items()})
