"""FP-ARCH — Software architecture (IEC 62304 §5.3).

The software items and how data flows between them (drawn with reportlab.graphics, in the shared
palette), each package's responsibility and interfaces, the SOUP items the requirements rely on
(from the SOUP list) and the segregation the design keeps.
"""

from __future__ import annotations

from typing import Any

from reportlab.graphics.shapes import Drawing, Group, Line, Polygon, Rect, String
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import Flowable, KeepTogether

from dossier.documents._layout import code, fit, ids, section
from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import ACCENT, INK, MARGIN, PAGE, RULE, SHADE, STYLES, esc, para, table

WIDTH, HEIGHT = PAGE[0] - 2 * MARGIN, 330.0
_FONT, _BOLD = STYLES["cell"].fontName, STYLES["head"].fontName

#: package, where it runs, responsibility, depends on (fedprog packages)
PACKAGES: tuple[tuple[str, str, str, str], ...] = (
    ("ledger", "shared log; witness at each site",
     "RFC 9162 Merkle tree, append-only SQLite log, C2SP signed checkpoints, site witnesses that cosign "
     "only consistent checkpoints and detect forks, full verification.", "none"),
    ("consent", "each site",
     "Per-site consent registry of FHIR Consent resources (every version kept); keyed commitments to the "
     "ledger; revocation flags the training jobs that used the patient; erasure by crypto-shredding.",
     "ledger"),
    ("federated", "sites and coordinator",
     "Split by where code runs. site/: reads its table, applies the consent filter and the rules of the "
     "study its operator approved (its own floors, k-cells at the source, a bound on the linear predictor, "
     "a budget of rounds; under a study's differential privacy, its share of the noise and its privacy "
     "accountant), answers with masked aggregates. protocol/: versioned wire messages (fedprog.msg/v1), "
     "authenticated secure aggregation, the coordinator, transports (in-process, or Flower's Deployment "
     "Engine between hospitals). analyses/: discovery on the time-grid ladder, Newton-Raphson for Cox PH, "
     "Kaplan-Meier, log-rank, dropout handling, the model artifact. disclosure/: the approved-study "
     "protocol and site floors, k-cells, the policy, the differential-privacy mechanism and its accounting, "
     "the transcript audit.", "ledger"),
    ("device", "hospital server",
     "The certified run-time part: artifact loading with hash and contract checks, intended-use envelope, "
     "UCUM conversion, scoring with the 95% interval, model registry and release gate, FHIR R4 server, "
     "CDS Hooks, ES256/SMART authorisation and App Launch, the clinician's risk page, audit trail.",
     "ledger"),
    ("validation", "sites and QA",
     "Clinical performance at each site on its own rows, leave-one-site-out, inverse-variance pooling, "
     "acceptance criteria from the requirements, the hashed report and its figures.",
     "federated, traceability"),
    ("traceability", "development and QA",
     "Requirements, hazards and risk controls (YAML) with schema and link checks, the pytest plugin, trace "
     "matrix, gaps and suspect links, safety classification, SOUP list and SBOM.", "none"),
    ("dossier", "regulatory staff", "The technical file: one module per document, shared style, manifest "
     "anchored in the ledger. Reads everything; nothing reads it.", "all of the above"),
    ("fedprog", "operators", "The command layer only: one typer sub-app per command group wiring the "
     "packages together. No other package imports it.", "all of the above"),
)


def _lines(d: Drawing, x: float, y: float, w: float, h: float, lines: list[str]) -> None:
    """Centred lines in the box (first line bold), shrunk to fit the box's width."""
    size = 7.5
    while size > 5.5 and max(stringWidth(t, _BOLD if i == 0 else _FONT, size)
                             for i, t in enumerate(lines)) > w - 6:
        size -= 0.5
    lead = size + 2
    top = y + h / 2 + (len(lines) - 1) * lead / 2 - size / 3
    for i, text in enumerate(lines):
        d.add(String(x + w / 2, top - i * lead, text, fontName=_BOLD if i == 0 else _FONT, fontSize=size,
                     fillColor=ACCENT if i == 0 else INK, textAnchor="middle"))


