"""What recalibrating a Cox model and a logistic model at one site share (coordinator side): the one
site asked and its unmasked session, the approved cohort the request names, the checks that the study
is the model's, and the parts of the ``training.recalibration`` record every kind states.

The kinds themselves: :mod:`federated.analyses.recalibrate` (Cox: slope and baseline, and the
dispatch by kind, :func:`federated.analyses.recalibrate.recalibrate`) and
:mod:`federated.analyses.recalibrate_logistic` (logistic: calibration intercept and slope).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from federated.analyses.artifact import _input
from federated.analyses.knots import model_study
from federated.analyses.runner import study_protocol
from federated.disclosure.rules import StudyProtocol
from federated.exceptions import FederatedError
from federated.protocol.arrays import WireArray
from federated.protocol.coordinator import Coordinator
from federated.protocol.messages import EvaluationModel, RecalibrateLogisticReply, RecalibrateReply
from federated.protocol.transport import Endpoint, Transport, as_transport
from federated.study import CohortSpec, StudySpec
from prognosis import Z95, CoxModel
from prognosis.logistic import LogisticModel

R = TypeVar("R", RecalibrateReply, RecalibrateLogisticReply)
Model = CoxModel | LogisticModel


class RecalibrationError(FederatedError, ValueError):
    """The model cannot be recalibrated (stratified, no horizons, not the study's), or a site's reply
    is inconsistent; the message names the model, the site or the field."""


@dataclass(frozen=True)
class SiteUpdate(Generic[R]):
    """One site's checked recalibration reply and the coordinator rounds it took."""

    site: str
    reply: R
    rounds: int


def one_site(sites: Endpoint | Sequence[Endpoint] | Transport, model: Model, study: StudySpec,
             protocol: StudyProtocol | None) -> tuple[Coordinator, str]:
    """The unmasked coordinator of a recalibration of ``model`` (session ``recalibrate-<sha256[:12]>``)
    and the one site ``sites`` reaches; :class:`RecalibrationError` for any other number of sites.

    ``protocol`` is the approved study the site answers for (default: for an in-process site, the
    study's own, approved there by the caller as its operator,
    :func:`federated.analyses.runner.study_protocol`)."""
    reach = as_transport(sites if isinstance(sites, (Transport, Sequence)) else [sites], parallel=False)
    if len(reach.sites) != 1:
        raise RecalibrationError(f"a recalibration asks exactly one site, got {len(reach.sites)}")
    coord = Coordinator(reach, session=f"recalibrate-{model.sha256[:12]}",
                        protocol=study_protocol(study, reach, protocol), timeout=study.timeout, secure=False)
    return coord, reach.sites[0]


def recalibration_cohort(study: StudySpec, model: Model) -> CohortSpec:
    """The study's evaluation cohort (no strata, the model's inputs, its splines at the model's knots,
    :func:`federated.analyses.knots.model_study`): the one the sites approved for judging a model
    (:func:`federated.disclosure.rules.protocol_of`). Refused, before any site is asked, when the study
    is not of the model's kind, counts time in another unit or declares the inputs otherwise than the
    model (the site's envelope is the study's: it must be the one the model states)."""
    if study.model != model.artifact.kind:
        raise RecalibrationError(f"{model.ref} is a {model.artifact.kind} model, the study's are "
                                 f"{study.model} (recalibrate with the study the model was trained under)")
    if study.time_unit != model.time_unit:
        raise RecalibrationError(f"{model.ref} counts time in {model.time_unit}s, the study in "
                                 f"{study.time_unit}s")
    artifact = model.to_artifact()
    placed = model_study(study, artifact)
    stated = [_input(n, placed.inputs.get(n), None, placed.range_bins, 1) for n in placed.covariates]
    if declared(stated) != declared(artifact["inputs"]):
        raise RecalibrationError(f"inputs: the study's differ from {model.ref}'s (recalibrate with the study "
                                 "the model was trained under)")
    return placed.cohort().model_copy(update={
        "covariates": model.names, "partition": None, "partition_by_site": False, "levels": None})


def asked_model(model: Model) -> EvaluationModel:
    """The model as a recalibration request carries it: its sealed artifact, at its own horizons."""
    return EvaluationModel(artifact=model.to_artifact(),
                           horizons=WireArray.from_numpy(np.array(model.horizons, dtype=float)))


def declared(inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The inputs as declared (codes, units, ranges), without the training coverage."""
    return [{key: value for key, value in i.items() if key != "coverage"} for i in inputs]


def check_kept(new: Model, old: Model) -> None:
    """:class:`RecalibrationError` unless ``new`` keeps ``old``'s outcome and intended use."""
    for name in ("outcome", "intended_use"):
        if getattr(new.artifact, name) != getattr(old.artifact, name):
            raise RecalibrationError(f"{name}: the study's differs from {old.ref}'s (recalibrate with the "
                                     "study the model was trained under)")


def wald_ci(value: float, se: float) -> list[float]:
    """The 95% Wald interval value ∓ z·se."""
    return [value - Z95 * se, value + Z95 * se]


def base_record(model: Model, update: SiteUpdate[Any], method: str) -> dict[str, Any]:
    """The parts of ``training.recalibration`` every kind states: the method, the predecessor, the site
    and its rounded counts."""
    return {"method": method,
            "predecessor": {"model_id": model.model_id, "version": model.version, "sha256": model.sha256},
            "site": update.site, "n": update.reply.n, "events": update.reply.events}


__all__ = ["RecalibrationError", "SiteUpdate", "asked_model", "base_record", "check_kept", "declared",
           "one_site", "recalibration_cohort", "wald_ci"]
