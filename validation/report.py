"""The validation report (``fedprog.validation/v1``) and the folder it is written to.

``<root>/<model sha256[:16]>-<n>/`` holds ``report.json``, the figures (:mod:`.plots`) and, when
the suite ran, ``junit.xml``. The folder is built under a temporary name and renamed when
complete, so a failed run leaves nothing half-written. The report holds only aggregates:
per-site results as the sites sent them, pooled values, criteria verdicts and hashes.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from federated.protocol.messages import EvaluateReply, EvaluationBlock, Subgroup

from .criteria import Criterion, Table, applicable, judge
from .pooling import pool_metrics

if TYPE_CHECKING:
    from federated.protocol.messages import ConsentGate
    from federated.study import StudySpec

    from .run import Options

SCHEMA = "fedprog.validation/v1"

#: what each metric of a Cox model is, as the report states it (see federated.site.performance for the
#: references)
DEFINITIONS: dict[str, str] = {
    "harrell_c": "Harrell's concordance of the linear predictor (Harrell et al. 1982; 1996)",
    "uno_c": "Uno's IPCW concordance, truncated at the largest horizon inside the site's follow-up, "
             "censoring distribution from the site's own rows (Uno et al. 2011, Stat Med 30:1105)",
    "td_auc": "cumulative/dynamic time-dependent AUC at the horizon (Heagerty et al. 2000; Uno et al. 2007)",
    "brier": "IPCW Brier score of the predicted survival at the horizon (Graf et al. 1999)",
    "integrated_brier": "Brier score integrated over the public grid inside the site's follow-up up to "
                        "the largest horizon inside it, divided by its length (Graf et al. 1999)",
    "e_o_ratio": "expected / observed risk at the horizon: mean predicted risk over 1 − Kaplan–Meier",
    "calibration_intercept": "calibration-in-the-large at the horizon: log(observed / expected); "
                             "0 is perfect",
    "calibration_slope": "coefficient of the linear predictor refitted as the only covariate of a Cox "
                         "model (Efron ties); at a horizon with follow-up censored there; 1 is perfect "
                         "(Royston & Altman 2013, BMC Med Res Methodol 13:33)",
}

#: what each metric of a logistic model is (of its recorded binary outcome, at its one horizon; see
#: federated.site.binary_performance)
BINARY_DEFINITIONS: dict[str, str] = {
    "c_statistic": "concordance (area under the ROC curve) of the predicted probability: the probability "
                   "that a patient with the outcome has a higher prediction than one without, ties ½ "
                   "(Hanley & McNeil 1982; Steyerberg 2019, Clinical Prediction Models, 2nd ed., ch. 15)",
    "brier": "Brier score: mean squared difference between predicted probability and the 0/1 outcome "
             "(Brier 1950; Steyerberg 2019, ch. 15); 0 is perfect",
    "e_o_ratio": "expected / observed events: sum of the predicted probabilities over the number of patients "
                 "with the outcome; 1 is perfect, > 1 over-prediction (Steyerberg 2019, ch. 15)",
    "calibration_intercept": "calibration-in-the-large: intercept a of logit P(y = 1) = a + lp with the "
                             "linear predictor as an offset; 0 is perfect, > 0 under-prediction (Van Calster "
                             "et al. 2016, J Clin Epidemiol 74:167)",
    "calibration_slope": "calibration slope: coefficient b of the linear predictor in logit P(y = 1) = "
                         "a + b lp; 1 is perfect, < 1 predictions too extreme (Van Calster et al. 2016; "
                         "Steyerberg 2019)",
}

#: the definitions a report states, by the kind of model validated
DEFINITIONS_BY_KIND: dict[str, dict[str, str]] = {"cox-ph": DEFINITIONS, "logistic": BINARY_DEFINITIONS}
#: the scales pooling works on, as the report states them, by the kind of model
POOLING_TEXT = {
    "cox-ph": "inverse-variance fixed effect on the logit (C, AUC), log (E/O) or natural scale, with I² and "
              "DerSimonian–Laird random effects",
    "logistic": "inverse-variance fixed effect on the logit (C statistic), log (E/O) or natural scale, "
                "with I² and DerSimonian–Laird random effects",
}


def block(b: EvaluationBlock) -> dict[str, Any]:
    """A site's (or subgroup's) results as plain JSON."""
    return b.model_dump(mode="json")


def site_entry(reply: EvaluateReply) -> dict[str, Any]:
    """One site's evaluation: overall results, subgroups and risk groups."""
    return {**block(reply.overall), "subgroups": [block(s) for s in reply.subgroups],
            "risk_groups": [g.model_dump(mode="json") for g in reply.risk_groups]}