def _box(d: Drawing, x: float, y: float, w: float, h: float, lines: list[str], fill: Any = SHADE) -> None:
    d.add(Rect(x, y, w, h, rx=3, ry=3, fillColor=fill, strokeColor=ACCENT, strokeWidth=0.8))
    _lines(d, x, y, w, h, lines)


def _arrow(d: Drawing, x1: float, y1: float, x2: float, y2: float, label: str = "", dashed: bool = False,
           both: bool = False, dx: float = 0, dy: float = 3) -> None:
    """An arrow from (x1, y1) to (x2, y2), optionally labelled at its middle."""
    g = Group()
    g.add(Line(x1, y1, x2, y2, strokeColor=INK, strokeWidth=0.8, strokeDashArray=[3, 2] if dashed else None))
    ends = [(x1, y1, x2, y2), (x2, y2, x1, y1)] if both else [(x1, y1, x2, y2)]
    for ax, ay, bx, by in ends:
        length = max(((bx - ax) ** 2 + (by - ay) ** 2) ** 0.5, 1e-9)
        ux, uy = (bx - ax) / length, (by - ay) / length
        g.add(Polygon([bx, by, bx - 6 * ux + 2.5 * uy, by - 6 * uy - 2.5 * ux,
                       bx - 6 * ux - 2.5 * uy, by - 6 * uy + 2.5 * ux], fillColor=INK, strokeColor=None))
    d.add(g)
    if label:
        d.add(String((x1 + x2) / 2 + dx, (y1 + y2) / 2 + dy, label, fontName=_FONT, fontSize=6,
                     fillColor=INK, textAnchor="middle"))


_CAPTION = ("Figure 1. Software items and data flow. Training runs left to right along the top; the model "
            "then passes the registry, validation and the release gate before the FHIR server serves it.")


def _label(d: Drawing, x: float, y: float, text: str) -> None:
    d.add(String(x, y, text, fontName=_FONT, fontSize=6, fillColor=INK))


def _sites_label(sites: list[str]) -> str:
    if not sites:
        return "(no sites recorded)"
    return ", ".join(sites) if len(sites) <= 2 else f"{sites[0]} \u2026 {sites[-1]}"


