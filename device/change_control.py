"""The predetermined change control plan (``regulatory/change_control_plan.yaml``) and the assessment of a
retrained successor against it (FDA PCCP guidance for AI-enabled device software functions; MDCG 2020-3;
EU MDR Annex VI Part C 6.5.2).

The plan pre-authorises one modification: the same model specification retrained on the same
hospitals' consented data (after consent revocations, or a data refresh), with the estimates and the
performance allowed to move only within stated bounds. :func:`assess_change` compares a candidate
successor with the released version it succeeds, clause by clause, from the two artifacts and their
validation reports only (pure: no I/O, no clock); every check names the plan clause it judges, and a
value that is missing fails its check (a clause passes only on evidence). Anything outside the plan is
a significant change. Adversary: an operator who retrains with changed inputs, or a degraded model, and
hopes it ships as a routine update.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ledger.canonical import canonical_json, sealed_sha256
from prognosis.inputs import first_error

SCHEMA = "fedprog.pccp/v1"
#: where the plan lives, relative to the source checkout
RELATIVE_PATH = Path("regulatory") / "change_control_plan.yaml"
#: the clauses the code checks, in the order they are judged; the plan must state exactly these
CLAUSES = ("PCCP-LINEAGE", "PCCP-SPEC-MODEL", "PCCP-SPEC-INPUTS", "PCCP-SPEC-USE", "PCCP-SPEC-OUTCOME",
           "PCCP-SPEC-BASELINE", "PCCP-DATA-SITES", "PCCP-DATA-COHORT", "PCCP-COEF-SE", "PCCP-COEF-RANGE",
           "PCCP-VAL-PASSED", "PCCP-VAL-CRITERIA", "PCCP-PERF-C", "PCCP-PERF-SLOPE", "PCCP-PERF-EO")


class ChangeControlError(ValueError):
    """The plan file is missing or breaks its contract (one line naming the file and the field)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _AroundOne(_Strict):
    """An absolute range ``[min, max]`` of a calibration measure, holding 1 (perfect calibration)."""

    min: float = Field(gt=0)
    max: float = Field(gt=0)

    @model_validator(mode="after")
    def _around_one(self) -> _AroundOne:
        if not self.min < 1.0 < self.max:
            raise ValueError(f"[min, max] must contain 1 (perfect calibration), got [{self.min:g}, "
                             f"{self.max:g}]")
        return self


class SlopeBounds(_AroundOne):
    max_change: float = Field(gt=0)


class RatioBounds(_AroundOne):
    max_log_change: float = Field(gt=0)


class Bounds(_Strict):
    coefficient_z: float = Field(gt=0, le=3)
    coefficient_range_log_hr: float = Field(gt=0)
    harrell_c_margin: float = Field(ge=0, le=0.1)
    calibration_slope: SlopeBounds
    e_o_ratio: RatioBounds
    min_cohort_fraction: float = Field(gt=0, le=1)


class Clause(_Strict):
    id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    text: str = Field(min_length=1)


class Acceptance(_Strict):
    """Who accepted the plan (the notified body) and their reference; ``None`` while not accepted."""

    accepted_by: str | None = None
    reference: str | None = None


class Modification(_Strict):
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    triggers: list[str] = Field(min_length=1)
    rationale: str = Field(min_length=1)


class Protocol(_Strict):
    data_management: list[str] = Field(min_length=1)
    retraining: list[str] = Field(min_length=1)
    performance_evaluation: list[str] = Field(min_length=1)
    update_procedure: list[str] = Field(min_length=1)


