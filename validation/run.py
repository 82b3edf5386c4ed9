"""The validation run: a registered model evaluated at every site, without pooling patient data.

1. **Software verification** — the test suite with JUnit evidence (:mod:`.verification`), unless
   skipped (and never re-entered from inside a running test session, where it would recurse).
2. **Clinical performance at the sites** — the model under validation is sent to every site,
   which evaluates it on its own consented rows (:mod:`federated.site.evaluation` for a Cox model,
   :mod:`federated.site.binary_evaluation` for a logistic one) and answers with aggregates only:
   metrics with bootstrap CIs, per declared subgroup (:mod:`.subgroups`), and per group of predicted
   risk.
3. **Leave-one-site-out** (internal–external cross-validation; Royston, Parmar & Sylvester 2004,
   Stat Med 23:907; Steyerberg & Harrell 2016, J Clin Epidemiol 69:245): for each site, a model
   is trained federatedly on the other sites with the study's own settings and kind of model
   (:func:`federated.analyses.runner.trainer`: ``train`` or ``train_logistic``) and evaluated at the
   held-out site — how the modelling performs at a hospital whose data it did not see. Not
   possible when the others are fewer than the policy's ``min_sites`` (recorded with the reason).
4. **Pooling** across sites (:mod:`.pooling`), for the model, each subgroup and the LOSO results.
5. **Acceptance** — every criterion the requirements state (:mod:`.criteria`), judged on the model
   under validation (the artifact that would be released); LOSO is reported beside it.
6. **Report** — ``report.json`` and the figures in ``<root>/<model sha256[:16]>-<n>/``
   (:mod:`.report`); the caller anchors the report in the ledger through the registry.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from federated.analyses.knots import model_study
from federated.analyses.runner import study_protocol, trainer
from federated.disclosure.rules import StudyProtocol
from federated.exceptions import FederatedError
from federated.protocol.arrays import WireArray
from federated.protocol.coordinator import Coordinator, with_dropouts
from federated.protocol.messages import ConsentGate, EvaluateReply, EvaluateRequest, EvaluationModel, Subgroup
from federated.protocol.transport import Transport, as_transport
from federated.site.evaluation import public_km_times
from federated.site.handler import Site
from federated.study import StudySpec
from prognosis import ModelError, evaluable
from prognosis.logistic import LogisticModel

from . import report as rep
from . import verification
from .criteria import Criterion, applicable, for_setting, load_criteria
from .exceptions import CriteriaError, ValidationRunError
from .subgroups import default_subgroups

#: points of the public integrated-Brier grid on (0, largest horizon]
IBS_POINTS = 50
#: intervals of the public grid the risk groups' Kaplan–Meier curves are released on
KM_INTERVALS = 10


@dataclass(frozen=True)
class Options:
    """How to validate: bootstrap size and seed, verification, where the requirements are."""

    n_boot: int = 1000  # acceptance judges CI bounds only on ≥ 1000 resamples (SRS-VAL-008)
    seed: int = 0
    risk_groups: int = 5
    skip_verification: bool = False
    skip_reason: str = "--skip-verification"
    verification_args: tuple[str, ...] | None = None
    #: an existing run of the suite (``make test``'s JUnit) to use as the evidence instead of running it
    verification_junit: Path | None = None
    verification_timeout: float = verification.DEFAULT_TIMEOUT
    requirements: Path | None = None


def evaluation_model(artifact: dict[str, Any]) -> EvaluationModel:
    """What a site is sent to evaluate: the sealed artifact itself, at its own horizons (a logistic
    model's one horizon, when its binary outcome was recorded)."""
    try:
        if artifact.get("kind") == "logistic":
            logistic = LogisticModel.from_artifact(artifact)
            assert logistic.artifact is not None  # from_artifact
            sealed, horizons = logistic.to_artifact(), list(logistic.artifact.outcome.horizons)
        else:
            model = evaluable(artifact, "the validation")
            sealed, horizons = model.to_artifact(), list(model.horizons)
    except ModelError as exc:
        raise ValidationRunError(f"the model cannot be validated: {exc}") from None
    return EvaluationModel(artifact=sealed, horizons=WireArray.from_numpy(np.array(horizons, dtype=float)))


def evaluate_at(sites: Sequence[Site] | Transport, artifact: dict[str, Any], study: StudySpec,
                consent: ConsentGate | None, options: Options, subgroups: list[Subgroup], *, session: str,
                protocol: StudyProtocol | None = None) -> tuple[dict[str, EvaluateReply], dict[str, str]]:
    """Send ``evaluate`` to ``sites`` (in-process Sites or a :class:`Transport`); their replies, and
    the sites that dropped out (with why)."""
    horizons = artifact["outcome"]["horizons"]
    tmax = float(max(horizons))
    cohort = model_study(study, artifact).cohort().model_copy(update={
        "covariates": tuple(i["name"] for i in artifact["inputs"]), "partition": None,
        "partition_by_site": False})
    timeout = study.timeout + 0.5 * options.n_boot * (1 + len(subgroups))
    # one site after the other: the metrics are Python-bound, so in-process threads would only
    # contend for the GIL (measured 1.7× slower on the demo); a deployment's sites run in parallel
    reach = as_transport(sites, parallel=False)
    coord = Coordinator(reach, session=session, protocol=study_protocol(study, reach, protocol),
                        timeout=timeout, secure=False)
    fields = {"cohort": cohort, "consent": consent,
              "model": evaluation_model(artifact), "n_boot": options.n_boot, "seed": options.seed,
              "subgroups": subgroups, "risk_groups": options.risk_groups,
              "km_times": WireArray.from_numpy(public_km_times(cohort, study.horizons or horizons,
                                                               KM_INTERVALS)),
              "ibs_times": WireArray.from_numpy(np.linspace(0.0, tmax, IBS_POINTS + 1)[1:])}
    replies = with_dropouts(coord, lambda: coord.broadcast(EvaluateRequest, EvaluateReply, **fields))
    return replies, dict(coord.dropped)


def leave_one_site_out(sites: Sequence[Site] | Transport, artifact: dict[str, Any], study: StudySpec,
                       consent: ConsentGate | None, options: Options,
                       protocol: StudyProtocol | None = None) -> dict[str, dict[str, Any]]:
    """For each site: a model trained on the others (same settings and kind of model, ``trainer``),
    evaluated at it."""
    train = trainer(study)
    reach = as_transport(sites, parallel=False)
    protocol = study_protocol(study, reach, protocol)
    out: dict[str, dict[str, Any]] = {}
    for held in reach.sites:
        others = [s for s in reach.sites if s != held]
        if len(others) < study.policy.min_sites:
            out[held] = {"possible": False, "reason": f"{len(others)} other site(s), the policy's "
                         f"min_sites is {study.policy.min_sites}"}
            continue
        loso_study = study.model_copy(update={"model_id": f"{study.model_id}-without-{held}"})
        try:
            _, model = train(loso_study, sites=reach.only(others), consent=consent, protocol=protocol)
            replies, dropped = evaluate_at(reach.only([held]), model, study, consent, options, [],
                                           session=f"loso-{model['sha256'][:12]}", protocol=protocol)
        except FederatedError as exc:
            out[held] = {"possible": False, "reason": str(exc)}
            continue
        training = model["training"]
        entry: dict[str, Any] = {
            "possible": True, "model_sha256": model["sha256"],
            "training": {k: training[k] for k in ("sites", "n", "events", "converged")}}
        if held in replies:
            entry.update(rep.block(replies[held].overall))
        else:
            entry.update(possible=False, reason=f"dropped: {dropped.get(held, 'no reply')}")
        out[held] = entry
    return out


def _nested() -> str | None:
    """Why the suite must not be run again here (inside a test session it would recurse)."""
    if "PYTEST_CURRENT_TEST" in os.environ:
        return ("inside a running pytest session (PYTEST_CURRENT_TEST is set): the enclosing test run "
                "is the verification; pass --verification-args to run a selection")
    return None


def _verify(folder: Path, options: Options) -> dict[str, Any]:
    if options.skip_verification:
        return verification.skipped(options.skip_reason)
    if options.verification_junit is not None:
        return verification.from_junit(options.verification_junit, folder)
    nested = _nested()
    if nested and options.verification_args is None:
        return verification.skipped(nested)
    return verification.run_suite(folder, list(options.verification_args or ()), options.verification_timeout)


def run_validation(artifact: dict[str, Any], study: StudySpec, sites: Sequence[Site] | Transport,
                   consent: ConsentGate | None, root: Path, options: Options | None = None,
                   protocol: StudyProtocol | None = None) -> dict[str, Any]:
    """Validate ``artifact`` at ``sites`` (in-process Sites or a :class:`Transport`, e.g. Flower's);
    write the report folder under ``root``; return the report.

    ``study`` holds the training settings (cohort columns, disclosure policy, timeouts) the model
    was registered with; ``consent`` the witnessed checkpoint every site filters its rows by.

    Raises
    ------
    CriteriaError, VerificationError, ValidationRunError
        No acceptance criteria, no checkout to verify, a model that cannot be validated.
    FederatedError
        A site refused (consent checkpoint, bad request) or too few sites answered.
    """
    options = options or Options()
    if options.n_boot < 0:
        raise ValidationRunError(f"the bootstrap size must be ≥ 0, got {options.n_boot}")
    criteria = _criteria(options, "internal", artifact.get("kind", "cox-ph"))
    subgroups = default_subgroups(artifact["inputs"])
    with rep.ReportFolder(Path(root), artifact["sha256"]) as folder:
        evidence = _verify(folder.path, options)
        reach = as_transport(sites, parallel=False)
        protocol = study_protocol(study, reach, protocol)
        replies, dropped = evaluate_at(reach, artifact, study, consent, options, subgroups,
                                       session=f"validate-{artifact['sha256'][:12]}", protocol=protocol)
        loso = leave_one_site_out(reach, artifact, study, consent, options, protocol)
        per_site = {name: rep.site_entry(r) for name, r in replies.items()}
        report = rep.assemble(artifact, study, options, per_site, dropped, loso, subgroups, criteria,
                              evidence, consent)
        report["plots"] = folder.plots(report)
        report["folder"] = folder.relative
        folder.write(report)
    return report


def _criteria(options: Options, setting: str, kind: str = "cox-ph") -> list[Criterion]:
    """The criteria of a ``setting`` validation; refused (:class:`CriteriaError`) when none is stated,
    or none applies to a ``kind`` model (:func:`~validation.criteria.applicable`)."""
    criteria = for_setting(load_criteria(options.requirements), setting)
    if not criteria:
        raise CriteriaError(f"no requirement states an acceptance criterion for an {setting} validation"
                            + (" (scope: external)" if setting == "external" else ""))
    if not applicable(criteria, kind)[0]:
        raise CriteriaError(f"no acceptance criterion for an {setting} validation applies to a {kind} model "
                            f"(none is on a metric it reports, for its kind of model)")
    return criteria


def run_external_validation(artifact: dict[str, Any], study: StudySpec, sites: Sequence[Site] | Transport,
                            consent: ConsentGate | None, root: Path, options: Options | None = None,
                            protocol: StudyProtocol | None = None) -> dict[str, Any]:
    """External validation: ``artifact`` evaluated at hospitals that did not train it (``sites``),
    each on its own consented rows inside the model's intended-use envelope — discrimination,
    calibration-in-the-large, calibration slope and the calibration plot at every horizon, with
    bootstrap CIs — judged against the ``scope: external`` acceptance criteria (Royston & Altman
    2013, BMC Med Res Methodol 13:33; Collins et al. 2014, BMC Med Res Methodol 14:40).

    The report (``setting: external``) has no leave-one-site-out and no software verification
    (that is the internal report's); it is written under ``root`` like :func:`run_validation`'s.
    ``protocol`` is the study as the external sites approved it (they are its only peers).
    """
    options = options or Options()
    criteria = _criteria(options, "external", artifact.get("kind", "cox-ph"))
    subgroups = default_subgroups(artifact["inputs"])
    evidence = verification.skipped("an external validation measures clinical performance only; the "
                                    "software verification is the internal validation's")
    with rep.ReportFolder(Path(root), artifact["sha256"]) as folder:
        reach = as_transport(sites, parallel=False)
        protocol = study_protocol(study, reach, protocol)
        replies, dropped = evaluate_at(reach, artifact, study, consent, options, subgroups,
                                       session=f"external-{artifact['sha256'][:12]}", protocol=protocol)
        per_site = {name: rep.site_entry(r) for name, r in replies.items()}
        report = rep.assemble(artifact, study, options, per_site, dropped, {}, subgroups, criteria,
                              evidence, consent, setting="external")
        report["plots"] = folder.plots(report)
        report["folder"] = folder.relative
        folder.write(report)
    return report