def diagram(sites: list[str]) -> Drawing:
    """Sites → secure aggregation → coordinator → artifact → registry/ledger → validation → release
    gate → FHIR server → clinician, with the consent registries and witnesses at each site."""
    d = Drawing(WIDTH, HEIGHT)
    d.add(Rect(0, 150, 122, 176, strokeColor=RULE, strokeWidth=1, strokeDashArray=[4, 3], fillColor=None))
    d.add(String(61, 315, f"Hospital site \u00d7 {len(sites)}", fontName=_BOLD, fontSize=8, fillColor=ACCENT,
                 textAnchor="middle"))
    d.add(String(61, 305, _sites_label(sites), fontName=_FONT, fontSize=6.5, fillColor=INK,
                 textAnchor="middle"))
    _box(d, 6, 270, 110, 28, ["Site data", "CSV / Parquet / FHIR (stays here)"], fill=None)
    _box(d, 6, 226, 110, 36, ["Site process", "consent filter, disclosure policy,", "aggregates, masking"])
    _box(d, 6, 190, 110, 30, ["Consent registry", "FHIR Consent; identities"])
    _box(d, 6, 156, 110, 28, ["Witness", "cosigns checkpoints"])
    _arrow(d, 61, 270, 61, 262)
    _box(d, 160, 222, 96, 58, ["Secure aggregation", "pairwise masks:", "X25519, HKDF, ChaCha20"])
    _box(d, 270, 222, 92, 58, ["Coordinator", "sums only;", "Newton-Raphson step"])
    _box(d, 376, 222, WIDTH - 376, 58, ["Model artifact", "fedprog.model/v1,", "sealed by SHA-256"])
    _arrow(d, 116, 244, 160, 244, "masked", dx=3)
    _arrow(d, 256, 251, 270, 251)
    _arrow(d, 362, 251, 376, 251)
    _box(d, 160, 140, 202, 56, ["Witnessed Merkle ledger (RFC 9162)", "append-only; signed checkpoints count",
                                "when a majority of site witnesses cosigned"])
    _box(d, 376, 140, WIDTH - 376, 56,
         ["Model registry", "candidate \u2192 validated", "\u2192 released \u2192 withdrawn"])
    _arrow(d, 429, 222, 429, 196, "register", dx=16, dy=-2)
    _arrow(d, 376, 168, 362, 168, dashed=True)
    _arrow(d, 116, 200, 160, 182)
    _label(d, 125, 203, "commitments")
    _arrow(d, 116, 168, 160, 160, both=True)
    _label(d, 125, 153, "cosign")
    _box(d, 376, 36, WIDTH - 376, 56, ["Validation", "metrics at each site,", "pooled; acceptance criteria"])
    _box(d, 270, 36, 92, 56, ["Release gate", "passing report required", "ledger release entry"])
    _box(d, 160, 36, 96, 56, ["FHIR R4 server", "$predict-risk, CDS Hooks", "tokens; audit trail"])
    _box(d, 6, 36, 110, 56, ["Clinician (EHR)", "RiskAssessment", "or CDS card"])
    _arrow(d, 429, 140, 429, 92, "report", dx=14, dy=-2)
    _arrow(d, 396, 92, 350, 140, "anchor", dashed=True, dx=12, dy=2)
    _arrow(d, 376, 64, 362, 64)
    _arrow(d, 316, 92, 316, 140, "release", dashed=True, dx=14, dy=-2)
    _arrow(d, 208, 140, 208, 92, "re-read per request", dashed=True, dx=-34, dy=-2)
    _arrow(d, 160, 64, 116, 64, "risk", dy=4)
    _legend(d)
    return d


def _legend(d: Drawing) -> None:
    y = 10
    _arrow(d, 0, y, 24, y)
    d.add(String(28, y - 2, "data flow", fontName=_FONT, fontSize=6.5, fillColor=INK))
    _arrow(d, 90, y, 114, y, dashed=True)
    d.add(String(118, y - 2, "ledger entry / read", fontName=_FONT, fontSize=6.5, fillColor=INK))
    d.add(Rect(200, y - 4, 20, 8, strokeColor=RULE, strokeDashArray=[4, 3], fillColor=None))
    d.add(String(224, y - 2, "boundary of a hospital: patient-level data never cross it", fontName=_FONT,
                 fontSize=6.5, fillColor=INK))


def _soup(inputs: DossierInputs) -> list[Flowable]:
    direct = sorted((s for s in inputs.soup if s.kind == "runtime"), key=lambda s: s.name)
    rows: list[list[object]] = [["SOUP item", "Version", "Function in the architecture", "Relied on by"]]
    rows += [[s.name, s.version, s.purpose, ids(s.requirements)] for s in direct]
    name = max(fit([s.name for s in direct]), fit(["SOUP item"], "head"))
    rest = WIDTH - name - 45
    t = table(rows, widths=[name, 45, rest * 0.6, rest * 0.4])
    return [*section("5 SOUP items and the requirements relying on them", then=t),
            para("Runtime SOUP items (IEC 62304 \u00a75.3.3, \u00a75.3.4) with the software requirements "
                 "whose function depends on them; their transitive dependencies, licences and risk "
                 "evaluation are in FP-SOUP. They run on CPython on the hospital's server or site host; no "
                 "item needs special hardware."), t]


