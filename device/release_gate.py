"""The release gate's rules that are not bookkeeping (IEC 62304 §5.8; ISO 14971 risk controls): who may
approve a release and over what, which software verification a release rests on, and whether a model's
intended-use envelope stays inside its training data. Pure functions; :class:`device.registry.ModelRegistry`
applies them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ledger.signatures import Approval, Person
from ledger.signatures import verify as verify_approval


class RegistryError(ValueError):
    """Unknown model, tampered artifact, or an artifact that is not a model."""


class LedgerUntrusted(RegistryError):
    """The ledger fails its check (entries against their leaves, the recomputed root against the
    witnessed checkpoint and the trust anchors): the registry refuses to replay it."""



def release_subject(model: Any, sha256: Any, report_sha256: Any, verification: Any = None,
                    change_control: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a release approver signs: the model version, its artifact, its validation report, the
    software verification the release rests on (passed with its JUnit hash, or a demonstration waiver)
    and, for a successor, its whole change-control record — so none of them can be swapped or dropped
    in the ledger without breaking the signature."""
    subject = {"action": "release-model", "model": model, "sha256": sha256, "report_sha256": report_sha256,
               "verification": verification}
    if change_control is not None:
        subject["change_control"] = dict(change_control)
    return subject


def assess_successor(plan: Path | None, ref: str, base: tuple[str, dict[str, Any], dict[str, Any]],
                     artifact: dict[str, Any], report: dict[str, Any], significant_change: str = ""
                     ) -> dict[str, Any]:
    """The change-control record of a successor's release (FDA PCCP; MDCG 2020-3): its assessment
    against the plan (:func:`device.change_control.assess_change`) versus ``base`` = (ref, artifact,
    report) of the version it replaces. Within the plan it is a routine update. Outside it — or with no
    plan — it is a significant change, refused unless ``significant_change`` names the decision (a new
    assessment) that authorises it; that decision is recorded and signed with the release."""
    from .change_control import ChangeControlError, assess_change, load_plan

    decided = significant_change.strip()
    if plan is None or not Path(plan).is_file():
        record: dict[str, Any] = {"plan": None, "plan_sha256": None, "within_plan": False,
                                  "predecessor": {"model": base[0]}}
        why = "no change control plan is available to assess it"
    else:
        try:
            result = assess_change(load_plan(Path(plan)), base[1], base[2], artifact, report)
        except ChangeControlError as exc:
            raise RegistryError(str(exc)) from None
        record = result.to_ledger()
        first = result.failed()[0] if result.failed() else None
        why = f"it is outside the change control plan {result.plan_id} ({first.id}: {first.detail})" \
            if first is not None else ""
    if not record["within_plan"] and not decided:
        raise RegistryError(f"{ref} succeeds {base[0]} but {why}: a significant change (MDCG 2020-3), not a "
                            "routine update; release it only with --significant-change naming the new "
                            "assessment that authorises it")
    return {**record, "significant_change": decided} if decided and not record["within_plan"] else record


def approval_problems(approval: Approval | Mapping[str, Any] | None, people: Mapping[str, Person],
                      subject: Mapping[str, Any]) -> list[str]:
    """Problems of a release approval: absent, not verifying, or not in the ``approver`` role."""
    if approval is None:
        return ["it names no approver (a release is approved by a pinned person's signature)"]
    problems = verify_approval(approval, people, subject, exact=True)
    found = approval if isinstance(approval, Approval) else None
    statement = found.statement if found is not None else dict(approval).get("statement") or {}
    role = statement.get("role")
    if role != "approver":
        problems.append(f"a release is approved in the approver role, not {role!r}")
    return problems


def release_verification(report: dict[str, Any], demonstration: bool) -> dict[str, Any]:
    """The software verification a release rests on (IEC 62304 §5.7–5.8), from the validation report:
    the suite's evidence when it passed; in a demonstration workspace, a recorded waiver; else refused."""
    evidence = report.get("verification") or {}
    status = evidence.get("status", "absent")
    if status == "passed" and (evidence.get("selection") or evidence.get("dirty")):
        status = "not release-grade: " + ("a selection of the suite ran" if evidence.get("selection") else
                                          "the suite ran on a modified checkout")
    if status == "passed":
        kept = ("commit", "junit_sha256", "tests", "failures", "errors", "skipped", "source")
        return {"status": "passed", **{k: evidence[k] for k in kept if evidence.get(k) is not None}}
    why = f"software verification {status}" + (f" ({evidence['reason']})" if evidence.get("reason") else "")
    if demonstration:
        return {"status": "waived", "reason": f"demonstration workspace (fedprog demo): {why}; not for "
                                              "clinical use"}
    raise RegistryError(f"{report.get('model', 'the model')}: {why}. A release needs verification that "
                        "passed: validate without --skip-verification, or with --verification-junit FILE "
                        "from `make test` of this commit")


def check_envelope(artifact: dict[str, Any]) -> None:
    """Refuse a model whose intended-use envelope reaches where its training data do not: every tenth
    of a declared range that can hold a value (any tenth of a quantity's range, a tenth holding a
    whole number of an integer's) must hold training patients by the securely summed coverage
    histogram the artifact carries. A site sends a cell of fewer than k of its patients as 0 (k-cells
    at the source), so a tenth counted at all holds at least k training patients at one hospital
    (RC-INPUT-005); the lowest and highest tenth are the declared extremes (RC-INPUT-001). The device
    refuses inputs outside the range, so the range must not promise what the data never showed
    (ISO 14971 risk control for HAZ-INPUT-001 and HAZ-INPUT-005)."""
    for spec in artifact.get("inputs", []):
        cov = spec.get("coverage")
        if not cov or not cov.get("counts") or spec.get("kind") not in ("quantity", "integer"):
            continue
        counts, edges = cov["counts"], cov["edges"]
        last = len(counts) - 1
        for i in _holdable(edges, spec["kind"] == "integer"):
            if counts[i]:
                continue
            where = {0: "lowest tenth", last: "highest tenth"}.get(i, "tenth")
            raise RegistryError(
                f"input {spec['name']!r}: no training patient in the {where} of its declared range "
                f"[{edges[i]:g}, {edges[i + 1]:g}]: the intended-use envelope must not exceed the "
                "training data (every tenth holds at least k training patients at one hospital); narrow the "
                "range in the study settings and retrain")


def _holdable(edges: list[float], whole: bool) -> list[int]:
    """The bins of ``edges`` (``numpy.histogram``'s: half-open, the last closed) a value can fall in:
    all of them, or for whole numbers those holding an integer."""
    n = len(edges) - 1
    if not whole:
        return list(range(n))
    out = []
    for i in range(n):
        lo, hi = edges[i], edges[i + 1]
        first = math.ceil(lo)
        if first < hi or (i == n - 1 and first <= hi):
            out.append(i)
    return out