class ChangeControlPlan(_Strict):
    """``regulatory/change_control_plan.yaml`` (``schema: fedprog.pccp/v1``)."""

    schema_: Literal["fedprog.pccp/v1"] = Field(alias="schema")
    id: str = Field(min_length=1)
    version: str = Field(min_length=1)
    title: str = Field(min_length=1)
    acceptance: Acceptance
    modification: Modification
    bounds: Bounds
    clauses: list[Clause] = Field(min_length=1)
    protocol: Protocol
    significant_changes: list[str] = Field(min_length=1)

    @field_validator("clauses")
    @classmethod
    def _clauses(cls, clauses: list[Clause]) -> list[Clause]:
        ids = [c.id for c in clauses]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        missing, extra = [c for c in CLAUSES if c not in ids], sorted(set(ids) - set(CLAUSES))
        if dup or missing or extra:
            what = (f"{dup[0]} stated twice" if dup else f"{missing[0]} is not stated" if missing
                    else f"{extra[0]} is not a clause the device checks")
            raise ValueError(f"{what} (the clauses are {', '.join(CLAUSES)})")
        return clauses

    @property
    def sha256(self) -> str:
        """SHA-256 of the plan's canonical JSON: what an assessment names (comments and layout aside)."""
        return hashlib.sha256(canonical_json(self.model_dump(mode="json", by_alias=True))).hexdigest()

    def clause(self, clause_id: str) -> Clause:
        return next(c for c in self.clauses if c.id == clause_id)


def load_plan(path: Path) -> ChangeControlPlan:
    """Read and validate the plan (YAML, unknown fields refused); :class:`ChangeControlError` in one line
    naming the file and, for a contract violation, the field."""
    try:
        import yaml  # the quality-management tools' dependency: needed to release, not to score
    except ImportError:  # pragma: no cover - the device's run-time install
        raise ChangeControlError(f"{path}: reading the change control plan needs pyyaml "
                                 "(install fedprog[qms])") from None
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChangeControlError(f"{path}: the change control plan is missing") from None
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ChangeControlError(f"{path}: not a readable YAML file ({' '.join(str(exc).split())})") from None
    try:
        return ChangeControlPlan.model_validate(raw)
    except ValidationError as exc:
        raise ChangeControlError(f"{path}: {first_error(exc, plain=True)}") from None


# ------------------------------------------------------------------ the assessment
class Check(_Strict):
    """One clause judged: ``id`` is the plan clause, ``detail`` the values it was judged on."""

    id: str
    passed: bool
    detail: str


class ChangeAssessment(_Strict):
    """A successor judged against the plan: within it only if every clause passed."""

    plan_id: str
    plan_version: str
    plan_sha256: str
    released: dict[str, Any]  # {model, sha256, report_sha256}
    candidate: dict[str, Any]
    within_plan: bool
    checks: list[Check]

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_ledger(self) -> dict[str, Any]:
        """The small JSON a ``release`` entry records under ``change_control``: the plan, the versions
        and reports compared, the verdict, the clauses passed and each failed clause with its detail."""
        return {"plan": self.plan_id, "plan_version": self.plan_version, "plan_sha256": self.plan_sha256,
                "predecessor": self.released, "candidate_report_sha256": self.candidate.get("report_sha256"),
                "within_plan": self.within_plan, "passed": [c.id for c in self.checks if c.passed],
                "failed": [{"id": c.id, "detail": c.detail} for c in self.failed()]}


@dataclass(frozen=True)
class _Pair:
    """What the checks read: the plan's bounds, both artifacts and both reports."""

    bounds: Bounds
    old: dict[str, Any]
    old_report: dict[str, Any]
    new: dict[str, Any]
    new_report: dict[str, Any]


Verdict = tuple[bool, str]


def _ref(art: dict[str, Any]) -> str:
    return f"{art.get('model_id')}@{art.get('version')}"


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _same(what: str, old: Any, new: Any) -> Verdict:
    """Identical (as canonical JSON), else the first differing field named with both values."""
    if canonical_json(old) == canonical_json(new):
        return True, f"{what} identical"
    if isinstance(old, dict) and isinstance(new, dict):
        key = next(k for k in sorted(set(old) | set(new))
                   if canonical_json(old.get(k)) != canonical_json(new.get(k)))
        return False, f"{what}: {key} {_num(old.get(key))!s} -> {_num(new.get(key))!s}"
    return False, f"{what}: {old!r} -> {new!r}"