def _segregation() -> list[Flowable]:
    return [
        *section("6 Segregation and process boundaries"),
        para("(a) <b>Site data never leave the site.</b> A site answers only with aggregates whose shapes "
             "are fixed by public parameters, masked under secure aggregation; its error replies give counts "
             "and column names, never a value. Consent identities stay in the site's registry; the ledger "
             "holds keyed commitments only."),
        para("(b) <b>The device package is independent of consent and of the command layer.</b> device "
             "imports only ledger (to read the release state from the log); it never imports consent, "
             "federated or fedprog, so the run-time device can be deployed without them. Dependencies point "
             "one way (section 3), checked on the source by an automated test of every package's imports "
             "(SRS-ARCH-001, \u00a75.3.6)."),
        para("(c) <b>Process boundaries.</b> Each site runs in its own process at its hospital with its own "
             "keys; the coordinator in another; the FHIR server (uvicorn workers and a pool of scoring "
             "processes speaking length-prefixed JSON) on a hospital server; every witness at its site. They "
             "exchange only versioned, validated messages (no pickle). Between hospitals they travel over "
             "Flower's Deployment Engine: a SuperLink at the coordinating centre, a SuperNode per hospital, "
             "each message carried unchanged as bytes; a site's ClientApp lives for one message and keeps "
             "nothing patient-level between messages (SRS-DEP-002). In the demo all run on one host with "
             "an in-process transport that still encodes every message to bytes."),
        para("(d) <b>Safety segregation.</b> No segregation between software items is claimed for risk "
             "control (\u00a75.3.5): all software items share the software safety class of the system "
             "(FP-SDP)."),
    ]


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    model: Any = inputs.model
    sites = list((inputs.artifact or {}).get("training", {}).get("sites") or [])
    rows: list[list[object]] = [["Package", "Runs", "Responsibility", "Depends on"]]
    rows += [[code(p), where, what, para(esc(deps), "small")] for p, where, what, deps in PACKAGES]
    t = table(rows, widths=[24, 30, 88, 28])
    return [
        *section("1 Scope"),
        para(f"This document describes the software architecture of {esc(inputs.device)} "
             f"{esc(inputs.device_version)} at commit {esc(inputs.commit)} (IEC 62304 \u00a75.3): its "
             "software items, their interfaces and data flow, the SOUP they rely on and the segregation "
             f"kept. The deployment shown is that of the documented model {esc(model.ref)}, trained "
             f"at {len(sites)} sites."),
        *section("2 Structure and data flow"),
        KeepTogether([diagram(sites), para(_CAPTION, "caption")]),
        para("1. Each site filters its patients by the consent active at a witnessed ledger checkpoint and "
             "computes aggregates. 2. Secure aggregation masks each statistic so the coordinator learns only "
             "the sum. 3. The coordinator iterates Newton-Raphson steps and writes the sealed artifact. "
             "4. The registry anchors it in the ledger as a candidate. 5. Validation evaluates it at each "
             "site and pooled; the report is anchored. 6. The release gate releases only a validated model. "
             "7. The FHIR server re-reads the ledger at every request, serves the newest released, "
             "unaffected version, and records an AuditEvent for every request. 8. The clinician sees the "
             "RiskAssessment or the CDS card."),
        *section("3 Software items", then=t), t,
        *section("4 Interfaces"),
        para("Coordinator \u2194 site: fedprog.msg/v1 pydantic messages as JSON (arrays as exact "
             "little-endian bytes; NaN, infinities, wrong shapes and unknown fields refused). Training "
             "\u2192 device: the fedprog.model/v1 artifact, sealed by the SHA-256 of its canonical JSON and "
             "re-checked on every load. Everything \u2192 ledger: typed entries (consent, revocation, model, "
             "validation, release, withdrawal, dossier) and C2SP checkpoints. EHR \u2192 device: FHIR R4 "
             "4.0.1 REST ($predict-risk, RiskAssessment, AuditEvent, Consent) and CDS Hooks 2.0, bearer JWT "
             "(ES256) with SMART v2 scopes. Operators: the fedprog command line (--json on every result)."),
        *_soup(inputs), *_segregation(),
    ]


SPEC = DocumentSpec(id="FP-ARCH", title="Software architecture", file="FP-ARCH-architecture.pdf",
                    needs=("model", "soup"), build=build)
