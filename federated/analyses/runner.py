"""Run a study in this process: one :class:`Site` per table, the in-process transport.

This is what ``fedprog train`` / ``fedprog km`` and the demo call; a deployment across
hospitals swaps the transport and keeps everything else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from federated.analyses.artifact import build_artifact, build_logistic_artifact
from federated.analyses.cox import CoxFit, fit_cox
from federated.analyses.dp_cox import fit_dp_cox, privacy_record
from federated.analyses.km import KMFit, fit_km
from federated.analyses.logistic import FederatedLogisticFit, fit_logistic
from federated.disclosure.rules import StudyProtocol, protocol_of
from federated.exceptions import DataError
from federated.protocol.coordinator import Coordinator
from federated.protocol.messages import ConsentGate
from federated.protocol.transport import InProcessTransport, Transport, as_transport
from federated.site.handler import Site, approve_in_process
from federated.study import StudySpec

Progress = Callable[[int, str], None] | None


def make_sites(study: StudySpec, transcript_dir: Path | None = None) -> list[Site]:
    """One in-process :class:`Site` per ``[[sites]]`` entry."""
    if not study.sites:
        raise DataError("no sites given (use --site NAME=PATH or [[sites]] in the study file)")
    names = [s.name for s in study.sites]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"site name {dup[0]!r} given twice")
    missing = [s.path for s in study.sites if not Path(s.path).is_file()]
    if missing:  # the caller's own files: said here, since a site's errors never name its path
        raise DataError(f"{missing[0]}: file not found")
    return [Site(s.name, s.path, transcript_dir=transcript_dir, table_format=s.format) for s in study.sites]


def _coordinator(study: StudySpec, kind: str, transport: Transport, on_round: Progress,
                 protocol: StudyProtocol) -> Coordinator:
    digest = hashlib.sha256(study.model_dump_json(exclude={"sites"}).encode()).hexdigest()[:16]
    return Coordinator(transport, session=f"{kind}-{digest}", protocol=protocol, timeout=study.timeout,
                       on_round=on_round)


def _reach(study: StudySpec, sites: list[Site] | Transport | None, transcript_dir: Path | None) -> Transport:
    return as_transport(sites if sites is not None else make_sites(study, transcript_dir))


def study_protocol(study: StudySpec, sites: Transport,
                   protocol: StudyProtocol | None = None) -> StudyProtocol:
    """The approved study the sites answer for: ``protocol`` when given (a deployment, whose sites
    approved it themselves), else — for sites living in this process, whose operator is the
    caller — the study's protocol over the sites' identity keys, approved at each of them."""
    if protocol is not None:
        return protocol
    if not isinstance(sites, InProcessTransport):
        raise DataError("sites outside this process answer only for a study their operators approved: "
                        "pass that study's protocol (fedprog site approve)")
    members = [s for s in sites.members() if isinstance(s, Site)]
    if len(members) != len(sites.sites):
        raise DataError("every in-process site must be a federated.site.Site to approve the study")
    return approve_in_process(members, protocol_of(study, {}))


def train(study: StudySpec, *, transcript_dir: Path | None = None, on_round: Progress = None,
          sites: list[Site] | Transport | None = None, consent: ConsentGate | None = None,
          protocol: StudyProtocol | None = None) -> tuple[CoxFit, dict[str, Any]]:
    """Fit the study's Cox model over its sites; return the fit and the sealed artifact.

    ``sites`` are in-process :class:`Site` objects or any :class:`Transport` that reaches them
    (Flower: :class:`federated.protocol.flower_transport.FlowerTransport`); by default the study's own
    tables in this process. With ``consent``, every site uses only patients whose consent was
    active at that ledger checkpoint, and the artifact records the checkpoint. When the approved
    study has differential privacy, the fit is the noisy-Newton piecewise-exponential fit of
    :mod:`federated.analyses.dp_cox` (noise added by the sites) and the artifact records its ε, δ.
    """
    if study.model != "cox-ph":
        raise DataError(f"the study fits a {study.model} model: train it with train_logistic")
    if study.dp.enabled and study.penalty > 0:
        raise DataError("a differentially private Cox fit takes no penalty: set penalty = 0")
    sites = _reach(study, sites, transcript_dir)
    protocol = study_protocol(study, sites, protocol)
    coord = _coordinator(study, "cox", sites, on_round, protocol)
    if protocol.dp is not None:
        private = fit_dp_cox(coord, study.cohort(), policy=study.policy, consent=consent)
        return private, build_artifact(private, study, privacy=privacy_record(protocol.dp, private,
                                                                              study.cohort()))
    if study.dp.enabled:
        raise DataError("the study enables differential privacy but the sites' approved protocol does not")
    fit = fit_cox(coord, study.cohort(), ties=study.ties, penalty=study.penalty, tol=study.tol,
                  max_iter=study.max_iter, policy=study.policy, consent=consent)
    return fit, build_artifact(fit, study, privacy=None)


def train_logistic(study: StudySpec, *, transcript_dir: Path | None = None, on_round: Progress = None,
                   sites: list[Site] | Transport | None = None, consent: ConsentGate | None = None,
                   protocol: StudyProtocol | None = None) -> tuple[FederatedLogisticFit, dict[str, Any]]:
    """Fit the study's logistic regression of its recorded binary outcome over its sites (as
    :func:`train` reaches them); return the fit and the sealed ``kind: "logistic"`` artifact."""
    if study.model != "logistic":
        raise DataError(f"the study fits a {study.model} model, not a logistic regression")
    sites = _reach(study, sites, transcript_dir)
    coord = _coordinator(study, "logistic", sites, on_round, study_protocol(study, sites, protocol))
    fit = fit_logistic(coord, study.cohort(), ridge=study.penalty, tol=study.tol, max_iter=study.max_iter,
                       policy=study.policy, consent=consent)
    return fit, build_logistic_artifact(fit, study)


def trainer(study: StudySpec) -> Callable[..., tuple[Any, dict[str, Any]]]:
    """How ``study``'s model is trained over sites (same arguments): :func:`train_logistic` for a
    logistic model, :func:`train` for a Cox model."""
    return train_logistic if study.model == "logistic" else train


def kaplan_meier(study: StudySpec, *, transcript_dir: Path | None = None, on_round: Progress = None,
                 sites: list[Site] | Transport | None = None, consent: ConsentGate | None = None,
                 protocol: StudyProtocol | None = None) -> KMFit:
    """Federated Kaplan–Meier (and log-rank with a group column) over the study's sites
    (in-process :class:`Site` objects or a :class:`Transport`, as for :func:`train`); with the
    study's differential privacy when its approved protocol has it (noise added by the sites)."""
    sites = _reach(study, sites, transcript_dir)
    coord = _coordinator(study, "km", sites, on_round, study_protocol(study, sites, protocol))
    return fit_km(coord, study.cohort(for_km=True), policy=study.policy, consent=consent)
