"""Calibration-in-the-large of a Cox model across the sites (apparent, on the sites' data).

At each horizon h the observed risk is 1 − KM(h) (federated Kaplan–Meier) and the expected
risk the mean predicted risk (1/n) Σ_i [1 − S0(h)^exp(β·(x_i − c))], a sum over patients
that each site computes locally and sends masked. O/E near 1 means the model predicts as
many events as happened (Steyerberg, *Clinical Prediction Models*, 2nd ed., §15.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import WireArray
from .coordinator import Coordinator, with_dropouts
from .discovery import discover
from .km import kaplan_meier
from .messages import ConsentGate, CountsReply, CountsRequest, ExpectedReply, ExpectedRequest
from .privacy import DisclosurePolicy
from .study import CohortSpec


@dataclass(frozen=True)
class Calibration:
    """Observed and expected risk at each horizon."""

    horizons: list[float]
    observed: list[float]
    expected: list[float]
    n: int
    events: int

    @property
    def ratio(self) -> list[float]:
        return [o / e if e > 0 else float("nan") for o, e in zip(self.observed, self.expected, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        return {"metric": "calibration-in-the-large (apparent)", "horizons": self.horizons,
                "observed_risk": self.observed, "expected_risk": self.expected, "o_e": self.ratio,
                "n": self.n, "events": self.events}


def baseline_at(model: dict[str, Any], horizons: list[float]) -> np.ndarray:
    """S0(h) from the artifact's released baseline (step function; 1 before the first time)."""
    base = model["baseline_survival"]
    times, surv = np.asarray(base["times"], dtype=float), np.asarray(base["survival"], dtype=float)
    if times.size == 0:
        raise ValueError("the model has no shared baseline (stratified): calibration needs one")
    if max(horizons) > times[-1]:
        raise ValueError(f"horizon {max(horizons):g} is beyond the model's released baseline "
                         f"(last time {times[-1]:g})")
    idx = np.searchsorted(times, horizons, side="right") - 1
    return np.where(idx >= 0, surv[np.maximum(idx, 0)], 1.0)


def calibration_in_the_large(coord: Coordinator, cohort: CohortSpec, model: dict[str, Any],
                             horizons: list[float], policy: DisclosurePolicy | None = None,
                             consent: ConsentGate | None = None) -> Calibration:
    """Observed (1 − KM) against mean predicted risk at ``horizons``, over the sites behind ``coord``."""
    names = [i["name"] for i in model["inputs"]]
    if list(cohort.covariates) != names:
        raise ValueError(f"cohort covariates {list(cohort.covariates)} differ from the model's {names}")
    s0 = baseline_at(model, horizons)
    beta = np.array([model["coefficients"][n] for n in names])
    center = np.asarray(model["baseline_survival"]["center"], dtype=float)
    rules = policy or coord.protocol.policy

    def run() -> Calibration:
        disc = discover(coord, cohort, rules, consent)
        grid = np.unique(np.concatenate([g for g in disc.grids if g.size]))
        counts = coord.broadcast(CountsRequest, CountsReply, labels=disc.labels,
                                 times=WireArray.from_numpy(grid))
        shape = (len(disc.labels), grid.size)
        n_k = coord.total(counts, "at_risk", shape).round().astype(np.int64).sum(0)
        d_k = coord.total(counts, "events", shape).round().astype(np.int64).sum(0)
        km = kaplan_meier(grid, n_k, d_k)
        observed = [1.0 - float(np.append(1.0, km.survival[km.times <= h])[-1]) for h in horizons]
        reply = coord.broadcast(ExpectedRequest, ExpectedReply, beta=WireArray.from_numpy(beta),
                                center=WireArray.from_numpy(center), baseline=WireArray.from_numpy(s0))
        expected = coord.total(reply, "risk_sum", (len(horizons),)) / disc.n
        return Calibration(list(horizons), observed, expected.tolist(), disc.n, disc.events)

    return with_dropouts(coord, run)