def table(entries: list[dict[str, Any]]) -> Table:
    """Metric entries keyed by (metric, horizon), for judging criteria."""
    return {(e["metric"], e["horizon"]): e for e in entries}


def _pooled_subgroups(per_site: dict[str, dict[str, Any]], subgroups: list[Subgroup]) -> dict[str, Any]:
    out = {}
    for sub in subgroups:
        found = {site: s["metrics"] for site, entry in per_site.items() for s in entry["subgroups"]
                 if s["name"] == sub.name and s["suppressed"] is None}
        out[sub.name] = {"sites": sorted(found), "metrics": pool_metrics(found)}
    return out


def _optimism(apparent: list[dict[str, Any]], held_out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pooled apparent minus pooled leave-one-site-out estimate, per metric."""
    loso = table(held_out)
    return [{"metric": e["metric"], "horizon": e["horizon"],
             "difference": e["estimate"] - loso[(e["metric"], e["horizon"])]["estimate"]}
            for e in apparent if (e["metric"], e["horizon"]) in loso]


def _verification_verdict(evidence: dict[str, Any]) -> list[dict[str, Any]]:
    if evidence["status"] == "skipped":
        return []
    value = (f"{evidence.get('tests', 0)} tests, {evidence.get('failures', '?')} failures, "
             f"{evidence.get('errors', '?')} errors" + (f" ({evidence['summary']})" if evidence.get("summary")
                                                        else ""))
    ok = evidence["status"] == "passed"
    return [{"id": "software-verification", "requirement": None, "title": "the test suite passes",
             "metric": "test_suite", "statistic": None, "op": None, "threshold": None, "horizon": None,
             "scope": None, "passed": ok,
             "checks": [{"where": "test suite", "horizon": None, "value": value, "passed": ok}]}]


def _missing(artifact: dict[str, Any], study: StudySpec) -> dict[str, Any]:
    """How rows missing a value were handled: refused, or left out (complete-case) with the training
    sites' counts as the artifact released them (rounded to k)."""
    if study.missing == "refuse":
        return {"policy": "refuse", "note": "a site holding a missing value in a model column refuses"}
    record = artifact["training"].get("missing") or {}
    return {"policy": "complete-case", "training_rows_left_out": record.get("rows_left_out", {}),
            "rounded_to_multiple_of": record.get("rounded_to_multiple_of"),
            "note": "each site evaluates its complete rows; the rows it leaves out there are not reported"}


def assemble(artifact: dict[str, Any], study: StudySpec, options: Options,
             per_site: dict[str, dict[str, Any]], dropped: dict[str, str], loso: dict[str, dict[str, Any]],
             subgroups: list[Subgroup], criteria: list[Criterion], evidence: dict[str, Any],
             consent: ConsentGate | None, setting: str = "internal") -> dict[str, Any]:
    """The report: settings, per-site, pooled, subgroups, LOSO, verification and verdicts.

    ``setting`` is ``internal`` (the training sites) or ``external`` (hospitals that did not train
    the model: no leave-one-site-out, only the ``external`` criteria)."""
    horizons = [float(h) for h in artifact["outcome"]["horizons"]]
    kind = artifact.get("kind", "cox-ph")
    criteria, not_applicable = applicable(criteria, kind)
    pooled = pool_metrics({n: s["metrics"] for n, s in per_site.items() if s["suppressed"] is None})
    loso_done = {n: e for n, e in loso.items() if e.get("possible") and e.get("suppressed") is None}
    loso_pooled = pool_metrics({n: e["metrics"] for n, e in loso_done.items()})
    sites_for_criteria: dict[str, Table | str] = {
        n: table(s["metrics"]) if s["suppressed"] is None else f"suppressed: {s['suppressed']}"
        for n, s in per_site.items()}
    sites_for_criteria.update({n: f"dropped: {why}" for n, why in dropped.items()})
    verdicts = judge(criteria, table(pooled), sites_for_criteria, horizons, kind) \
        + _verification_verdict(evidence)
    software = {k: evidence.get(k) for k in ("commit", "dirty", "environment_sha256", "python")}
    return {
        "schema": SCHEMA,
        "setting": setting,
        "model": f"{artifact['model_id']}@{artifact['version']}",
        "model_sha256": artifact["sha256"],
        "sha256": artifact["sha256"],  # as the registry records it (not covered by the report's seal)
        "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "software": software,
        "verification": evidence,
        "settings": {"kind": kind, "n_boot": options.n_boot, "seed": options.seed,
                     "risk_groups": options.risk_groups,
                     "horizons": horizons, "time_unit": artifact["outcome"]["time_unit"],
                     "policy": study.policy.model_dump(), "subgroups": [s.model_dump() for s in subgroups],
                     "ci": "percentile bootstrap 95% (patients resampled within each site)",
                     "pooling": POOLING_TEXT[kind]},
        "definitions": DEFINITIONS_BY_KIND[kind],
        "consent_checkpoint": None if consent is None else consent.model_dump(exclude={"job"}),
        "missing": _missing(artifact, study),
        "sites": per_site,
        "dropped": dropped,
        "pooled": {"sites": sorted(n for n, s in per_site.items() if s["suppressed"] is None),
                   "metrics": pooled},
        "subgroups": _pooled_subgroups(per_site, subgroups),
        "leave_one_site_out": {"sites": loso, "pooled": loso_pooled,
                               "optimism": _optimism(pooled, loso_pooled)},
        "criteria": verdicts,
        #: criteria stated for another kind of model or for metrics this kind does not report
        "criteria_not_applicable": not_applicable,
        "passed": bool(verdicts) and all(c["passed"] for c in verdicts),
    }


class ReportFolder:
    """``<root>/<sha256[:16]>-<n>``, built under a temporary name and renamed when complete."""

    def __init__(self, root: Path, model_sha256: str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        prefix = model_sha256[:16]
        n = 1 + sum(1 for p in self.root.glob(f"{prefix}-*") if p.is_dir())
        while (self.root / f"{prefix}-{n}").exists():
            n += 1
        self.name = f"{prefix}-{n}"
        self.final = self.root / self.name
        self.path = self.root / f".{self.name}.partial"

    @property
    def relative(self) -> str:
        """The folder relative to the root's parent (the workspace): ``validation/<name>``."""
        return f"{self.root.name}/{self.name}"

    def __enter__(self) -> ReportFolder:
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is not None:
            shutil.rmtree(self.path, ignore_errors=True)

    def plots(self, report: dict[str, Any]) -> list[dict[str, str]]:
        """Draw the figures of ``report`` into the folder."""
        from . import plots  # matplotlib only when a report is drawn

        unit = report["settings"]["time_unit"]
        return plots.write_plots(self.path, report["sites"], report["pooled"]["metrics"],
                                 report["settings"]["horizons"], unit, report["settings"]["kind"])

    def write(self, report: dict[str, Any]) -> Path:
        """Write ``report.json`` and move the folder to its final name."""
        (self.path / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True,
                                                          ensure_ascii=False, allow_nan=False) + "\n",
                                               encoding="utf-8")
        self.path.rename(self.final)
        return self.final / "report.json"
