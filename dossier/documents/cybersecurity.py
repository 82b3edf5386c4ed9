"""FP-CYB — Cybersecurity (EU MDR Annex I §17.2, §17.4; MDCG 2019-16; IEC 81001-5-1).

A STRIDE threat model of the federated network and the risk endpoint, each threat scored with CVSS
v3.1 before and after its control (:mod:`dossier.documents._threats`, the one source FP-REL also
reads), the security controls with the requirements that specify them (every cited id is checked
against the loaded requirements: a stale reference stops the build), the residual risks, the
vulnerability-handling process with the manufacturer's open decisions, the security test report
counted from the test run (never assumed), and what the hospital's IT must provide.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from reportlab.platypus import Flowable

from device.fhir.auth import ISSUER, MAX_TTL_SECONDS
from device.fhir.keys import ALGORITHM
from dossier.documents import _privacy, _tests
from dossier.documents._it_environment import DEFAULT_HOST, DEFAULT_PORT
from dossier.documents._layout import code, ids, section
from dossier.documents._threats import (
    ACCEPT_LIMIT,
    THREATS,
    cvss_score,
    high_residual,
    rating,
    residual_risks,
    vectors,
)
from dossier.manufacturer import MARKER
from dossier.spec import DocumentSpec, DossierError, DossierInputs
from dossier.style import esc, para, table

__all__ = ["SPEC", "THREATS", "residual_risks"]

#: the requirement families whose tests are security or privacy tests (IEC 81001-5-1 §5.7)
FAMILIES = ("SRS-AUTH", "SRS-SEC", "SRS-LEDG", "SRS-PRIV", "SRS-AUDIT", "SRS-CONS", "RC-AUTH", "RC-SEC",
            "RC-LEDG", "RC-PRIV", "RC-AUDIT")
#: security test campaigns: name, what they attack, the test files (node-id prefixes) that run them
CAMPAIGNS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Token verification", "no, forged, expired, alg:none, wrong-audience and revoked tokens; scopes",
     ("tests/device/fhir/test_auth.py", "tests/device/fhir/test_tokens.py")),
    ("SMART App Launch", "launch and code reuse, lifetimes, PKCE, redirect and scope checks",
     ("tests/device/fhir/test_smart.py",)),
    ("Fuzzing", "property-based (Hypothesis) and schema-driven (Schemathesis) requests; hostile FHIR input",
     ("tests/device/fhir/test_fuzz.py", "tests/device/fhir/test_schema_fuzz.py",
      "tests/device/fhir/test_hostile_inputs.py")),
    ("Ledger tamper matrix", "rewriting ledger.sqlite without the witnesses' keys: every attack detected",
     ("tests/fedprog/test_ledger_tamper.py", "tests/ledger/test_trusted.py")),
    ("Site kill trials", "SIGKILL while appending, sites dropping out or stopped during a run",
     ("tests/ledger/test_crash.py", "tests/federated/protocol/test_dropouts.py",
      "tests/fedprog/test_deploy.py", "tests/fedprog/test_flower_slow_site.py")),
    ("Privacy attacks", "a malicious coordinator over the wire, reconstruction, differencing, DP auditing",
     ("tests/privacy/",)),
    ("Secure aggregation", "masking, key agreement, low-order keys, overflow refusal",
     ("tests/federated/protocol/test_secagg.py", "tests/federated/protocol/test_secure.py")),
)

def _checked(requirements: Any, cited: Iterable[str]) -> None:
    missing = sorted({i for i in cited if i not in requirements})
    if missing:
        raise DossierError(f"{SPEC.id} cites {', '.join(missing)}, which the requirements do not define")


def _threats() -> Flowable:
    rows: list[list[object]] = [["#", "STRIDE", "Threat", "Asset", "Control", "Evidence"]]
    rows += [[f"T{n}", t.category, t.threat, t.asset, t.control, ids(t.evidence)]
             for n, t in enumerate(THREATS, start=1)]
    return table(rows, widths=[8, 19, 42, 24, 47, 30])


def _scored(vector: str) -> Flowable:
    score = cvss_score(vector)
    return code(vector, f"<b>{score:.1f} {rating(score)}</b>")


def _scoring() -> list[Flowable]:
    """Section 3.1: each threat's CVSS v3.1 base vector and score before and after its control."""
    rows: list[list[object]] = [["#", "Inherent (no control): vector, score", "Residual (with the control)"]]
    try:
        scored = [(n, vectors(t)) for n, t in enumerate(THREATS, start=1)]
        high = high_residual(THREATS)
    except ValueError as exc:
        raise DossierError(f"{SPEC.id}: {exc}") from None
    rows += [[f"T{n}", _scored(v.inherent), _scored(v.residual)] for n, v in scored]
    verdict = ("No residual score is High or Critical." if not high else
               f"Residual High or Critical: {esc(', '.join(f'T{n}' for n, _ in high))}; each is accepted "
               "only by the manufacturer's decision (regulatory/manufacturer.yaml "
               "cybersecurity.residual_risk_acceptance), with the deployment measures of section 5, and is "
               "stated in the release notes (FP-REL).")
    return [
        *section("3.1 Scoring", 2),
        para("<i>Method.</i> Each threat is scored with the CVSS v3.1 base metrics (FIRST; the scale the FDA "
             "premarket cybersecurity guidance names): the <i>inherent</i> vector scores the "
             "attack on a device without the control, the <i>residual</i> vector the same attack against the "
             "control as the code implements it — what the attacker must then hold (PR: a key, a token, "
             "a role) or overcome (AC) and what remains at stake (C, I, A). Scores are computed from the "
             "vectors by the specification's formulas, never typed in. CVSS rates exploitability and "
             "technical impact, not harm to a patient: a threat that can lead to harm is also a hazard of "
             "FP-RMF, whose severity scale decides acceptability there. <i>Rule.</i> A residual score below "
             f"{ACCEPT_LIMIT:.1f} (Low, Medium) is acceptable with the stated control; {ACCEPT_LIMIT:.1f} or "
             "more (High, Critical) needs a deployment measure and the manufacturer's acceptance."),
        table(rows, widths=[10, 80, 80]), para(verdict)]


