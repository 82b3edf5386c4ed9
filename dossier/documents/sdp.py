"""FP-SDP — Software development plan (IEC 62304 §5.1).

The safety class, its rationale and the clause set that applies to it are read from
``traceability/safety.yaml`` (:mod:`traceability.safety`); how this repository meets each group of
clauses is stated here, once, by clause prefix (:data:`IMPLEMENTED_BY`): the process and the files,
``fedprog`` commands and documents that implement it (tests check that each exists).
"""

from __future__ import annotations

from typing import Any

from reportlab.platypus import Flowable

from dossier.documents._layout import code, section
from dossier.spec import DocumentSpec, DossierError, DossierInputs
from dossier.style import STYLES, esc, para, table

#: cited items being added by other work in progress (checked at merge: each must then exist)
PENDING: frozenset[str] = frozenset()
#: documents cited only when the technical file holds them
OPTIONAL_DOCS: frozenset[str] = frozenset({"FP-PCCP"})

#: how the repository meets each clause, by the longest matching clause prefix: the process, and the files
#: (paths relative to the checkout), commands and documents that implement it
IMPLEMENTED_BY: dict[str, tuple[str, tuple[str, ...]]] = {
    "4.1": ("The manufacturer's ISO 13485 QMS; the QMS tools of this repository are validated as tools "
            "(ISO 13485 \u00a74.1.6).", ("FP-TVAL",)),
    "4.2": ("ISO 14971 process: hazards and risk controls as requirement items, each control verified by "
            "marked tests.", ("traceability/requirements/hazards.yaml",
                              "traceability/requirements/risk_controls.yaml", "FP-RMP", "FP-RMF")),
    "4.3": ("Class, rationale and applicable clauses as data; section 2.", ("traceability/safety.yaml",)),
    "4.4": ("Not applicable: no legacy software; third-party software is SOUP.", ("traceability/soup.yaml",)),
    "5.1.1": ("This document, generated from the safety classification at each build; requirements as YAML "
              "checked on every change by trace check in make test.",
              ("traceability/requirements/*.yaml", "fedprog trace check", "Makefile")),
    "5.1.2": ("Regenerated with every dossier build from the records it cites; the manifest anchors it.",
              ("fedprog dossier build", "dossier/documents/sdp.py")),
    "5.1.3": ("System requirements (SYS-) and user needs (UN-) are parents of the software requirements.",
              ("traceability/requirements/system.yaml", "traceability/requirements/user_needs.yaml")),
    "5.1.4": ("Typed Python, ruff (complexity limit) and mypy configured once; section 5.",
              ("pyproject.toml", "Makefile")),
    "5.1.5": ("Continuous integration: the whole suite on a clean clone for every change.",
              (".ci/run", "Makefile")),
    "5.1.6": ("Tests marked with the requirement they verify; the plugin refuses unknown ids; JUnit "
              "evidence.",
              ("traceability/pytest_plugin.py", "fedprog trace check", "FP-VER")),
    "5.1.7": ("Risk controls are requirements traced to hazards and tests; section 7.",
              ("traceability/requirements/risk_controls.yaml", "fedprog trace impact")),
    "5.1.8": ("Documents generated from the records, listed with SHA-256 in the anchored manifest; each "
              "approved by named people.", ("fedprog dossier build", "fedprog dossier verify",
                                           "fedprog dossier approve")),
    "5.1.9": ("git for source, requirements and tests; hash-locked installs; SOUP and SBOM generated from "
              "the environment; section 6.", ("requirements/*.lock", "fedprog trace soup",
                                               "fedprog trace sbom")),
    "5.1.10": ("Tools and their versions are SOUP of kind dev in the SOUP list; section 5.",
               ("traceability/soup.yaml", "fedprog trace soup")),
    "5.1.11": ("Each item identified by commit or SHA-256 and anchored in the ledger; section 6.",
               ("fedprog ledger verify",)),
    "5.1.12": ("Common defects avoided by the lint rules, strict pydantic models at every boundary and the "
               "fuzz tests of the endpoint.", ("pyproject.toml", "tests/device/fhir/test_schema_fuzz.py")),
    "5.2": ("Requirement items (schema-checked, parents, verification) kept in YAML; each edit makes its "
            "children suspect until reviewed.", ("traceability/requirements/software.yaml",
                                                 "fedprog trace check", "fedprog trace review", "FP-SRS")),
    "5.3": ("Packages with one-way dependencies, checked on the source; SOUP purposes and requirements.",
            ("docs/architecture.md", "tests/test_layering.py", "traceability/soup.yaml", "FP-ARCH")),
    "5.4": ("Packages and modules of the architecture; each module's docstring states its contract.",
            ("docs/architecture.md", "tests/test_architecture_doc.py")),
    "5.5": ("pytest unit tests mirroring the package layout; ruff and mypy in make lint.",
            ("Makefile", "tests/")),
    "5.6": ("Integration and end-to-end tests (demo workspace, live endpoint, Flower deployment) in the "
            "same suite; regression is the whole suite on every change.", ("tests/fedprog/", ".ci/run")),
    "5.7": ("System tests marked with requirement ids; JUnit evidence; every gap named.",
            ("fedprog trace check", "fedprog trace matrix", "FP-VER", "FP-TM")),
    "5.8": ("Release gate: a passing validation report is required; the release is a ledger entry naming the "
            "approver; documents approved by named people with their Ed25519 keys.",
            ("fedprog validate", "fedprog model release", "fedprog dossier approve", "ledger/signatures.py",
             "FP-REL")),
    "6.1": ("Maintenance follows this plan; feedback from the post-market surveillance plan.", ("FP-PMS",)),
    "6.2": ("A change request is analysed for its impact on requirements, tests and risk controls, and "
            "re-reviewed links are recorded; retraining follows the change control plan.",
            ("fedprog trace impact", "fedprog trace review", "FP-PCCP")),
    "6.3": ("A modified version passes the same gate: make test, fedprog validate, release, new dossier.",
            ("Makefile", "fedprog validate", "fedprog model release", "fedprog dossier build")),
    "7": ("Risk controls as requirements verified by marked tests; SOUP risk notes; impact analysis of a "
          "change.", ("traceability/requirements/risk_controls.yaml", "traceability/soup.yaml",
                      "fedprog trace impact", "FP-RMF")),
    "8": ("git commit in every document; artifacts, reports and the dossier manifest by SHA-256 anchored in "
          "the witnessed ledger; SOUP list and SBOM.", ("fedprog trace sbom", "fedprog ledger verify",
                                                        "fedprog dossier verify")),
    "9": ("Problem reports as issues with safety relevance; a red CI run blocks a change; each fix carries "
          "a marked regression test; a model with a safety problem is withdrawn (section 8).",
          (".ci/run", "fedprog model withdraw", "FP-PMS")),
}

