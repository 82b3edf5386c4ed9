"""FP-SRS — Software requirements specification (IEC 62304 §5.2).

Every user need, system requirement and software requirement of
``traceability/requirements/*.yaml``, exactly as loaded and validated by
:mod:`traceability.load`: id, title, text, rationale, acceptance criteria, parents and the
verification method. Software requirements are grouped by functional area (the middle part of
their id). Hazards and risk controls are in the risk management file.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from reportlab.platypus import Flowable

from dossier.documents._layout import code, section
from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import esc, para, table

#: functional areas of the software requirements, by the middle part of their id
AREAS: dict[str, str] = {
    "FED": "Federated analysis", "PRIV": "Disclosure control and privacy", "SEC": "Secure aggregation",
    "LEDG": "Ledger and witnesses", "CONS": "Consent", "REG": "Model registry and release gate",
    "DEV": "Risk computation (device core)", "FHIR": "FHIR R4 endpoint", "AUTH": "Authentication and scopes",
    "AUDIT": "Audit trail", "CDS": "CDS Hooks service", "CLI": "Command line", "VAL": "Clinical validation",
    "TRACE": "Traceability", "SOUP": "SOUP and SBOM", "DOS": "Technical file (dossier)",
}
_OPS = {">=": "\u2265", "<=": "\u2264"}


def _criterion(a: Any) -> str:
    """One acceptance criterion in words: ``pooled harrell_c ci_lower ≥ 0.6``."""
    value = (f"between {a.threshold[0]:g} and {a.threshold[1]:g}" if a.op == "between"
             else f"{_OPS.get(a.op, a.op)} {a.threshold:g}")
    at = (" at each horizon the model reports" if a.horizon == "each"
          else f" at {a.horizon:g}" if a.horizon is not None else "")
    return f"{a.scope} {a.metric} ({a.statistic}){at} {value}"


def _body(item: Any) -> Flowable:
    """Title, text, rationale and acceptance criteria of one item, in one cell."""
    parts = [f"<b>{esc(item.title)}</b>", esc(" ".join(item.text.split()))]
    if item.rationale:
        parts.append(f"<i>Rationale:</i> {esc(' '.join(item.rationale.split()))}")
    if item.acceptance:
        parts.append("<i>Acceptance:</i> " + "; ".join(esc(_criterion(a)) for a in item.acceptance))
    return para("<br/>".join(parts), "cell")


def item_table(items: list[Any]) -> Flowable:
    """ID, requirement, parents and verification method: one row per item, split across pages."""
    rows: list[list[object]] = [["ID", "Requirement", "Parents", "Verification"]]
    for item in items:
        rows.append([code(item.id), _body(item),
                     ", ".join(item.parents) or "\u2014", item.verification])
    return table(rows, widths=[27, 98, 26, 19])


def area_of(item_id: str) -> str:
    return item_id.split("-")[1]


def _summary(reqs: Any) -> list[Flowable]:
    kinds = ("user-need", "system", "software")
    rows: list[list[object]] = [["Type", "Items", "test", "inspection", "analysis"]]
    for kind in kinds:
        items = reqs.of_type(kind)
        count = Counter(i.verification for i in items)
        rows.append([kind, len(items), count["test"], count["inspection"], count["analysis"]])
    return [*section("2 Summary"),
            para("Items of this specification by type and verification method. A requirement verified by "
                 "test is covered only by a passing test marked with its id (see the trace matrix FP-TM); "
                 "analysis items are verified by the clinical validation report FP-CVR; inspection items by "
                 "review."),
            table(rows, widths=[40, 25, 25, 25, 25])]


def _software(reqs: Any) -> list[Flowable]:
    items = reqs.of_type("software")
    areas = list(dict.fromkeys(area_of(i.id) for i in items))
    ordered = [a for a in AREAS if a in areas] + sorted(a for a in areas if a not in AREAS)
    out: list[Flowable] = [*section("5 Software requirements"),
                           para("Each software requirement refines one or more system requirements (its "
                                "parents). Grouped by functional area.")]
    for n, area in enumerate(ordered, start=1):
        group = [i for i in items if area_of(i.id) == area]
        t = item_table(group)
        out += [*section(f"5.{n} {AREAS.get(area, area)} (SRS-{area}, {len(group)})", 2, then=t), t]
    return out


def _titled(title: str, body: Flowable) -> list[Flowable]:
    return [*section(title, then=body), body]


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    reqs: Any = inputs.requirements
    needs, system = reqs.of_type("user-need"), reqs.of_type("system")
    return [
        *section("1 Scope and conventions"),
        para(f"This specification states the requirements of {esc(inputs.device)} "
             f"{esc(inputs.device_version)} (commit {esc(inputs.commit)}) as recorded in the controlled "
             "requirement files traceability/requirements/*.yaml (IEC 62304 "
             "\u00a75.2.1, \u00a75.2.2). The design-control chain is user need \u2192 system requirement "
             "\u2192 software requirement \u2192 test; every item names its parents, and every link "
             "records the fingerprint of the parent it was reviewed against, so an edited parent makes "
             "the link suspect until it is reviewed again (\u00a75.2.5)."),
        para("Ids: UN- user need, SYS- system requirement, SRS- software requirement. Verification: "
             "<i>test</i> (automated test marked with the id), <i>analysis</i> (validation report), "
             "<i>inspection</i> (review). Risk control measures implemented in software (\u00a75.2.3) are "
             "software requirements here; their link to the hazards is in the risk management file FP-RMF."),
        *_summary(reqs),
        *_titled("3 User needs", item_table(needs)),
        *_titled("4 System requirements", item_table(system)),
        *_software(reqs),
    ]


SPEC = DocumentSpec(id="FP-SRS", title="Software requirements specification", file="FP-SRS-requirements.pdf",
                    needs=("requirements",), build=build, toc=True)