def _controls(inputs: DossierInputs) -> list[Flowable]:
    sbom, floors = inputs.sbom, _privacy.defaults()[1]
    bom = (f" The SBOM of this build is CycloneDX {esc(sbom.get('spec_version'))} with "
           f"{esc(sbom.get('components'))} components, SHA-256 {esc(sbom.get('sha256'))}." if sbom else "")
    return [
        *section("4 Security controls"),
        para("4.1 <b>Secure aggregation.</b> Each summed statistic is encoded in fixed point (64 fractional "
             "bits) in the ring of integers modulo 2<super>128</super> and masked, for every pair of sites, "
             "with a mask derived from an X25519 key agreement expanded with HKDF-SHA256 (bound to session, "
             "round and the pair of site names) and the ChaCha20 keystream; key pairs are fresh every round, "
             "low-order and malformed keys are refused, the masks cancel only in the sum over all sites and "
             "values beyond \u00b12<super>52</super> are refused, never wrapped (Bonawitz et al. 2017)."),
        para("4.2 <b>Signed and witnessed ledger.</b> RFC 9162 Merkle tree in SQLite; checkpoints signed "
             "with Ed25519 as C2SP signed notes; each site's witness cosigns (tlog-cosignature/v1) only "
             "after verifying a consistency proof, and refuses to cosign anything after a fork; a checkpoint "
             "counts only with a strict majority of site witnesses."),
        para("4.3 <b>Access control.</b> Bearer JWT signed with ES256 (P-256), algorithm pinned, issuer, "
             "audience (the server's base URL) and expiry checked; SMART App Launch v2 scopes per resource "
             "type and interaction (RiskAssessment.c to predict, .rs to read, AuditEvent.rs for the audit "
             "trail, patient/Consent.* bound to one patient)."),
        para("4.4 <b>Audit trail.</b> Every request, allowed or refused, is an AuditEvent (who, patient, "
             "model SHA-256, SHA-256 of the request body, outcome) stored with the request's RiskAssessments "
             "in one transaction before the response starts."),
        para("4.5 <b>Input validation.</b> FHIR resources are validated against R4 and the device's own "
             "bindings; units are converted by UCUM or refused; values outside the intended-use envelope "
             "are refused (422 naming the element); wire messages are strict, versioned pydantic models. No "
             "pickle is used on any wire or disk."),
        para("4.6 <b>SOUP and SBOM.</b> Every third-party component is listed with version, licence and risk "
             f"note (FP-SOUP) and in a machine-readable CycloneDX SBOM delivered with this file.{bom}"),
        para("4.7 <b>Differential privacy (optional, off by default).</b> When the approved study enables "
             f"it ([dp] enabled, epsilon, delta of {_privacy.fit_cost()}), {_privacy.MECHANISM}. Each site "
             "keeps a R\u00e9nyi-DP accountant over every study in its own folder (privacy.json) and refuses "
             "(budget) a release that would exceed the budget its operator set (dp_epsilon, dp_delta; "
             f"defaults {floors.dp_epsilon:g} and {floors.dp_delta:g}). A private release records \u03b5, "
             "\u03b4 and the mechanism, and every count it shows is noisy (SRS-PRIV-016, SRS-PRIV-017, "
             f"SRS-PRIV-018). <i>Guarantee:</i> {_privacy.GUARANTEE} <i>Not covered</i> (residual risks R8, "
             f"R9): {_privacy.sentence(_privacy.not_covered())} <i>Cox models:</i> "
             f"{_privacy.cox_quoted()}."),
        *([para(f"<i>Private Cox models (SRS-PRIV-023).</i> {esc(_privacy.cox_guarantee())} "
                f"{esc(_privacy.cox_model())} {esc(_privacy.COX_SE)} <i>Limitations:</i> "
                f"{esc(_privacy.sentence(_privacy.cox_limits()))} The utility measured is in FP-RMF section "
                f"7 and FP-IFU section 7. {esc(_privacy.COX_DECISION)}")] if _privacy.cox_private() else []),
    ]