def _lineage(p: _Pair) -> Verdict:
    problems = []
    if p.new.get("model_id") != p.old.get("model_id"):
        problems.append(f"model_id {p.old.get('model_id')} -> {p.new.get('model_id')} (a model of its own)")
    if p.new.get("sha256") == p.old.get("sha256"):
        problems.append("the candidate is the released artifact itself")
    for name, art, rep in (("released", p.old, p.old_report), ("candidate", p.new, p.new_report)):
        if rep.get("model_sha256", rep.get("sha256")) != art.get("sha256"):
            problems.append(f"the {name} report is not the report of the {name} artifact")
    if str(p.old_report.get("setting") or "internal") != "internal":
        problems.append("the released report is not an internal validation")
    return (not problems, "; ".join(problems) or f"{_ref(p.new)} succeeds {_ref(p.old)}")


def _model(p: _Pair) -> Verdict:
    def spec(a: dict[str, Any]) -> dict[str, Any]:
        return {"kind": a.get("kind"), "ties": a.get("ties"), "penalty": a.get("penalty") or 0.0}
    return _same("estimator", spec(p.old), spec(p.new))


def _inputs(p: _Pair) -> Verdict:
    def strip(a: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in i.items() if k != "coverage"} for i in a["inputs"]]
    old, new = strip(p.old), strip(p.new)
    if [i.get("name") for i in old] != [i.get("name") for i in new]:
        return False, f"inputs {[i.get('name') for i in old]} -> {[i.get('name') for i in new]}"
    for a, b in zip(old, new, strict=True):
        ok, detail = _same(f"input {a.get('name')!r}", a, b)
        if not ok:
            return ok, detail
    return True, f"{len(old)} inputs identical (coverage aside)"


def _use(p: _Pair) -> Verdict:
    return _same("intended use", p.old.get("intended_use"), p.new.get("intended_use"))


def _outcome(p: _Pair) -> Verdict:
    return _same("outcome", p.old["outcome"], p.new["outcome"])


def _baseline(p: _Pair) -> Verdict:
    def spec(a: dict[str, Any]) -> dict[str, Any]:
        if a.get("kind") == "logistic":  # its reference patient; it has no baseline hazard
            return {"center": a["logistic"]["center"]}
        b = a["baseline_survival"]
        return {"center": b["center"], "strata_column": b.get("strata_column"),
                "strata_by_site": b.get("strata_by_site"),
                "strata": None if b.get("strata") is None else sorted(s["label"] for s in b["strata"])}
    return _same("baseline", spec(p.old), spec(p.new))


def _sites(p: _Pair) -> Verdict:
    def spec(a: dict[str, Any]) -> dict[str, Any]:
        t = a["training"]
        return {"sites": sorted(t["sites"]), "time_grid": t.get("time_grid"), "policy": t.get("policy"),
                "secure_aggregation": t.get("secure_aggregation"),
                "differential_privacy": t.get("differential_privacy")}
    ok, detail = _same("training", spec(p.old), spec(p.new))
    return ok, (f"sites {', '.join(sorted(p.new['training']['sites']))}, grid, policy and privacy identical"
                if ok else detail)


def _cohort(p: _Pair) -> Verdict:
    f, old, new = p.bounds.min_cohort_fraction, p.old["training"], p.new["training"]
    parts = [(what, old[what], new[what]) for what in ("n", "events")]
    ok = all(n >= f * o for _, o, n in parts)
    return ok, "; ".join(f"{what} {n} {'>=' if n >= f * o else '<'} {f:g} x {o}" for what, o, n in parts)


def _coef_deltas(p: _Pair) -> list[tuple[str, float]]:
    """(input, |β_new − β_old|) for every released input (KeyError when the candidate lacks one)."""
    return [(n, abs(p.new["coefficients"][n] - b)) for n, b in p.old["coefficients"].items()]


def _coef_se(p: _Pair) -> Verdict:
    z, se = p.bounds.coefficient_z, p.old["standard_errors"]
    ratios = sorted(((d / se[n] if se[n] > 0 else math.inf, n) for n, d in _coef_deltas(p)), reverse=True)
    bad = [f"{n} {r:.3g} SE" for r, n in ratios if r > z]
    return (not bad, f"beyond {z:g} SE: {', '.join(bad)}" if bad
            else f"largest change {ratios[0][0]:.3g} SE ({ratios[0][1]}) <= {z:g}")