#: life-cycle phase, IEC 62304 clauses, how the repository implements it, output
LIFECYCLE: tuple[tuple[str, str, str, str], ...] = (
    ("1 Requirements", "\u00a75.2",
     "User needs, system and software requirements as YAML items (schema-checked, unique ids, parents of an "
     "allowed type, no cycles); each link keeps the reviewed parent's fingerprint, an edited parent makes "
     "it suspect until fedprog trace review.", "FP-SRS; fedprog trace check"),
    ("2 Architecture and design", "\u00a75.3, \u00a75.4",
     "Packages with one-way dependencies and stable contracts (artifact, messages, ledger, FHIR) in "
     "docs/architecture.md; SOUP selected with its purpose, requirements and risk note.", "FP-ARCH; FP-SOUP"),
    ("3 Implementation", "\u00a75.5.1",
     "Typed Python; ruff with a complexity limit and mypy in make lint; no pickle; typed exceptions with "
     "one-line messages; each change reviewed before it lands.", "git history"),
    ("4 Verification", "\u00a75.5 to \u00a75.7",
     "pytest: unit, integration and system tests; a test verifying a requirement carries "
     "@pytest.mark.req(ID) and the plugin refuses unknown ids; results in JUnit with each test's ids; "
     "fedprog trace check --junit names every gap; make test runs both in CI (.ci/run).",
     "FP-VER; FP-TM"),
    ("5 Validation and release", "\u00a75.8",
     "fedprog validate judges every acceptance criterion per hospital and pooled; a passing report "
     "(kept by SHA-256, anchored in the ledger) is required by the release gate; fedprog model release; "
     "fedprog dossier build anchors the manifest.", "FP-CVR; FP-REL; this file"),
)


def rule(clause: str) -> tuple[str, tuple[str, ...]]:
    """(process, cited files / commands / documents) for ``clause``, by its longest listed prefix."""
    parts = clause.split(".")
    for n in range(len(parts), 0, -1):
        found = IMPLEMENTED_BY.get(".".join(parts[:n]))
        if found:
            return found
    raise DossierError(f"{SPEC.id}: no process is stated for IEC 62304 clause {clause}")