def _decision(inputs: DossierInputs, name: str) -> str:
    """The manufacturer's decision ``cybersecurity.<name>``, or that it is open (the file stays a draft)."""
    block = getattr(inputs.manufacturer, "cybersecurity", None)
    value = getattr(block, name, None)
    return (esc(value) if value not in (None, MARKER) else
            f"<b>open decision</b> (regulatory/manufacturer.yaml cybersecurity.{name})")


def _vulnerabilities(inputs: DossierInputs) -> list[Flowable]:
    """Section 6: vulnerability handling and coordinated disclosure (IEC 81001-5-1 §5.1.4, §7, §8)."""
    steps = [
        ("Intake", "Reports from researchers, hospitals, suppliers and the monitoring below are received at "
                   f"the security contact: {_decision(inputs, 'security_contact')}. Each becomes a problem "
                   "report of the problem-resolution process (FP-SDP, IEC 62304 \u00a79), marked "
                   "as security."),
        ("Triage", "The report is reproduced, scored with the method of section 3.1 (CVSS v3.1 base vector "
                   "of the vulnerability as found) and assessed for patient harm in FP-RMF. Proposed times: "
                   "acknowledge within 5 working days, triage within 10, remedy or mitigation within 30 days "
                   "for Critical and High, in the next planned release otherwise. Binding times: "
                   f"{_decision(inputs, 'response_times')}."),
        ("SOUP monitoring", "The CycloneDX SBOM delivered with this file (fedprog trace sbom; names, "
                            "versions, purls, hashes) is compared against published advisories for every "
                            "component at each release and at least monthly (FP-PMS); the SOUP list's risk "
                            "notes record each evaluation (IEC 62304 \u00a77.1.3). No automated scan is part "
                            "of the build (residual risk in section 5)."),
        ("Remedy and release",
         "A fix follows the life cycle of FP-SDP: change, review, make test (lint, the whole suite with "
         "JUnit evidence, fedprog trace check), a new software version with a new SBOM and technical file "
         "(fedprog dossier build, anchored in the ledger). A model found unsafe is withdrawn (fedprog model "
         "withdraw: not served from the next request); a leaked token key is rotated, which revokes every "
         "token."),
        ("Notification", "Hospitals operating the device receive an advisory with the affected versions, the "
                         "severity, the mitigation until the fix and the fixed version, through: "
                         f"{_decision(inputs, 'advisory_channel')}. Serious incidents are reported under "
                         "MDR Art. 87 (FP-PMS)."),
        ("Coordinated disclosure",
         "The reporter is acknowledged and kept informed; publication is agreed with the reporter after the "
         "remedy is available to hospitals (proposed: at most 90 days after the report). Security support "
         f"of this version ends: {_decision(inputs, 'support_end')}."),
    ]
    return [*section("6 Vulnerability handling and coordinated disclosure"),
            para("The process below is the manufacturer's (MDCG 2019-16 section 6; IEC 81001-5-1 "
                 "\u00a75.1.4, \u00a77, \u00a78). Where only the legal manufacturer can decide (the contact "
                 "address, the advisory channel, binding response times, the end of support, the acceptance "
                 "of High residual risks), the decision is read from regulatory/manufacturer.yaml and, while "
                 "open, listed in the manifest's open decisions: the technical file stays a draft."),
            table([("Step", "Process"), *[(name, para(text, "cell")) for name, text in steps]],
                  widths=[32, 138])]