def _scale(p: _Pair) -> str:
    """The scale coefficients are on: log hazard ratios (Cox) or log odds ratios (logistic)."""
    return "log-OR" if p.old.get("kind") == "logistic" else "log-HR"


def _coef_range(p: _Pair) -> Verdict:
    bound, spans, scale = p.bounds.coefficient_range_log_hr, {}, _scale(p)
    for i in p.old["inputs"]:
        if i.get("min") is not None and i.get("max") is not None:
            spans[i["name"]] = i["max"] - i["min"]
    effects = sorted(((d * spans[n], n) for n, d in _coef_deltas(p) if n in spans), reverse=True)
    bad = [f"{n} {e:.3g}" for e, n in effects if e > bound]
    open_ = sorted(set(p.old["coefficients"]) - set(spans))
    note = f"; open range, SE bound only: {', '.join(open_)}" if open_ else ""
    if bad:
        return False, f"{scale} change over the declared range beyond {bound:g}: {', '.join(bad)}{note}"
    top = f"{effects[0][0]:.3g} ({effects[0][1]})" if effects else "none"
    return True, f"largest {scale} change over the declared range {top} <= {bound:g}{note}"


def _passed(p: _Pair) -> Verdict:
    rep = p.new_report
    failed = [c.get("id") for c in rep.get("criteria", []) if not c.get("passed")]
    if rep.get("passed") is not True or not rep.get("criteria"):
        return False, f"validation not passed (failed: {', '.join(map(str, failed)) or 'no criteria judged'})"
    if str(rep.get("setting") or "internal") != "internal":
        return False, f"the candidate's report is {rep.get('setting')}, not the internal validation"
    return True, f"{len(rep['criteria'])} criteria passed"


#: the criterion the validation adds for the test suite: judged by the release gate, not compared here
_SUITE = "software-verification"


def _criteria(p: _Pair) -> Verdict:
    def spec(c: dict[str, Any]) -> list[Any]:
        return [c.get(k) for k in ("metric", "statistic", "op", "threshold", "horizon", "scope")]
    new = {c.get("id"): spec(c) for c in p.new_report.get("criteria", [])}
    problems = [f"{c.get('id')} {'not judged' if c.get('id') not in new else 'changed'}"
                for c in p.old_report.get("criteria", [])
                if c.get("id") != _SUITE and new.get(c.get("id")) != spec(c)]
    old_sites, new_sites = (sorted(r.get("pooled", {}).get("sites") or [])
                            for r in (p.old_report, p.new_report))
    if old_sites != new_sites:
        problems.append(f"pooled over {', '.join(new_sites) or 'no site'} instead of {', '.join(old_sites)}")
    if not p.old_report.get("criteria"):
        problems.append("the released report judged no criteria")
    return (not problems, "; ".join(problems) or
            f"released criteria judged unchanged, pooled over {', '.join(new_sites)}")


def _pooled(report: dict[str, Any], metric: str) -> dict[float | None, float]:
    """Pooled estimates of ``metric`` by horizon (``None``: no horizon)."""
    return {e.get("horizon"): e["estimate"] for e in report.get("pooled", {}).get("metrics", [])
            if e.get("metric") == metric and isinstance(e.get("estimate"), int | float)}


def _at(h: float | None) -> str:
    return "all follow-up" if h is None else f"h={h:g}"


#: the concordance each model kind's validation reports (Harrell's C; for a binary outcome, the C
#: statistic, the area under the ROC curve)
C_METRIC = {"cox-ph": ("harrell_c", "Harrell's C"), "logistic": ("c_statistic", "C statistic")}


def _perf_c(p: _Pair) -> Verdict:
    metric, name = C_METRIC.get(str(p.old.get("kind") or "cox-ph"), C_METRIC["cox-ph"])
    old, new = _pooled(p.old_report, metric).get(None), _pooled(p.new_report, metric).get(None)
    if old is None or new is None:
        which = "released" if old is None else "candidate"
        return False, f"pooled {name} not reported by the {which} report"
    margin = p.bounds.harrell_c_margin
    ok = new >= old - margin
    return ok, f"pooled C {new:.4f} {'>=' if ok else '<'} {old:.4f} - {margin:g}"


