"""FP-GSPR General safety and performance requirements checklist (EU MDR 2017/745 Annex I).

One row per Annex I requirement (or group of requirements sharing a verdict): whether it applies to
fedprog — stand-alone software (an active device by Art. 2(4)) running on the operator's general-
purpose IT equipment — how it is met, or why it does not apply, and the evidence: the dossier
documents and the requirement ids. The ids are resolved against the requirements: an id that does
not exist is shown as such, and an ``X-*`` selector expands to the items it matches.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from reportlab.platypus import Flowable

from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import esc, heading, para, table


class Gspr(NamedTuple):
    ref: str
    topic: str
    applies: bool
    how: str  # how it is met, or why it does not apply
    docs: tuple[str, ...] = ()
    reqs: tuple[str, ...] = ()


_NO_HW = "Stand-alone software without physical, electrical or material parts"
CHAPTER_I = [
    Gspr("1", "Performance as intended; safe and effective; risks acceptable against the benefits", True,
         "Intended use and users defined; clinical performance validated at every site and pooled against "
         "acceptance criteria stated in advance; benefit-risk concluded in the risk management file.",
         ("FP-DD", "FP-CVR", "FP-MC", "FP-RMF"), ("UN-CLIN-001", "SYS-VAL-001", "SRS-VAL-*")),
    Gspr("2", "Risks reduced as far as possible without adversely affecting the benefit-risk ratio", True,
         "Every hazard has risk control measures by design, verified by test; residual risks evaluated.",
         ("FP-RMF", "FP-TM"), ("RC-*",)),
    Gspr("3", "Risk management system (a)–(f), over the whole life cycle", True,
         "ISO 14971:2019 process: plan, hazard identification, estimation, evaluation, control, "
         "evaluation of production and post-production information, update.",
         ("FP-RMF", "FP-SDP", "FP-PMS"), ("HAZ-*",)),
    Gspr("4", "Risk control priorities: safe design, protective measures, information for safety; residual "
         "risks disclosed", True,
         "Safety by design first (inputs refused outside the intended use, UCUM conversion, release gate), "
         "protective refusals (422, 503, a card without a risk), then information for safety (interval "
         "stated with what it includes); residual risks disclosed in the IFU.",
         ("FP-RMF", "FP-IFU"), ("RC-INPUT-001", "RC-UNIT-001", "RC-REG-001", "RC-DEV-001")),
    Gspr("5", "Use error: ergonomics, use environment, users' knowledge and training", True,
         "Risk shown inside the EHR workflow with the inputs it rests on; every refusal names the element; "
         "risk bands on the CDS card. A summative usability evaluation (IEC 62366-1) is not part of this "
         "dossier.", ("FP-IFU", "FP-SRS", "FP-RMF"), ("UN-CLIN-003", "SRS-CDS-002", "SRS-CDS-003",
                                                       "SRS-FHIR-004")),
    Gspr("6", "Characteristics and performance maintained over the lifetime", True,
         "A released artifact cannot change (SHA-256 checked at load and release); performance drift is "
         "watched by post-market surveillance and periodic re-validation.",
         ("FP-PMS", "FP-REL"), ("RC-ART-001", "SRS-REG-001", "SRS-VAL-005")),
    Gspr("7", "Not adversely affected by transport and storage", True,
         "Electronic distribution only: artifacts and reports are kept by SHA-256 and anchored in the "
         "witnessed ledger; the software's components are listed in the SBOM.",
         ("FP-SOUP", "FP-REL"), ("SRS-DEV-001", "SRS-LEDG-002", "SRS-SOUP-002")),
    Gspr("8", "Known and foreseeable risks and side-effects minimised and acceptable", True,
         "Hazards analysed and controlled; overall residual risk evaluated against the clinical benefit.",
         ("FP-RMF", "FP-CVR"), ("HAZ-*",)),
    Gspr("9", "Products without an intended medical purpose (Annex XVI)", False,
         "fedprog has a medical purpose."),
]
CHAPTER_II = [
    Gspr("10", "Chemical, physical and biological properties", False, _NO_HW + "."),
    Gspr("11", "Infection and microbial contamination", False, "No contact with patients or users."),
    Gspr("12", "Devices incorporating a medicinal substance or absorbed substances", False, _NO_HW + "."),
    Gspr("13", "Devices incorporating materials of biological origin", False, _NO_HW + "."),
    Gspr("14.1", "Use in combination with other devices or equipment", True,
         "Runs with EHR systems through FHIR R4 and CDS Hooks; the conditions of the combination are in the "
         "IFU.", ("FP-ARCH", "FP-IFU"), ("SYS-FHIR-001", "SYS-CDS-001", "SRS-FHIR-001", "SRS-CDS-001")),
    Gspr("14.2 (a)–(c), (e)–(g)", "Physical features, environmental influences, substances, ingress, "
         "interference, maintenance of measuring mechanisms", False,
         _NO_HW + "; interaction with the IT environment is 14.2 (d); loss of accuracy of the model is "
         "handled under 6."),
    Gspr("14.2 (d)", "Negative interaction between the software and its IT environment", True,
         "Every input validated at the edge, every error an OperationOutcome (never a 500 for bad input), "
         "every wait bounded, failing sites excluded and named; SOUP identified and monitored.",
         ("FP-ARCH", "FP-CYB", "FP-SOUP", "FP-IFU"),
         ("SRS-FHIR-004", "SRS-FED-008", "SRS-FED-009", "SYS-FED-002", "SRS-SOUP-001")),
    Gspr("14.3", "Fire or explosion", False, _NO_HW + "."),
    Gspr("14.4", "Adjustment, calibration and maintenance done safely", True,
         "A model is changed only by retraining into a new version that passes validation and the release "
         "gate; software maintenance under change control.",
         ("FP-REL", "FP-SDP"), ("SRS-REG-001", "SRS-REG-002", "RC-CONS-001")),
    Gspr("14.5", "Interoperability and compatibility", True,
         "FHIR R4 (4.0.1) resources, LOINC and SNOMED CT codes, UCUM units converted or refused, CDS Hooks.",
         ("FP-SRS", "FP-IFU"), ("SRS-FHIR-001", "SRS-FHIR-005", "SRS-FHIR-006", "SRS-CDS-001",
                                "SRS-DEV-006")),
    Gspr("14.6", "Measurement, monitoring or display scales ergonomic", True,
         "The risk is a probability by a stated horizon with its 95% interval; the card bands risks.",
         ("FP-IFU", "FP-SRS"), ("SRS-FHIR-002", "SRS-CDS-002", "RC-DEV-001")),
    Gspr("14.7", "Safe disposal", False,
         "No physical waste; erasure of personal data is a consent matter (SRS-CONS-003)."),
    Gspr("15.1", "Accuracy, precision and stability of a diagnostic function; limits of accuracy stated",
         True, "The prognostic estimate's discrimination and calibration are validated per site and "
         "pooled; the federated fit equals the pooled fit; the limits (apparent vs held-out performance, "
         "what the risk interval includes) are stated.", ("FP-CVR", "FP-MC", "FP-IFU"),
         ("SRS-VAL-*", "SRS-FED-001", "SRS-DEV-003", "SRS-DEV-004")),
    Gspr("15.2", "Measurements in legal units", True,
         "Inputs in UCUM units (SI-compatible), time in days, the risk a fraction.",
         ("FP-SRS", "FP-IFU"), ("SRS-DEV-006", "SRS-FHIR-006")),
    Gspr("16", "Protection against radiation", False, "The software emits no radiation."),
    Gspr("17.1", "Repeatability, reliability, performance; single fault condition", True,
         "Deterministic artifacts (same inputs, same SHA-256); exactness against reference software; site "
         "dropouts excluded and named; results only with their audit record; crash-safe ledger.",
         ("FP-VER", "FP-ARCH", "FP-RMF"),
         ("SRS-FED-001", "SRS-FED-004", "SRS-FED-009", "SRS-LEDG-002", "SRS-AUDIT-001", "RC-FED-002")),
    Gspr("17.2", "Software per the state of the art: life cycle, risk management incl. information "
         "security, verification and validation", True,
         "IEC 62304 class B life cycle, ISO 14971 risk management, cybersecurity, automated verification "
         "traced to the requirements, clinical validation.",
         ("FP-SDP", "FP-SRS", "FP-ARCH", "FP-SOUP", "FP-CYB", "FP-RMF", "FP-VER", "FP-TM", "FP-CVR"),
         ("SRS-TRACE-*", "SRS-SOUP-*")),
    Gspr("17.3", "Software for mobile computing platforms", False,
         "Server software reached through the EHR; not designed for mobile platforms."),
    Gspr("17.4", "Minimum requirements for hardware, IT networks and IT security", True,
         "IT security measures stated: signed bearer tokens with scopes and audience for every request, TLS "
         "reverse proxy and network segmentation (FP-CYB), integration (FP-IFU). Minimum hardware and "
         "network characteristics are not yet stated: open point (section "
         "5).", ("FP-CYB", "FP-IFU", "FP-SOUP"),
         ("SYS-AUTH-001", "SRS-AUTH-001", "SRS-AUTH-002", "SRS-AUTH-003")),
    Gspr("18.1", "Active devices: single fault condition", True, "As 17.1.", ("FP-RMF",), ("RC-FED-001",)),
    Gspr("18.2–18.7", "Power supply, alarms, monitoring of clinical parameters, electromagnetic "
         "compatibility, electric shock", False,
         _NO_HW + "; it monitors no clinical parameter and raises no alarm."),
    Gspr("18.8", "Protection against unauthorised access", True,
         "Token and scope for every request; artifact hashes; a ledger that a majority of site witnesses "
         "must cosign, so a rewritten history is detected.", ("FP-CYB",),
         ("RC-AUTH-001", "RC-ART-001", "RC-LEDG-001")),
    Gspr("19–21", "Active implantable devices; mechanical and thermal risks; energy or substances "
         "delivered to the patient", False, _NO_HW + "; nothing is delivered to the patient."),
    Gspr("22", "Devices for use by lay persons", False,
         "Intended for healthcare professionals; patients only read or withdraw their consent."),
]
CHAPTER_III = [
    Gspr("23.1", "General requirements on the information supplied", True,
         "Electronic instructions for use; every result names the model, version and SHA-256 and states "
         "the intended use.", ("FP-IFU", "FP-DD"), ("SRS-FHIR-001", "SRS-FHIR-002")),
    Gspr("23.2", "Information on the label", True,
         "Every result identifies the device model, version and SHA-256; the CapabilityStatement names the "
         "software and its version. A complete electronic label (manufacturer, UDI under Art. 27, CE "
         "marking) is not evidenced by this dossier: open point.", ("FP-IFU", "FP-DD"), ("SRS-FHIR-001",)),
    Gspr("23.3", "Information on a sterile packaging", False, "Not supplied sterile; no packaging."),
    Gspr("23.4", "Information in the instructions for use", True,
         "Intended use, users, inputs and ranges, performance and its limits, residual risks, integration "
         "requirements.", ("FP-IFU", "FP-RMF", "FP-CVR"), ("RC-DEV-001", "SRS-FHIR-002", "SRS-CDS-002")),
]


def resolve(selectors: tuple[str, ...], reqs: Any) -> tuple[str, list[str]]:
    """The requirement ids ``selectors`` name (``X-*`` expands), and those that do not exist."""
    ids: list[str] = []
    missing: list[str] = []
    for sel in selectors:
        if sel.endswith("*"):
            found = sorted(i for i in reqs.items if i.startswith(sel[:-1]))
            ids += found if len(found) <= 6 else [f"{sel} ({len(found)} items)"]
            missing += [] if found else [sel]
        elif sel in reqs:
            ids.append(sel)
        else:
            missing.append(sel)
    return ", ".join(ids), missing


def _rows(chapter: list[Gspr], reqs: Any, known: set[str]) -> list[list[object]]:
    rows: list[list[object]] = [["GSPR", "Requirement", "Applies", "How met, or why not applicable",
                                 "Evidence"]]
    for g in chapter:
        ids, missing = resolve(g.reqs, reqs)
        docs = [d if not known or d in known else f"{d} (not in this dossier)" for d in g.docs]
        evidence = "; ".join(x for x in (", ".join(docs), ids) if x)
        evidence += "".join(f"; {m} (NOT IN THE REQUIREMENTS)" for m in missing)
        rows.append([g.ref, g.topic, "yes" if g.applies else "N/A", g.how, evidence or "—"])
    return rows


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    from dossier.build import DOCUMENTS

    known = {d.id for d in DOCUMENTS} | {SPEC.id}
    every = CHAPTER_I + CHAPTER_II + CHAPTER_III
    widths = [14, 34, 13, 57, 52]
    return [heading("1 Scope"),
            para("Checklist of the general safety and performance requirements of EU MDR 2017/745 Annex I "
                 f"for {esc(inputs.device)} {esc(inputs.device_version)}, stand-alone medical device "
                 "software (an active device, Art. 2(4)) running on general-purpose IT equipment of the "
                 f"operator. {sum(g.applies for g in every)} entries apply, "
                 f"{sum(not g.applies for g in every)} do not (with the reason). Evidence names the "
                 "documents of this technical file and the requirement ids traced in FP-TM; standards "
                 "applied: IEC 62304:2006+A1:2015, ISO 14971:2019, IEC 81001-5-1 and MDCG 2019-16 for "
                 "security (FP-CYB)."),
            heading("2 Chapter I: general requirements"), table(_rows(CHAPTER_I, inputs.requirements, known),
                                                              widths=widths),
            heading("3 Chapter II: design and manufacture"),
            table(_rows(CHAPTER_II, inputs.requirements, known), widths=widths),
            heading("4 Chapter III: information supplied with the device"),
            table(_rows(CHAPTER_III, inputs.requirements, known), widths=widths),
            heading("5 Open points"),
            para("Not evidenced by this dossier: a summative usability evaluation (GSPR 5, IEC 62366-1); the "
                 "minimum hardware and network characteristics (GSPR 17.4); the complete electronic label "
                 "with UDI (GSPR 23.2); and the quality management system (ISO 13485), which the "
                 "manufacturer's QMS documentation covers.")]


SPEC = DocumentSpec(id="FP-GSPR", title="GSPR checklist", file="FP-GSPR-checklist.pdf",
                    needs=("requirements",), build=build, toc=True)