def _how(clause: str, documents: set[str]) -> Flowable:
    process, cited = rule(clause)
    shown = [c for c in cited if c not in OPTIONAL_DOCS or c in documents]
    items = ", ".join(f"<font name='{STYLES['mono'].fontName}'>{esc(c)}</font>" if not c.startswith("FP-")
                      else esc(c) for c in shown)
    return para(f"{esc(process)}<br/><i>By:</i> {items}", "cell")


def _documents() -> set[str]:
    """The ids of the documents of this technical file (discovered by the builder)."""
    from dossier.build import all_documents

    return {d.id for d in all_documents()}


def _classification(safety: Any) -> list[Flowable]:
    hazards = ", ".join(safety.hazards)
    externals = "".join(f"<br/>\u2022 {esc(x)}" for x in safety.external_risk_controls)
    return [
        *section("2 Software safety classification"),
        para(f"Software system: {esc(safety.software_system)}. Standard: {esc(safety.standard)}. "
             f"Software safety class: <b>{esc(safety.safety_class)}</b>."),
        para(f"<i>Rationale (\u00a74.3).</i> {esc(' '.join(safety.rationale.split()))}"),
        para(f"Hazards the software system can contribute to: {esc(hazards)}."),
        para(f"Risk control measures external to the software system on which the class rests:{externals}"),
    ]


def _clauses(safety: Any) -> list[Flowable]:
    cls = safety.safety_class
    applies = set(safety.clauses_for())
    rows: list[list[object]] = [["Clause", "Title", "Classes", "How this repository meets it"]]
    documents = _documents()
    rows += [[c.clause, c.title, ", ".join(c.classes), _how(c.clause, documents)]
             for c in safety.clauses if c.clause in applies]
    excluded = [c.clause for c in safety.clauses if c.clause not in applies]
    t = table(rows, widths=[12, 42, 14, 102])
    return [
        *section("3 Applicable clauses", then=t),
        para(f"Of the {len(safety.clauses)} clauses of IEC 62304 listed in safety.yaml (Table A.1), "
             f"{len(applies)} apply to class {esc(cls)}; each is listed with the process that meets it and "
             "the files of the repository, the fedprog commands and the documents of this file that "
             f"implement it. Clauses that do not apply to class {esc(cls)}: "
             f"{esc(', '.join(excluded) or 'none')}."),
        t,
    ]


def _lifecycle(inputs: DossierInputs) -> list[Flowable]:
    rows: list[list[object]] = [["Phase", "Clauses", "How this repository implements it", "Output"]]
    rows += [list(r) for r in LIFECYCLE]
    t = table(rows, widths=[26, 17, 97, 30])
    reqs = inputs.requirements
    counts = "" if reqs is None else (
        f" The requirements currently hold {len(reqs.of_type('user-need'))} user needs, "
        f"{len(reqs.of_type('system'))} system and {len(reqs.of_type('software'))} software requirements, "
        f"{len(reqs.of_type('hazard'))} hazards and {len(reqs.of_type('risk-control'))} risk controls.")
    return [
        *section("4 Life-cycle model", then=t),
        para("Development follows a V-model in which every item on the left side is traced to its "
             "verification on the right side. A change passes through the phases in order; regression "
             f"is the whole automated suite, run on every change (\u00a75.6.6, \u00a75.7.3).{esc(counts)}"),
        t,
    ]


def _tools(inputs: DossierInputs) -> list[Flowable]:
    tools = [s for s in inputs.soup if s.kind == "dev"]
    out: list[Flowable] = [
        *section("5 Standards, methods and tools"),
        para("Python (typed; PEP 8 enforced by ruff), NumPy-style docstrings that state each function's "
             "contract, units and references; FHIR R4 4.0.1, CDS Hooks 2.0, SMART App Launch v2, RFC 9162, "
             "C2SP checkpoints, CycloneDX 1.6. Development and test tools are SOUP of kind \u201cdev\u201d "
             "(not shipped):")]
    if tools:
        rows: list[list[object]] = [["Tool", "Version", "Purpose"]]
        rows += [[s.name, s.version, s.purpose] for s in tools]
        out.append(table(rows, widths=[30, 20, 120]))
    else:
        out.append(para("(The SOUP list was not available to this build; see FP-SOUP.)"))
    return out


