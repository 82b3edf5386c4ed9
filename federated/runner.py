"""Run a study in this process: one :class:`Site` per table, the in-process transport.

This is what ``fedprog train`` / ``fedprog km`` and the demo call; a deployment across
hospitals swaps the transport and keeps everything else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .artifact import build_artifact
from .coordinator import Coordinator
from .cox import CoxFit, fit_cox
from .exceptions import DataError
from .km import KMFit, fit_km
from .site import Site
from .study import StudySpec
from .transport import InProcessTransport

#: Secure aggregation arrives with the privacy work; until then sums travel in plaintext
#: and artifacts say so (``training.secure_aggregation: false``).
SECURE_AGGREGATION_AVAILABLE = False


def _coordinator(study: StudySpec, kind: str, transcript_dir: Path | None,
                 on_round: Callable[[int, str], None] | None) -> Coordinator:
    if not study.sites:
        raise DataError("no sites given (use --site NAME=PATH or [[sites]] in the study file)")
    names = [s.name for s in study.sites]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"site name {dup[0]!r} given twice")
    sites = [Site(s.name, s.path, transcript_dir=transcript_dir) for s in study.sites]
    digest = hashlib.sha256(study.model_dump_json(exclude={"sites"}).encode()).hexdigest()[:16]
    return Coordinator(InProcessTransport(sites), session=f"{kind}-{digest}", on_round=on_round)


def train(study: StudySpec, *, transcript_dir: Path | None = None,
          on_round: Callable[[int, str], None] | None = None) -> tuple[CoxFit, dict[str, Any]]:
    """Fit the study's Cox model over its sites; return the fit and the sealed artifact."""
    coord = _coordinator(study, "cox", transcript_dir, on_round)
    fit = fit_cox(coord, study.cohort(), ties=study.ties, penalty=study.penalty, tol=study.tol,
                  max_iter=study.max_iter, allow_empty_sites=study.allow_sites_without_events)
    secure = study.secure_aggregation and SECURE_AGGREGATION_AVAILABLE
    return fit, build_artifact(fit, study, secure_aggregation=secure)


def kaplan_meier(study: StudySpec, *, transcript_dir: Path | None = None,
                 on_round: Callable[[int, str], None] | None = None) -> KMFit:
    """Federated Kaplan–Meier (and log-rank with a group column) over the study's sites."""
    coord = _coordinator(study, "km", transcript_dir, on_round)
    return fit_km(coord, study.cohort(for_km=True))