def _security_tests(inputs: DossierInputs) -> list[Flowable]:
    """Section 7: the security test report, counted from the run (IEC 81001-5-1 §5.7)."""
    run = inputs.test_run
    out: list[Flowable] = [*section("7 Security test report")]
    if run is None:
        return [*out, para("<b>No test run was available to this build:</b> the security tests below are not "
                           "evidenced by this file (FP-VER).")]
    camp: list[list[object]] = [["Campaign", "What it attacks", *_tests.TALLY_HEAD]]
    camp += [[name, what, *_tests.tally(_tests.of_files(run, files)).cells()]
             for name, what, files in CAMPAIGNS]
    fam: list[list[object]] = [["Family", *_tests.TALLY_HEAD]]
    fam += [[f, *_tests.tally(tests).cells()] for f, tests in _tests.by_family(run, FAMILIES).items()]
    every = _tests.tally(_tests.of_families(run, FAMILIES))
    bad = [t for t in _tests.of_families(run, FAMILIES) if t.outcome != "passed"]
    out += [para(f"From the test run of commit {esc(run.commit)} ({esc(run.date)}), as FP-VER records it. "
                 "By campaign (the test files that run it):"),
            table(camp, widths=[26, 50, 13, 13, 13, 13, 13, 24]),
            para("By requirement family of the security and privacy requirements and risk controls (a test "
                 "verifying ids of two families counts in both):"),
            table(fam, widths=[40, 18, 18, 18, 18, 18, 40]),
            para(f"Security and privacy tests of the run: {esc(every.text())}; verdict "
                 f"<b>{every.verdict}</b>. A verdict other than PASSED is evaluated in the release notes "
                 "(FP-REL).")]
    if bad:
        out.append(table([("Not passed", "Requirements"), *[(_tests.listed([t]), ", ".join(t.reqs))
                                                           for t in bad]], widths=[120, 50]))
    return out


