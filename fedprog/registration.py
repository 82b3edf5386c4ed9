"""A workspace's models: trained under a witnessed consent checkpoint and registered (a successor of
the newest version of the same model), checked for what serving needs, and validated with the verdict
recorded at the release gate. Shared by ``fedprog train --workspace``, ``fedprog model retrain``,
``fedprog demo`` and ``fedprog deploy run``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device.registry import ModelEntry
from federated.analyses.cox import CoxFit
from federated.analyses.logistic import FederatedLogisticFit
from federated.protocol.transport import Transport
from federated.site.handler import Site
from federated.study import StudySpec
from ledger.log import Receipt

from .workspace import Witnesses, Workspace, WorkspaceError

if TYPE_CHECKING:
    from validation.run import Options as ValidationOptions


def next_version(version: str) -> str:
    """``"3"`` → ``"4"``; a non-numeric version gets ``".1"`` appended."""
    return str(int(version) + 1) if version.isdigit() else f"{version}.1"


def as_successor(ws: Workspace, study: StudySpec) -> tuple[StudySpec, ModelEntry | None]:
    """``study`` as the successor of the newest registered version of the same model (its version, and
    that entry as predecessor), or unchanged with no predecessor."""
    latest = [m for m in ws.models.list() if m.model_id == study.model_id]
    if not latest:
        return study, None
    return study.model_copy(update={"version": latest[-1].version}), latest[-1]


def train_in_workspace(ws: Workspace, study: StudySpec, *, predecessor: ModelEntry | None = None,
                       sites: list[Site] | Transport | None = None, witnesses: Witnesses | None = None,
                       on_round: Callable[[int, str], None] | None = None
                       ) -> tuple[CoxFit | FederatedLogisticFit, dict[str, Any]]:
    """Train under a fresh, witnessed consent checkpoint and register the model in the ledger.

    The study's ``model`` says what is fitted: a Cox model (:func:`federated.analyses.runner.train`)
    or a logistic regression of a recorded binary outcome
    (:func:`federated.analyses.runner.train_logistic`); both are registered, validated and released
    alike.

    Every site uses only patients whose consent is active at that checkpoint and remembers,
    privately, which it used (so that a later revocation flags this model). A successor
    links to its predecessor. ``sites`` and ``witnesses`` reach the sites (default: in this
    process; a Flower deployment passes its transport and remote witnesses).
    """
    from federated.analyses.runner import trainer

    if predecessor is not None:
        study = study.model_copy(update={"version": next_version(predecessor.version)})
    job = f"{study.model_id}@{study.version}"
    gate = ws.consent_gate(job, witnesses)
    study = ws.study_spec(study)
    fit, artifact = trainer(study)(study, sites=sites if sites is not None else ws.site_objects(),
                                   consent=gate, protocol=ws.protocol(study), on_round=on_round)
    ws.models.register(artifact, job, predecessor=None if predecessor is None else predecessor.ref,
                       study=json.loads(study.model_dump_json(exclude={"sites"})))
    ws.publish_checkpoint(witnesses)
    return fit, artifact


def validate_in_workspace(ws: Workspace, ref: str, options: ValidationOptions | None = None, *,
                          sites: list[Site] | Transport | None = None, witnesses: Witnesses | None = None
                          ) -> dict[str, Any]:
    """Validate a registered model on the sites' consented data (:mod:`validation.run`) and record
    the verdict at the release gate: the report is kept by its hash and anchored in the ledger as a
    ``validation`` entry. A released or withdrawn model is validated all the same (its report is
    written) but its state cannot change, so nothing is recorded; ``recorded`` says which.

    The report folder is ``<workspace>/validation/<model sha256[:16]>-<n>/``.
    """
    from ledger.canonical import sealed_sha256
    from validation.run import run_validation

    entry = ws.models.get(ref)
    model = ws.models.artifact(entry.ref)
    study = StudySpec.model_validate(ws.models.study_of(entry))
    gate = ws.consent_gate(f"validation:{entry.ref}", witnesses)
    report = run_validation(model, study, sites if sites is not None else ws.site_objects(), gate,
                            ws.root / "validation", options, protocol=ws.protocol(study))
    recorded: dict[str, Any] = {"recorded": False, "report_sha256": sealed_sha256(report)}
    if entry.lifecycle in ("released", "withdrawn"):
        recorded["reason"] = (f"{entry.ref} is {entry.lifecycle}: its state cannot change (validate a new "
                              "version to release)")
    else:
        recorded.update(recorded=True, ledger_index=ws.models.record_validation(entry.ref, report).index)
    ws.publish_checkpoint(witnesses)
    return {**report, "registry": recorded}


def registered_study(ws: Workspace, entry: ModelEntry) -> StudySpec:
    """The study ``entry`` was trained under (as registered), its sites taken from the workspace."""
    return ws.study_spec(StudySpec.model_validate(ws.models.study_of(entry)))


def validate_external_in_workspace(ws: Workspace, ref: str, sites: Sequence[str],
                                   options: ValidationOptions | None = None) -> dict[str, Any]:
    """Validate a registered (typically released) model at hospitals that did not train it
    (:func:`validation.run.run_external_validation`), each on its own data under its own consent or
    legal basis and its own approval of the study with itself as the only peer; the report is kept
    by its hash and anchored in the ledger as an ``external-validation`` entry (evidence, not a gate).

    Raises
    ------
    WorkspaceError
        A named site is not an external site of the workspace, or its operator has not approved
        the study for it (``fedprog site approve --site NAME``).
    """
    from ledger.canonical import sealed_sha256
    from validation.run import run_external_validation

    unknown = [s for s in sites if s not in ws.external_sites]
    if not sites or unknown:
        known = ", ".join(ws.external_sites) or "none: fedprog site add NAME --data PATH --external …"
        raise WorkspaceError(f"--external-site {unknown[0] if unknown else ''}: not an external site of this "
                             f"workspace (external sites: {known})")
    entry = ws.models.get(ref)
    model = ws.models.artifact(entry.ref)
    study = registered_study(ws, entry)
    protocol = ws.protocol(study, sites)
    unapproved = [s for s in sites if not ws.has_approved(s, protocol)]
    if unapproved:
        raise WorkspaceError(f"site {unapproved[0]!r} has not approved this study for its external "
                             f"validation (fedprog site approve --site {unapproved[0]} --model {entry.ref})")
    gate = ws.consent_gate(f"external-validation:{entry.ref}")
    report = run_external_validation(model, study, [ws.site_object(s) for s in sites], gate,
                                     ws.root / "validation", options, protocol=protocol)
    receipt = ws.models.record_external(entry.ref, report)
    ws.publish_checkpoint()
    return {**report, "registry": {"recorded": True, "report_sha256": sealed_sha256(
        {**report, "model": entry.ref, "sha256": entry.sha256}), "ledger_index": receipt.index}}


def check_registrable(study: StudySpec) -> None:
    """Refuse (WorkspaceError, one line) a study whose model could not be served safely: every
    covariate needs its declared input — a code (LOINC, SNOMED CT, …), a UCUM unit, a kind and the
    range of the intended use — and the study needs the horizons the device states risks at.

    The FHIR endpoint finds a patient's value by the code, converts it by the unit and refuses a
    value outside the range (HAZ-INPUT-001, HAZ-UNIT-001); without them it could not.
    """
    missing = [c for c in study.covariates if c not in study.inputs]
    if missing:
        raise WorkspaceError(
            f"study: covariate {missing[0]!r} has no declared input ([inputs.{missing[0]}] with code, unit, "
            f"kind, min and max){_more(missing)}: the device checks every clinician's value against it")
    for name in study.covariates:
        spec = study.inputs[name]
        lacks = [what for what, ok in (("code", spec.code is not None), ("min", spec.min is not None),
                                       ("max", spec.max is not None)) if not ok]
        if lacks:
            raise WorkspaceError(f"study: [inputs.{name}] declares no {' or '.join(lacks)} (a code from a "
                                 "terminology and the intended-use range are needed to serve the model)")
    if not study.horizons:
        raise WorkspaceError("study: no horizons declared (e.g. horizons = [1095.75, 1826.25] in the time "
                             "unit): the device states risks at these horizons")


def _more(items: Sequence[str]) -> str:
    return f" (and {len(items) - 1} more)" if len(items) > 1 else ""


def release_in_workspace(ws: Workspace, ref: str, approver: str, key: Path, *, reason: str = "",
                         significant_change: str = "") -> Receipt:
    """Release ``ref`` approved by the pinned person ``approver``, signing with their private ``key``
    (:mod:`ledger.signatures`), then publish a witnessed checkpoint. The registry checks the gate and the
    signature again before anything is appended."""
    from datetime import UTC, datetime

    from ledger.signatures import check_signer, load_private_key, sign

    person = ws.people().get(approver)
    if person is None:
        raise WorkspaceError(f"{approver!r} is not a pinned person of this workspace (fedprog person list)")
    signer = load_private_key(key)
    check_signer(signer, person, "approver")  # who signs, before what is signed
    registry = ws.models
    entry = registry.get(ref)
    subject = registry.release_subject(entry.ref, significant_change)  # the gate's rules, checked first
    at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    approval = sign(signer, person, "approver", subject, at)
    receipt = registry.release(entry.ref, approval, reason=reason, significant_change=significant_change)
    ws.publish_checkpoint()
    return receipt