def _calibration(p: _Pair, metric: str, lo: float, hi: float, change: float,
                 distance: Callable[[float, float], float]) -> Verdict:
    old, new = _pooled(p.old_report, metric), _pooled(p.new_report, metric)
    if not old:
        return False, f"the released report has no pooled {metric}: nothing to compare with"
    out, ok = [], True
    for h, o in sorted(old.items(), key=lambda kv: -1.0 if kv[0] is None else kv[0]):
        n = new.get(h)
        if n is None:
            ok = False
            out.append(f"{_at(h)} not reported")
            continue
        good = lo <= n <= hi and distance(n, o) <= change
        ok &= good
        out.append(f"{_at(h)} {n:.3f} (released {o:.3f}){'' if good else ' OUT'}")
    return ok, f"[{lo:g}, {hi:g}], change <= {change:g}: " + "; ".join(out)


def _perf_slope(p: _Pair) -> Verdict:
    b = p.bounds.calibration_slope
    return _calibration(p, "calibration_slope", b.min, b.max, b.max_change, lambda n, o: abs(n - o))


def _perf_eo(p: _Pair) -> Verdict:
    b = p.bounds.e_o_ratio
    return _calibration(p, "e_o_ratio", b.min, b.max, b.max_log_change,
                        lambda n, o: abs(math.log(n) - math.log(o)) if n > 0 and o > 0 else math.inf)


_CHECKS: dict[str, Callable[[_Pair], Verdict]] = {
    "PCCP-LINEAGE": _lineage, "PCCP-SPEC-MODEL": _model, "PCCP-SPEC-INPUTS": _inputs, "PCCP-SPEC-USE": _use,
    "PCCP-SPEC-OUTCOME": _outcome, "PCCP-SPEC-BASELINE": _baseline, "PCCP-DATA-SITES": _sites,
    "PCCP-DATA-COHORT": _cohort, "PCCP-COEF-SE": _coef_se, "PCCP-COEF-RANGE": _coef_range,
    "PCCP-VAL-PASSED": _passed, "PCCP-VAL-CRITERIA": _criteria, "PCCP-PERF-C": _perf_c,
    "PCCP-PERF-SLOPE": _perf_slope, "PCCP-PERF-EO": _perf_eo}


def _judge(clause: str, pair: _Pair) -> Check:
    """One clause; a value the clause needs that is absent or malformed fails it, named."""
    try:
        passed, detail = _CHECKS[clause](pair)
    except (KeyError, TypeError, AttributeError, ValueError, StopIteration) as exc:
        passed, detail = False, f"cannot be judged: {type(exc).__name__} {exc}"[:300]
    return Check(id=clause, passed=passed, detail=detail[:500])


def _version(art: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    return {"model": _ref(art), "sha256": art.get("sha256"), "report_sha256": sealed_sha256(report)}


def assess_change(plan: ChangeControlPlan, released_artifact: dict[str, Any], released_report: dict[str, Any],
                  candidate_artifact: dict[str, Any], candidate_report: dict[str, Any]) -> ChangeAssessment:
    """Judge a retrained successor against the plan, clause by clause (pure).

    ``released_*``: the version it succeeds (its artifact and the validation report its release rests on);
    ``candidate_*``: the successor and its latest validation report, as the registry keeps them (a
    report's ``report_sha256`` is its sealed SHA-256, as its ledger entry anchors it). Only called for a
    successor: a first version is not a change.
    """
    pair = _Pair(plan.bounds, released_artifact, released_report, candidate_artifact, candidate_report)
    checks = [_judge(c, pair) for c in CLAUSES]
    return ChangeAssessment(plan_id=plan.id, plan_version=plan.version, plan_sha256=plan.sha256,
                            released=_version(released_artifact, released_report),
                            candidate=_version(candidate_artifact, candidate_report),
                            within_plan=all(c.passed for c in checks), checks=checks)