def _it_security() -> list[Flowable]:
    """Section 8: what the hospital's IT must provide and keep (MDR Annex I §17.4; IEC 81001-5-1 §5.8)."""
    hours = MAX_TTL_SECONDS // 3600
    items = [
        ("TLS and placement", f"fedprog serve speaks plain HTTP on {DEFAULT_HOST}:{DEFAULT_PORT} by default: "
         "terminate TLS 1.2 or later at the hospital's reverse proxy and keep the server on loopback or a "
         "segment reachable only from the proxy (FP-IFU section 8)."),
        ("Firewall and ports", "Allow inbound only the proxy's HTTPS port, from the EHR and clinical "
         "workstations; block the server's HTTP port from everything but the proxy. Federated training "
         "between hospitals uses its own connections (Flower SuperLink and SuperNodes) and is not opened "
         "to the clinical network."),
        ("Tokens", f"Only {ALGORITHM} tokens of issuer '{ISSUER}' signed with keys/token-es256.pem are "
         f"accepted, for at most {hours} h; fedprog token revoke refuses a token from the next request; "
         "replacing the key revokes every token. Keep lifetimes short."),
        ("Key custody", "keys/log.key (the log's checkpoint key) with the coordinator's operator; each "
         "site's witness.key and identity.key at that hospital only, never copied to the coordinator; "
         "keys/token-es256.pem on the server host only; each person's approval key (ledger/signatures.py) "
         "with that person, its public half pinned in workspace.json. All are 0600 files protected by file "
         "permissions only: add disk encryption and access control (residual risk in section 5)."),
        ("Backups", "Back up the whole workspace (ledger, stores, keys) on the hospital's schedule; the "
         "backup holds private keys and is protected like them; after a restore run fedprog ledger verify "
         "before serving."),
        ("Logs and monitoring", "Every request is an AuditEvent in fhir.sqlite; review refusals (401, 403) "
         "for misuse; keep the server's clock on NTP (token expiry)."),
    ]
    return [*section("8 IT security for the hospital"),
            para("For the hospital's IT security staff (MDCG 2019-16 section 4.3 and Annex I: information "
                 "the manufacturer supplies to the operator):"),
            *[para(f"<b>{esc(t)}.</b> {esc(text)}") for t, text in items]]


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    _checked(inputs.requirements, (i for t in THREATS for i in t.evidence))
    residual: list[list[object]] = [["#", "Residual risk", "Consequence", "Measure"]]
    residual += [[f"R{n}", *r] for n, r in enumerate(residual_risks(), start=1)]
    threats = _threats()
    return [
        *section("1 Scope"),
        para(f"This document states the cybersecurity of {esc(inputs.device)} {esc(inputs.device_version)} "
             f"(commit {esc(inputs.commit)}): the threat model of the federated network and of the FHIR/CDS "
             "Hooks endpoint with the score of each threat, the controls, the requirements that specify and "
             "verify them, the residual risks, vulnerability handling, the security tests and what the "
             "hospital's IT must provide (EU MDR Annex I \u00a717.2 and \u00a717.4; MDCG 2019-16; IEC "
             "81001-5-1). Security risks that can affect safety are also hazards of the risk management "
             "file (FP-RMF)."),
        *section("2 System context and trust boundaries"),
        para("(a) Each hospital site: its data, consent registry and keys; trusted by its hospital only. "
             "(b) The coordinator: not trusted - neither to follow the protocol nor with any site's "
             "statistics; it may be honest-but-curious or malicious, and each site checks every request "
             "against the study its operator approved. (c) The ledger: trusted by no "
             "one alone; its checkpoints count only when a majority of site witnesses cosigned them. (d) The "
             "FHIR server on a hospital server, reached by the EHR and integrating systems; every request "
             "authenticated except the public metadata, OperationDefinition and CDS Hooks discovery. "
             "(e) Operators with access to the workspace keys."),
        para("Assets: patient-level data and identities (confidentiality), the model artifact and the risk "
             "it computes (integrity), the ledger and audit trail (integrity, non-repudiation), the risk "
             "service (availability)."),
        *section("3 Threat model (STRIDE)", then=threats),
        para("Evidence names the software requirements (SRS-) and risk controls (RC-) that specify each "
             "control; each is verified by the marked tests listed in the trace matrix (FP-TM) and counted "
             "in section 7."), threats, *_scoring(),
        *_controls(inputs),
        *section("5 Residual risks"),
        para("Known limitations of the current version, stated so that the deploying organisation can "
             "control them; each is tracked for a later version."),
        table(residual, widths=[8, 62, 50, 50]),
        *_vulnerabilities(inputs), *_security_tests(inputs), *_it_security(),
    ]


SPEC = DocumentSpec(id="FP-CYB", title="Cybersecurity", file="FP-CYB-cybersecurity.pdf",
                    needs=("requirements",), build=build)
