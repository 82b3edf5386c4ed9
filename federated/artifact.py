"""The model artifact (``fedprog.model/v1``): canonical JSON sealed by its SHA-256.

``sha256`` is the hex digest of the canonical JSON (sorted keys, no whitespace, UTF-8,
no NaN) of every other field, so the same fit always gives the same hash, and any edit
to the file is detected by :func:`verify_sha256`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .cox import CoxFit
from .study import InputSpec, StudySpec

SCHEMA = "fedprog.model/v1"


def canonical_json(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, compact separators, UTF-8, finite numbers only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def seal(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` plus its ``sha256`` (any existing ``sha256`` is recomputed)."""
    rest = {k: v for k, v in body.items() if k != "sha256"}
    return {**rest, "sha256": hashlib.sha256(canonical_json(rest)).hexdigest()}


def verify_sha256(artifact: dict[str, Any]) -> bool:
    """True when ``artifact['sha256']`` matches its content."""
    return seal(artifact)["sha256"] == artifact.get("sha256")


def _input(name: str, spec: InputSpec | None) -> dict[str, Any]:
    spec = spec or InputSpec()
    code = spec.code.model_dump() if spec.code else \
        {"system": "urn:fedprog:covariate", "code": name, "display": name}
    out: dict[str, Any] = {"name": name, "code": code, "unit": spec.unit, "kind": spec.kind,
                           "min": spec.min, "max": spec.max}
    if spec.kind == "category":
        out["categories"] = [c.model_dump() for c in spec.categories]
    return out


def build_artifact(fit: CoxFit, study: StudySpec, *, secure_aggregation: bool,
                   consent_checkpoint: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sealed artifact of a Cox fit under ``study``'s settings."""
    names = list(fit.covariates)
    ci = fit.ci.tolist()
    strata = [{"label": b.label, "times": b.times.tolist(), "survival": b.survival.tolist()}
              for b in fit.baselines]
    baseline: dict[str, Any] = {"center": fit.center.tolist()}
    if fit.strata is None and len(strata) == 1:
        baseline.update(times=strata[0]["times"], survival=strata[0]["survival"])
    else:  # stratified: one baseline per stratum, none shared
        baseline.update(times=[], survival=[], strata=strata,
                        strata_column=fit.strata, strata_by_site=study.strata_by_site)
    body = {
        "schema": SCHEMA,
        "model_id": study.model_id,
        "version": study.version,
        "kind": "cox-ph",
        "outcome": {"name": study.outcome, "time_unit": study.time_unit,
                    "horizons": list(study.horizons)},
        "inputs": [_input(n, study.inputs.get(n)) for n in names],
        "coefficients": dict(zip(names, fit.coef.tolist(), strict=True)),
        "standard_errors": dict(zip(names, fit.se.tolist(), strict=True)),
        "confidence_intervals": dict(zip(names, ci, strict=True)),
        "p_values": dict(zip(names, fit.p_value.tolist(), strict=True)),
        "covariance": fit.covariance.tolist(),
        "baseline_survival": baseline,
        "ties": fit.ties,
        "penalty": fit.penalty,
        "training": {
            "sites": [{"name": s.name, "n": s.n, "events": s.events} for s in fit.sites],
            "n": fit.n, "events": fit.events, "rounds": fit.rounds,
            "iterations": fit.iterations, "converged": fit.converged,
            "loglik": fit.loglik, "loglik_null": fit.loglik_null,
            "secure_aggregation": secure_aggregation, "time_grid": study.time_grid,
            "consent_checkpoint": consent_checkpoint,
        },
    }
    return seal(body)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON via a temporary file and rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True, allow_nan=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
