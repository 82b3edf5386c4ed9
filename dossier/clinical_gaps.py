"""What keeps the clinical evaluation open: the gaps in the evidence and the judgements nobody has
written yet (MDCG 2020-13: an assessor checks that every gap is identified and justified).

Each gap is ``(field, what closes it)``; :func:`dossier.inputs.open_decisions` lists them in the
manifest, so a technical file with any of them is a draft, and FP-CER prints them as its open
items. A documented model the evaluation does not concern (``models``) is a gap; a missing external
validation and a failed external criterion are gaps; so is a subgroup of a validation report without
a discussion, an input without a clinical association, a literature
figure nobody confirmed, the systematic literature search not yet run, and the benefit-risk
conclusion or the evaluator not yet decided.
"""

from __future__ import annotations

from typing import Any

from .clinical import RELATIVE_PATH, ClinicalEvaluationFile, decided
from .evidence import ClinicalEvidence

FILE = RELATIVE_PATH.as_posix()
Gap = tuple[str, str]


def subgroup_names(*reports: dict[str, Any] | None) -> list[str]:
    """Names of the subgroups reported (pooled or at a site) by any of ``reports``, in order."""
    names: dict[str, None] = {}
    for rep in reports:
        if not rep:
            continue
        names.update(dict.fromkeys(g["name"] for g in rep.get("settings", {}).get("subgroups", [])))
        names.update(dict.fromkeys(rep.get("subgroups") or {}))
        for site in (rep.get("sites") or {}).values():
            names.update(dict.fromkeys(g["name"] for g in site.get("subgroups", []) if "name" in g))
    return list(names)


def unassociated(cef: ClinicalEvaluationFile, artifact: dict[str, Any] | None) -> list[str]:
    """Names of the model's inputs no factor of the clinical association matches."""
    out = []
    for spec in (artifact or {}).get("inputs", []):
        texts = (spec.get("name", ""), spec.get("title") or "", (spec.get("code") or {}).get("display", ""))
        if cef.factor_of(*texts) is None:
            out.append(str(spec.get("name")))
    return out


def _external(evidence: ClinicalEvidence) -> list[Gap]:
    if not evidence.external:
        return [("clinical evidence: external validation",
                 "an external validation of the model at a hospital that never trained it, inside the "
                 "intended purpose (fedprog validate with an external site), anchored in the ledger")]
    latest = {tuple(sorted(r.sites)): r for r in evidence.external}  # the newest report per set of sites
    return [(f"external validation report {r.sha256[:16]}…: criterion {cid}",
             "the criterion failed at the external hospital: recalibrate or retrain and validate again, or "
             "justify in the clinical evaluation why the model may still be released")
            for r in latest.values() for cid in r.failed()]


def _written(cef: ClinicalEvaluationFile, names: list[str], artifact: dict[str, Any] | None) -> list[Gap]:
    out = [(f"{FILE}: subgroups.{name}", f"the clinical evaluator's discussion of the performance in the "
            f"subgroup {name}") for name in names if not (cef.subgroups.get(name) or "").strip()]
    out += [(f"{FILE}: clinical_association.factors", f"the clinical association of the input {name} (an "
             "established prognostic factor, cited)") for name in unassociated(cef, artifact)]
    out += [(f"{FILE}: state_of_the_art: {tool}", f"{what}: a figure to be confirmed by the manufacturer's "
             "literature search") for tool, what in cef.unconfirmed()]
    if not decided(cef.literature_search.performed_by):
        out.append((f"{FILE}: literature_search.performed_by", "a systematic literature search on the "
                    "state of the art, documented and appraised (MDCG 2020-13 section D)"))
    if not decided(cef.benefit_risk.conclusion):
        out.append((f"{FILE}: benefit_risk.conclusion", "the benefit-risk conclusion of the clinical "
                    "evaluation, which only the manufacturer can draw"))
    if not decided(cef.benefit_risk.evaluator):
        out.append((f"{FILE}: benefit_risk.evaluator", "the qualified clinical evaluator who signs the "
                    "clinical evaluation report"))
    return out


def clinical_gaps(cef: ClinicalEvaluationFile | None, evidence: ClinicalEvidence | None,
                  validation: dict[str, Any] | None, artifact: dict[str, Any] | None) -> list[Gap]:
    """Every gap of the clinical evaluation of the model (``validation``: its internal report);
    none without the clinical evaluation's data (its absence is a missing input, named elsewhere)."""
    if cef is None:
        return []
    found = evidence if evidence is not None else ClinicalEvidence()
    external = found.external[-1].report if found.external else None
    return [*_covered(cef, artifact), *_external(found),
            *_written(cef, subgroup_names(validation, external), artifact)]


def _covered(cef: ClinicalEvaluationFile, artifact: dict[str, Any] | None) -> list[Gap]:
    """A documented model this clinical evaluation does not concern (another outcome, other inputs: e.g.
    a logistic model of a recorded outcome beside the evaluated Cox model) is a gap, never covered by
    another model's evaluation."""
    model = (artifact or {}).get("model_id")
    if model is None or model in cef.models:
        return []
    outcome = (artifact or {}).get("outcome", {}).get("name", "its outcome")
    return [(f"{FILE}: models", f"the clinical evaluation of {model} ({outcome}): this file evaluates "
             f"{', '.join(cef.models)}; the clinical association, state of the art and benefit-risk of "
             "this model are the manufacturer's to write")]