def _configuration(inputs: DossierInputs) -> list[Flowable]:
    model = inputs.model
    rows: list[list[object]] = [
        ["Configuration item", "Identified by", "This build"],
        ["Source code, requirements, tests", "git commit", code(inputs.commit)],
        ["Model artifact", "SHA-256 of its canonical JSON; ledger model entry",
         code(f"{model.ref}: {model.sha256}") if model is not None else "\u2014"],
        ["Validation report", "SHA-256; ledger validation entry",
         code((model.validation or {}).get("report_sha256", "\u2014")) if model is not None else "\u2014"],
        ["SOUP", "name and version; CycloneDX SBOM",
         code(f"{len(inputs.soup)} items; SBOM sha256 {inputs.sbom['sha256']}") if inputs.sbom else
         f"{len(inputs.soup)} items"],
        ["Ledger", "size and root of a witnessed checkpoint",
         code(f"size {inputs.ledger.size}, root {inputs.ledger.root}") if inputs.ledger else "\u2014"],
        ["Technical file", "manifest.json (each PDF's SHA-256), anchored in the ledger",
         f"revision {inputs.revision}, {inputs.date}"],
    ]
    return [
        *section("6 Configuration management"),
        para("Every configuration item has one identifier that changes when its content changes (\u00a78.1). "
             "Every document of this file states the software commit and the model SHA-256 it describes; "
             "artifacts, reports and the dossier manifest are content-addressed and anchored in the "
             "append-only ledger that every hospital's witness cosigns, so a changed item is detected."),
        table(rows, widths=[38, 58, 74]),
        para("Changes (\u00a78.2) are made on branches and land only through review with the CI gate green; "
             "fedprog trace impact ID lists what a change to a requirement affects and the tests to run "
             "again. The git history is the configuration status record (\u00a78.3)."),
    ]


def _problems() -> list[Flowable]:
    return [
        *section("7 Software risk management"),
        para("Hazards and risk controls are items of the requirement files (ISO 14971; IEC 62304 \u00a77), "
             "each risk control traced to its hazards and verified by marked tests; SOUP risk notes record "
             "the evaluation of published anomaly lists (\u00a77.1.3). A change is analysed for its effect "
             "on risk controls before it is approved (\u00a77.4)."),
        *section("8 Problem resolution"),
        para("(a) Reports. Every problem \u2014 from development, verification, users, the post-market "
             "surveillance plan or a SOUP anomaly \u2014 is recorded as an issue with its description, the "
             "affected versions and an evaluation of its relevance to safety (\u00a79.1, \u00a79.2)."),
        para("(b) Gate. A red CI run (make test: lint, the suite, trace check) blocks a change from landing; "
             "a fix carries a test marked with the requirement it restores, which stays as a regression test "
             "(\u00a79.7)."),
        para("(c) Field action. A released model version with a safety problem is withdrawn "
             "(fedprog model withdraw, recorded in the ledger; the server stops serving it at the next "
             "request) and users are advised (\u00a79.3); a consent revocation flags the versions trained on "
             "the patient automatically (retrain due or affected, by the study's revocation policy: FP-PMS "
             "section 2.3). Problem reports are reviewed for trends (\u00a79.6)."),
        *section("9 Documentation and maintenance"),
        para("The documents of the technical file are generated from the controlled records by fedprog "
             "dossier build; each carries this document-control block and is listed with its SHA-256 in the "
             "anchored manifest (\u00a75.1.8). This plan is updated with the records it is generated from "
             "(\u00a75.1.2); maintenance follows the same life cycle (\u00a76)."),
    ]


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    safety = inputs.safety
    return [
        *section("1 Purpose and scope"),
        para(f"This plan governs the development and maintenance of {esc(inputs.device)} "
             f"{esc(inputs.device_version)} (IEC 62304:2006+A1:2015 \u00a75.1): the software system of "
             "this repository \u2014 device, federated, consent, ledger, validation, traceability, dossier "
             "and the fedprog command layer. System design and development, including usability and clinical "
             "evaluation, are governed by the manufacturer's design-control procedure (\u00a75.1.3)."),
        *_classification(safety), *_clauses(safety), *_lifecycle(inputs), *_tools(inputs),
        *_configuration(inputs), *_problems(),
    ]


SPEC = DocumentSpec(id="FP-SDP", title="Software development plan", file="FP-SDP-development-plan.pdf",
                    needs=("safety",), build=build, toc=True)
