"""Federated Aalen–Johansen cumulative incidence of competing causes over the sites.

Two rounds, each summed by the coordinator and masked when secure (:mod:`federated.protocol.messages`):

* ``cif-prepare``: patients and events of each cause, and the events of any cause per interval of
  the public grid (on the exact grid, an opt-in of the study, each site lists its event times);
* ``cif-counts``: on the grid of times with an event of any cause, the numbers at risk n_k and the
  events d_jk of each cause j (:func:`federated.site.competing_counts.cause_counts`).

The estimate (:func:`federated.aalen_johansen.aalen_johansen`; Aalen & Johansen 1978) is a function
of the summed counts only, so it equals the estimate on the pooled rows — on the times as the sites
put them on the rung of the time ladder every site accepted (:func:`federated.analyses.discovery.climb`).

The cohort names the cause column twice, as ``event`` and as ``partition``, and declares its codes
as ``levels`` ("0" censored first, then the causes: :func:`competing_cohort`); the sites answer only
for a cohort their study approved, so for that column and those codes only.

Release (:func:`release`): a time is released when, since the previous released time, the events of
every cause number 0 or at least k and those of all causes together at least k, while at least k
remain at risk (Kaplan–Meier's rule of :func:`~federated.disclosure.policy.released_steps`, per
cause). On a coarse grid the sites' k-cells already make every summed cell 0 or ≥ k, so every event
time is released; on the exact grid (small cells allowed) steps are merged. Differential privacy is
not offered for competing risks: a private study's sites refuse these rounds.

Adversary: the coordinator (it decodes sums over sites of atoms of 0 or ≥ k patients) and a reader
of releases (every released step holds 0 or ≥ k events of each cause).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from federated.aalen_johansen import CumulativeIncidence, aalen_johansen
from federated.analyses.discovery import climb
from federated.disclosure.policy import DisclosurePolicy
from federated.exceptions import DataError
from federated.protocol.arrays import WireArray
from federated.protocol.coordinator import Coordinator, with_dropouts
from federated.protocol.messages import (
    CifCountsReply,
    CifCountsRequest,
    CifPrepareReply,
    CifPrepareRequest,
    ConsentGate,
    cause_codes,
)
from federated.study import CohortSpec


@dataclass(frozen=True)
class CompetingFit:
    """Result of :func:`fit_aalen_johansen`: the released cumulative incidence of every cause.

    ``incidence`` row j − 1 is cause ``causes[j − 1]``; ``n`` and ``events`` (per cause) are the
    summed counts; ``sites`` contributed, ``dropped`` were excluded during the run (with the reason);
    ``time_grid`` is the rung every site accepted; ``incomplete`` the rows each site left out for a
    missing value (complete-case studies, multiples of the site's k).
    """

    incidence: CumulativeIncidence
    causes: tuple[str, ...]
    n: int
    events: tuple[int, ...]
    sites: tuple[str, ...]
    secure: bool
    min_cell_count: int
    time_grid: str
    dropped: dict[str, str] = field(default_factory=dict)
    incomplete: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        c = self.incidence
        return {"times": c.times.tolist(), "at_risk": c.at_risk.tolist(), "survival": c.survival.tolist(),
                "causes": {code: {"cif": c.cif[j].tolist(), "variance": c.variance[j].tolist(),
                                  "ci_lower": c.lower[j].tolist(), "ci_upper": c.upper[j].tolist(),
                                  "events": c.events[j].tolist(), "n_events": self.events[j]}
                           for j, code in enumerate(self.causes)},
                "n": self.n, "sites": list(self.sites),
                "dropped": [{"site": s, "reason": r} for s, r in self.dropped.items()],
                "secure_aggregation": self.secure, "min_cell_count": self.min_cell_count,
                "time_grid": self.time_grid}


def competing_cohort(time: str, cause: str, causes: Sequence[str | int], **fields: object) -> CohortSpec:
    """The competing-risks cohort a study approves: ``cause`` holds 0 (censored) or one of ``causes``.

    Parameters
    ----------
    time, cause : str
        Column names.
    causes : sequence of str or int
        The declared cause codes, in the order the estimates number them 1…C (public).
    **fields
        Further :class:`~federated.study.CohortSpec` settings (``time_grid``, ``time_unit``,
        ``max_time``, …).

    Raises
    ------
    DataError
        No cause, a cause listed twice, or the code 0 (censored) among the causes.
    """
    codes = tuple(str(c) for c in causes)
    cohort = CohortSpec.model_validate({"time": time, "event": cause, "partition": cause,
                                        "levels": ("0", *codes), **fields})
    try:
        cause_codes(cohort)
    except ValueError as exc:
        raise DataError(f"causes={list(causes)!r}: {exc}") from None
    return cohort


def release(curve: CumulativeIncidence, min_cell: int) -> CumulativeIncidence:
    """The estimate at the times where, since the previous released time, every cause had 0 or at
    least ``min_cell`` events and all causes together at least ``min_cell``, while at least
    ``min_cell`` remained at risk; later events that never make such a step are not released.

    Estimates at a released time are exact; ``events`` are summed per cause over the merged interval
    since the previous released time.
    """
    keep: list[int] = []
    pending = np.zeros(curve.n_causes, dtype=np.int64)
    for k in range(curve.times.size):
        if curve.at_risk[k] < min_cell:
            break
        pending += curve.events[:, k]
        if curve.events[:, k].sum() > 0 and pending.sum() >= min_cell \
                and np.all((pending == 0) | (pending >= min_cell)):
            keep.append(k)
            pending[:] = 0
    idx = np.array(keep, dtype=np.int64)
    starts = np.concatenate(([0], idx[:-1] + 1)) if idx.size else idx
    merged = np.add.reduceat(curve.events[:, :idx[-1] + 1], starts, axis=1) if idx.size \
        else curve.events[:, :0]  # events after the last released time are not released
    return CumulativeIncidence(times=curve.times[idx], at_risk=curve.at_risk[idx], events=merged,
                               survival=curve.survival[idx], cif=curve.cif[:, idx],
                               variance=curve.variance[:, idx], lower=curve.lower[:, idx],
                               upper=curve.upper[:, idx])


def fit_aalen_johansen(coord: Coordinator, cohort: CohortSpec, policy: DisclosurePolicy | None = None,
                       consent: ConsentGate | None = None) -> CompetingFit:
    """The Aalen–Johansen cumulative incidence of every declared cause over the sites.

    Parameters
    ----------
    coord : Coordinator
        Reaches the sites of the approved study (:attr:`Coordinator.protocol`).
    cohort : CohortSpec
        A competing-risks cohort (:func:`competing_cohort`) the study approved.
    policy : DisclosurePolicy, optional
        The release rules (default the study's); ``min_cell_count`` is k of :func:`release`.
    consent : ConsentGate, optional
        Use only patients with active consent at that ledger checkpoint.

    Raises
    ------
    DataError
        ``cohort`` is not a competing-risks cohort, the study is differentially private, or no site
        has an event of any cause.
    """
    if not isinstance(coord, Coordinator):
        raise TypeError("fit_aalen_johansen takes a Coordinator; for in-process sites use "
                        "FederatedAalenJohansen.fit_sites")
    try:
        causes = cause_codes(cohort)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if coord.protocol.dp is not None:
        raise DataError("competing risks are not available in a differentially private study")
    rules = policy or coord.protocol.policy
    return with_dropouts(coord, lambda: climb(coord, cohort, lambda rung: _fit_on(coord, rung, causes,
                                                                                   rules, consent)))


def _fit_on(coord: Coordinator, cohort: CohortSpec, causes: tuple[str, ...], policy: DisclosurePolicy,
            consent: ConsentGate | None) -> CompetingFit:
    """Both rounds on one rung of the time ladder (a ``cells`` refusal makes :func:`climb` go up)."""
    policy.check_sites(len(coord.sites), coord.secure, coord.dropped)
    prep = coord.broadcast(CifPrepareRequest, CifPrepareReply, cohort=cohort, consent=consent)
    totals = coord.total(prep, "counts", (len(causes) + 1,)).round().astype(np.int64)
    if totals[1:].sum() == 0:
        raise DataError("no event of any cause at any site: nothing to estimate")
    grid = _event_grid(coord, prep, cohort)
    counts = coord.broadcast(CifCountsRequest, CifCountsReply, cohort=cohort, consent=consent,
                             times=WireArray.from_numpy(grid))
    at_risk = coord.total(counts, "at_risk", (grid.size,)).round().astype(np.int64)
    events = coord.total(counts, "events", (len(causes), grid.size)).round().astype(np.int64)
    return CompetingFit(
        incidence=release(aalen_johansen(grid, at_risk, events), policy.min_cell_count), causes=causes,
        n=int(totals[0]), events=tuple(int(e) for e in totals[1:]), sites=tuple(coord.sites),
        secure=coord.secure, min_cell_count=policy.min_cell_count, time_grid=cohort.time_grid,
        dropped=dict(coord.dropped),
        incomplete={s: r.incomplete for s, r in prep.items() if r.incomplete is not None})


def _event_grid(coord: Coordinator, prep: dict[str, CifPrepareReply], cohort: CohortSpec) -> np.ndarray:
    """The times with an event of any cause: the union of the sites' lists on the exact grid, else
    the intervals of the public grid whose summed events are not 0."""
    if cohort.time_grid == "exact":
        lists = [r.event_times.to_numpy() for r in prep.values() if r.event_times is not None]
        return np.unique(np.concatenate(lists)) if lists else np.zeros(0)
    hist = coord.total(prep, "event_histogram", (cohort.n_bins(),))
    return np.flatnonzero(hist.round() > 0) * cohort.bin_width()
