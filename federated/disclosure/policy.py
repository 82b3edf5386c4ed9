"""Disclosure control: the rules a study runs under, and how released counts obey them.

:class:`DisclosurePolicy` is set in ``study.toml`` (``[policy]``); its defaults follow
common statistical-disclosure-control practice (cell counts below 5 are not released):

=========================  =======  =====================================================
rule                       default  why
=========================  =======  =====================================================
min_sites                  3        with 2 sites each could subtract its own share from a
                                    secure sum and learn the other's; 2 is an explicit opt-in
min_patients_per_site      20       a site's statistics should describe a group, not people
min_events_per_site        5        (checked by each site on itself, before it answers)
min_cell_count             5        smallest count released in any table (KM rows,
                                    baseline steps, input-range histograms)
min_events_per_covariate   10       refuse over-saturated Cox models (Peduzzi et al. 1996)
=========================  =======  =====================================================

Small cells in released curves are **merged into the time grid**: a curve is released only
at times where at least ``min_cell_count`` events have accumulated since the previous
released time, and (Kaplan–Meier) only while at least ``min_cell_count`` are at risk. The
survival at each released time is exact; only the resolution of the curve drops.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from federated.exceptions import FederatedError


class PolicyError(FederatedError, ValueError):
    """A disclosure rule refused the request; the message names the rule (and the site)."""

    def __init__(self, rule: str, message: str, site: str | None = None) -> None:
        where = f"site {site!r}: " if site else ""
        super().__init__(f"{where}refused by rule {rule}: {message}")
        self.rule = rule
        self.site = site


class DisclosurePolicy(BaseModel):
    """Disclosure rules of a study (see the module docstring for defaults and reasons)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_sites: int = Field(default=3, ge=1)
    min_patients_per_site: int = Field(default=20, ge=0)
    min_events_per_site: int = Field(default=5, ge=0)
    min_cell_count: int = Field(default=5, ge=1)
    min_events_per_covariate: float = Field(default=10.0, ge=0.0, allow_inf_nan=False)

    def check_sites(self, n_sites: int, secure: bool, dropped: dict[str, str] | None = None) -> None:
        """Enough sites for the study, and at least two for a secure sum."""
        why = "".join(f"; dropped site {s!r}: {r}" for s, r in (dropped or {}).items())
        if n_sites < self.min_sites:
            raise PolicyError("min_sites", f"{n_sites} site(s) taking part, at least {self.min_sites} "
                              "required (with 2, each site could subtract its own share of a secure sum)"
                              + why)
        if secure and n_sites < 2:
            raise PolicyError("min_sites", "secure aggregation needs at least 2 sites" + why)

    def check_site(self, n: int, events: int) -> None:
        """Run by each site on itself; the refusal does not reveal its counts."""
        if n < self.min_patients_per_site:
            raise PolicyError("min_patients_per_site", f"fewer than {self.min_patients_per_site} patients")
        if events < self.min_events_per_site:
            raise PolicyError("min_events_per_site", f"fewer than {self.min_events_per_site} events")

    def check_saturation(self, events: int, n_covariates: int) -> None:
        """Refuse a Cox model with too few events per covariate."""
        if n_covariates and events < self.min_events_per_covariate * n_covariates:
            raise PolicyError("min_events_per_covariate",
                              f"{events} events for {n_covariates} covariates "
                              f"({events / n_covariates:.1f} per covariate, "
                              f"{self.min_events_per_covariate:g} required)")


def released_steps(events: np.ndarray, min_cell: int, at_risk: np.ndarray | None = None) -> np.ndarray:
    """Indices of grid times at which a step curve may be released.

    A time is released when the events accumulated since the previously released time
    reach ``min_cell``; with ``at_risk`` given, nothing is released once fewer than
    ``min_cell`` remain at risk. Trailing events that never reach ``min_cell`` are not
    released (the curve ends at the last released time).
    """
    keep = []
    pending = 0
    for k, d in enumerate(np.asarray(events, dtype=np.int64)):
        if at_risk is not None and at_risk[k] < min_cell:
            break
        pending += int(d)
        if pending >= min_cell and d > 0:
            keep.append(k)
            pending = 0
    return np.array(keep, dtype=np.int64)


def round_to_k(counts: np.ndarray | int, k: int) -> np.ndarray:
    """Counts rounded to the nearest multiple of ``k`` (halves up): what a release publishes.

    Adversary: a reader of releases who differences two of them (before and after a patient's
    withdrawal, or two overlapping cohorts). Exact counts differ by her; rounded ones differ by a
    multiple of k or not at all, and no cell can be derived from a published total as total minus
    the other cells (every one of them is rounded), so no complementary suppression is needed.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    c = np.asarray(counts, dtype=np.int64)
    if np.any(c < 0):
        raise ValueError("counts must be >= 0")
    return ((c + k // 2) // k) * k
