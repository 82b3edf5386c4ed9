"""The first rounds of every fit: sizes, labels, the global event-time grid, input ranges.

Everything here is a sum over sites (masked when secure), except on the ``exact`` time grid,
where each site lists the distinct times of its events (an opt-in the approved study must make).

**The time-grid ladder.** Each site answers only on a rung of the public ladder
(day → week → month → quarter → year) where every cell holds 0 or at least k of its patients
(:mod:`federated.disclosure.cells`). The coordinator starts on the study's grid and climbs one rung each
time a site refuses with ``cells``; a site that refuses even on the top rung is left out (named
with the reason) and the climb starts again among the others. The fit then equals the pooled fit
on times coarsened to the rung every site accepted, which the result records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from federated.disclosure.policy import DisclosurePolicy
from federated.exceptions import DataError, SiteError
from federated.protocol.coordinator import Coordinator, SitesDropped
from federated.protocol.messages import ConsentGate, PrepareReply, PrepareRequest
from federated.study import CohortSpec, rungs_from

T = TypeVar("T")

@dataclass(frozen=True)
class Discovery:
    """What the coordinator learns before fitting: only totals over sites."""

    n: int
    events: int
    sum_x: np.ndarray
    sum_x2: np.ndarray
    labels: list[str]
    grids: list[np.ndarray]        # per label: grid times with at least one event
    range_counts: np.ndarray | None  # (declared ranges, bins + 2): below, bins…, above
    cohort: CohortSpec             # the cohort on the rung of the time ladder every site accepted
    #: complete-case studies: each site's rows left out for a missing value (a multiple of its k)
    incomplete: dict[str, int] = field(default_factory=dict)


def global_labels(cohort: CohortSpec, sites: list[str], secure: bool) -> list[str] | None:
    """The public list of strata / group labels, or ``None`` if sites must report theirs."""
    if cohort.partition is None:
        return sites if cohort.partition_by_site else [""]
    if cohort.levels is None:
        if secure:
            raise DataError(f"declare the levels of {cohort.partition!r} (levels = [...]): with secure "
                            "aggregation sites do not reveal which values they hold")
        return None
    if cohort.partition_by_site:
        return [f"{lev}|{site}" for lev in cohort.levels for site in sites]
    return list(cohort.levels)


def discover(coord: Coordinator, cohort: CohortSpec, policy: DisclosurePolicy,
             consent: ConsentGate | None = None) -> Discovery:
    """Run the ``prepare`` round on the finest rung every site accepts; derive the global grid."""
    return climb(coord, cohort, lambda rung: _discover(coord, rung, policy, consent))


def climb(coord: Coordinator, cohort: CohortSpec, attempt: Callable[[CohortSpec], T]) -> T:
    """``attempt(cohort)`` on the finest rung of the time ladder every site accepts: one rung up
    after each ``cells`` refusal; any other refusal is raised, and sites that refuse even on the top
    rung are dropped (:class:`SitesDropped`)."""
    rungs = rungs_from(cohort.time_grid) or (cohort.time_grid,)
    for i, rung in enumerate(rungs):
        try:
            return attempt(cohort.model_copy(update={"time_grid": rung}))
        except SiteError as exc:
            thin = {s for s, (code, _) in exc.refusals.items() if code == "cells"}
            other = [s for s in exc.refusals if s not in thin]
            if other:
                code, message = exc.refusals[other[0]]
                raise SiteError(other[0], message, code=code, refusals=exc.refusals) from None
            if i + 1 == len(rungs):
                raise SitesDropped({s: f"fewer than k patients in a cell of every time grid up to "
                                       f"{rung!r} (k-cells at the source; a few patients lost to follow-up "
                                       "early? the study may set shift_sparse_censoring = true)"
                                    for s in sorted(thin)}) from None
            coord.restart()
    raise AssertionError("unreachable")  # pragma: no cover


def _discover(coord: Coordinator, cohort: CohortSpec, policy: DisclosurePolicy,
              consent: ConsentGate | None) -> Discovery:
    policy.check_sites(len(coord.sites), coord.secure, coord.dropped)
    labels = global_labels(cohort, coord.sites, coord.secure)
    prep = coord.broadcast(PrepareRequest, PrepareReply, cohort=cohort, labels=labels, consent=consent)
    p = len(cohort.columns)
    n, events = coord.total(prep, "counts", (2,)).round().astype(np.int64).tolist()
    if events == 0:
        raise DataError("no events at any site: nothing to estimate")
    if labels is None:  # plaintext discovery: each site listed its own labels
        labels = sorted({lab for r in prep.values() for lab in (r.labels or [])})
    if cohort.time_grid == "exact":
        grids = _union_event_times(prep, labels)
    else:
        hist = coord.total(prep, "event_histogram", (len(labels), cohort.n_bins()))
        width = cohort.bin_width()
        grids = [np.flatnonzero(h.round() > 0) * width for h in hist]
    n_ranges = sum(1 for c in cohort.covariates if c in cohort.ranges)
    ranges = coord.total(prep, "range_counts", (n_ranges, cohort.range_bins + 2)).round() \
        if n_ranges else None
    return Discovery(n=n, events=events, sum_x=coord.total(prep, "sum_x", (p,)),
                     sum_x2=coord.total(prep, "sum_x2", (p,)), labels=labels, grids=grids,
                     range_counts=ranges, cohort=cohort,
                     incomplete={s: r.incomplete for s, r in prep.items() if r.incomplete is not None})


def _union_event_times(prep: dict[str, PrepareReply], labels: list[str]) -> list[np.ndarray]:
    times: dict[str, list[np.ndarray]] = {lab: [] for lab in labels}
    for reply in prep.values():
        own = reply.labels if reply.labels is not None else labels
        for label, t in zip(own, reply.event_times or [], strict=True):
            times[label].append(t.to_numpy())
    return [np.unique(np.concatenate(times[lab])) if times[lab] else np.zeros(0) for lab in labels]


def range_coverage(cohort: CohortSpec, counts: np.ndarray | None) -> dict[str, np.ndarray]:
    """Each declared range's bin counts (the coverage of the intended-use envelope).

    Training patients outside a declared range are allowed: the envelope is where the model will
    be used, the training population may be wider; the release gate checks that the envelope's
    edges are covered (:func:`device.registry.check_envelope`).
    """
    if counts is None:
        return {}
    names = [c for c in cohort.covariates if c in cohort.ranges]
    return {name: row[1:-1].astype(np.int64) for name, row in zip(names, counts, strict=True)}
