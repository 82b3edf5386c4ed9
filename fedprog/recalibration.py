"""A registered model recalibrated at one site of the workspace (issues 18, 20): a Cox model's slope and
baseline, a logistic model's calibration intercept and slope, from that site's consented data only
(:func:`federated.analyses.recalibrate.recalibrate`, which dispatches by the model's kind), registered
as a new model that goes through ``fedprog validate`` and the release gate like any other. Used by
``fedprog model recalibrate``."""

from __future__ import annotations

import json
from typing import Any

from federated.analyses.recalibrate import recalibrate

from .registration import next_version, registered_study
from .workspace import Witnesses, Workspace, WorkspaceError


def recalibrated_id(model_id: str, site: str) -> str:
    """The model id of ``model_id`` recalibrated at ``site``: ``<model_id>-recalibrated-<site>``."""
    return f"{model_id}-recalibrated-{site}"


def recalibrate_in_workspace(ws: Workspace, ref: str, site: str, *, witnesses: Witnesses | None = None
                             ) -> dict[str, Any]:
    """Recalibrate the registered model ``ref`` at ``site`` and register the result.

    ``site`` is a training site or an external one (``fedprog site add --external``: a hospital that
    did not train, which approves the study with itself as the only peer). It uses only its patients
    whose consent (or legal basis) is active at a fresh witnessed checkpoint (the job
    ``<new id>@<version>`` is remembered, so a later revocation flags the new model) and answers
    only for the study the model was registered with, as its operator approved it. The new model
    ``<model_id>-recalibrated-<site>`` (version 1, or the next one) links to ``ref`` as its
    predecessor and is kept with that study's settings, so ``fedprog validate`` judges it under the
    same approval. Returns the sealed artifact.
    """
    entry = ws.models.get(ref)
    artifact = ws.models.artifact(entry.ref)
    study = registered_study(ws, entry)
    external = site in ws.external_sites
    if not external and site not in ws.sites:
        raise WorkspaceError(f"unknown site {site!r} (sites: {', '.join(ws.sites + ws.external_sites)})")
    protocol = ws.protocol(study, [site]) if external else ws.protocol(study)
    if not ws.has_approved(site, protocol):
        raise WorkspaceError(f"site {site!r} has not approved this study (fedprog site approve --site {site}"
                             + (f" --model {entry.ref})" if external else ")"))
    model_id = recalibrated_id(entry.model_id, site)
    earlier = [m for m in ws.models.list() if m.model_id == model_id]
    version = next_version(earlier[-1].version) if earlier else "1"
    job = f"{model_id}@{version}"
    gate = ws.consent_gate(job, witnesses)
    new = recalibrate(ws.site_object(site), artifact, study, model_id=model_id, version=version, consent=gate,
                      protocol=protocol)
    ws.models.register(new, job, predecessor=entry.ref,
                       study=json.loads(study.model_dump_json(exclude={"sites"})))
    ws.publish_checkpoint(witnesses)
    return new
