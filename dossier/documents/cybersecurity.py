"""FP-CYB — Cybersecurity (EU MDR Annex I §17.2, §17.4; MDCG 2019-16; IEC 81001-5-1).

A STRIDE threat model of the federated network and the risk endpoint, the security controls
with the requirements that specify them (every cited id is checked against the loaded
requirements: a stale reference stops the build), and the residual risks, stated as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from reportlab.platypus import Flowable

from dossier.documents import _privacy
from dossier.documents._layout import ids, section
from dossier.spec import DocumentSpec, DossierError, DossierInputs
from dossier.style import esc, para, table

#: category, threat, asset, control, evidence (requirement / risk-control ids)
THREATS: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("Spoofing", "A client calls the endpoint with no token, a forged, expired, alg:none or wrong-audience "
     "token.", "Risk service; patient data in requests",
     "ES256 JWT, algorithm pinned; iss, aud, exp checked; every request authenticated except the "
     "public metadata, OperationDefinition and CDS Hooks discovery.",
     ("SRS-AUTH-001", "SRS-AUTH-003", "RC-AUTH-001")),
    ("Spoofing", "A forged checkpoint or witness cosignature is presented as the ledger state.", "Ledger",
     "Ed25519 signed notes (C2SP); cosignature/v1 per site witness; strict-majority quorum.",
     ("SRS-LEDG-003", "SRS-LEDG-006")),
    ("Tampering", "A modified or corrupted model artifact is registered or served.", "Model artifact",
     "SHA-256 of the canonical JSON recomputed on every load and at release; content-addressed store.",
     ("SRS-DEV-001", "SRS-DEV-002", "RC-ART-001")),
    ("Tampering", "The ledger history is rewritten: rollback, second root for a size, split view.", "Ledger",
     "Witnesses cosign only after a consistency proof and stop on a fork; UPDATE/DELETE refused by the "
     "database; full verification.", ("SRS-LEDG-002", "SRS-LEDG-004", "SRS-LEDG-005", "RC-LEDG-001")),
    ("Tampering", "Malformed or hostile messages between coordinator and sites (NaN, wrong shapes, unknown "
     "fields, deserialisation attacks).", "Federated computation",
     "Versioned pydantic messages validated on receipt; arrays as exact bytes; no pickle.", ("SRS-FED-008",)),
    ("Tampering", "Hostile or malformed FHIR input: invalid resources, unconvertible units, out-of-range "
     "values.", "Risk estimate", "FHIR validation plus own binding checks; UCUM conversion or refusal; "
     "intended-use envelope; every error an OperationOutcome, never a 500.",
     ("SRS-FHIR-004", "SRS-FHIR-005", "SRS-FHIR-006", "SRS-DEV-005")),
    ("Repudiation", "A risk is issued, or a request refused, without a record.", "Audit trail",
     "AuditEvent for every request, stored with the RiskAssessment in one transaction before the response.",
     ("SRS-AUDIT-001", "RC-AUDIT-001")),
    ("Repudiation", "A release, withdrawal or consent decision is denied afterwards.", "Lifecycle records",
     "Every transition is a signed ledger entry cosigned by the sites' witnesses.",
     ("SRS-REG-001", "SRS-CONS-005")),
    ("Information disclosure", "The coordinator learns one hospital's statistics.", "Site aggregates",
     "Secure aggregation on by default: pairwise X25519/HKDF/ChaCha20 masks modulo 2^128, fresh every round.",
     ("SRS-SEC-001", "SRS-SEC-002", "SRS-SEC-003")),
    ("Spoofing", "A malicious coordinator substitutes the sites' round keys, lists a peer set of one site, "
     "asks for plaintext or re-asks a round with another request to unmask a site.", "Site aggregates",
     "Round keys signed with each site's Ed25519 identity key and checked against the approved study; at "
     "least max(2, min_sites) peers; masks bound to the request digest; each round answered once.",
     ("SRS-SEC-004", "RC-PRIV-003")),
    ("Tampering", "A malicious coordinator writes its own requests: a lowered policy, one-patient blocks, "
     "another cohort, a finer grid or Kaplan-Meier times, stale or stepped consent checkpoints, extreme "
     "or many coefficient vectors.", "Patient data",
     "Sites answer only the study their operator approved (SHA-256), under their own floors; only the "
     "newest witnessed checkpoint; a bound on |beta·x| over the declared ranges and a budget of rounds.",
     ("SRS-PRIV-010", "SRS-PRIV-012", "SRS-PRIV-014", "RC-PRIV-003")),
    ("Information disclosure", "The coordinator decodes single-patient cells (a day with one event, a "
     "risk-set difference of one censored patient) or uses errors as oracles.", "Patient data",
     "k-cells at the source on a public time ladder: every atom of a site's patients is 0 or at least k; "
     "errors in a secure study carry no counts or values; a malicious-coordinator harness asserts on "
     "what it decodes.", ("SRS-PRIV-011", "SRS-PRIV-013", "SRS-PRIV-015", "RC-PRIV-003")),
    ("Information disclosure", "The coordinator, or a reader of releases, learns about one patient from "
     "aggregate Kaplan-Meier counts (a count of one, the difference of two sums or of two fits, a re-run "
     "after a dropout).", "Patient data",
     "Optional differential privacy (off by default; \u03b5, \u03b4 per fit pinned in the approved study): "
     "each site adds its share of distributed Skellam noise to its integer counts before masking, so no "
     "exact sum is decoded; a persistent accountant per site over all studies refuses beyond its "
     "operator's budget; a private release states \u03b5, \u03b4 and shows noisy counts only. Cox models: "
     "section 4.7; what it does not cover: residual risks R1, R2, R8, R9.",
     ("SRS-PRIV-016", "SRS-PRIV-017", "SRS-PRIV-018", "SRS-PRIV-019", "SRS-PRIV-023")),
    ("Information disclosure", "Patient-level values leave a site in messages, errors or small cells.",
     "Patient data", "Shapes fixed by public parameters; disclosure policy; small cells suppressed; outbound "
     "transcript and its audit.", ("SRS-PRIV-001", "SRS-PRIV-002", "SRS-PRIV-003", "SRS-PRIV-004",
                                   "RC-PRIV-002")),
    ("Information disclosure", "A reader of releases differences two artifacts or validation reports (a "
     "model and its successor retrained without a withdrawn patient) to recover her covariates and event.",
     "Patient data", "Released counts rounded to multiples of k (artifact: n, events, coverage bins; "
     "validation: per site, subgroup, risk group); the model centred on the study's declared reference "
     "patient, never a data mean; each site pads a withdrawal so that its patient set differs from every "
     "earlier job's by 0 or at least k.", ("SRS-PRIV-020", "SRS-PRIV-021", "SRS-PRIV-022", "RC-PRIV-004")),
    ("Information disclosure", "A patient identifier reaches the shared ledger, or a reader of the ledger "
     "links one patient's consent events.", "Patient identity",
     "Only HMAC-SHA256 commitments under a fresh salt per consent event (no value links two events "
     "of one patient); the site proves linkage to an auditor with the openings; erasure by "
     "crypto-shredding every salt of the patient.", ("SRS-CONS-003", "SRS-CONS-010", "RC-PRIV-001")),
    ("Denial of service", "A site stops answering or answers invalidly and stalls the study.", "Training",
     "Timeout per round; the site is excluded with its reason and the fit re-run, or stopped cleanly.",
     ("SRS-FED-009",)),
    ("Denial of service", "Oversized or many-entry requests exhaust the server.", "Risk service",
     "Token and body size limits; batch size limit; a bad batch entry fails alone.", ("SRS-FHIR-003",)),
    ("Elevation of privilege", "A token used beyond its scopes: predicting with a read scope, reading the "
     "audit trail or another patient's consent.", "Risk service; audit; consent",
     "SMART v2 scopes checked per resource type and interaction; patient scopes bound to the patient.",
     ("SRS-AUTH-002", "SRS-CONS-006")),
    ("Tampering (supply chain)", "A compromised or vulnerable third-party component.", "Device software",
     "SOUP list with versions, licences and risk notes; CycloneDX SBOM with hashes.",
     ("SRS-SOUP-001", "SRS-SOUP-002")),
)

def residual_risks() -> tuple[tuple[str, str, str], ...]:
    """Residual risk, consequence, measure required of the deployment or planned; the Cox part of
    differential privacy as the code stands (:func:`dossier.documents._privacy.cox_brief`)."""
    cox = _privacy.cox_brief()
    private = _privacy.cox_private()
    return (
    ("After a dropout the fit is re-run among the remaining sites (exact Cox needs survivors-only answers "
     "to the questions that do not depend on beta; double masking, Bonawitz et al. 2017, would decode the "
     "round but not remove this difference, so it is not used).", "A coordinator that claims a dropout "
     "can difference the two runs and learn one site's statistics - sums over cells of 0 or at least k of "
     "its patients (k-cells at the source, SRS-PRIV-011), never a patient's value.", "Keep min_cell_count "
     ">= 5. In a Kaplan-Meier study with differential privacy both runs carry the sites' noise and each is "
     "charged to every answering site's accountant, so the difference is covered. For Cox studies, "
     + ("the same holds when the study enables differential privacy (SRS-PRIV-023)" if private else cox)
     + "; without it the bound is k-cells only."),
    ("Inside the declared ranges the bound on |beta·x| (30) still lets a coordinator choose coefficients "
     "under which a patient isolated at the edge of a range carries most of her cell's weight (covariates "
     "are clipped to the ranges, so a value beyond them is never learned).", "Approximate recovery of an "
     "isolated patient's other covariates from a cell of at least k.",
     ("Planned: a dominance rule (effective cell size under the weights); keep the budget of rounds small. "
      "A study that enables differential privacy is fitted by noisy Newton (SRS-PRIV-023), and its sites "
      "refuse the exact Cox rounds (SRS-PRIV-019)." if private else
      "Planned: a dominance rule (effective cell size under the weights) or differential privacy for Cox "
      f"models; keep the budget of rounds small. Today {cox}.")),
    ("The bound on |beta·x| makes solving a cell for its patients (Prony's method) harder, not impossible; "
     "the site's budget of rounds (kept in a file, so it survives a restart) limits how many questions "
     "are asked.", "A patient inside a cell of k could be approached by a long series of coefficient "
     "vectors within the budget.", "Keep max_rounds as small as the studies allow."),
    ("Which rung of the time ladder a site accepts, and which sites refused (by code), is visible to the "
     "coordinator; the coordinator also decides when consent checkpoints are published.",
     "One bit per rung and site; two trainings at consecutive checkpoints differ by the patients whose "
     "consent changed between them.", "Publish checkpoints on a schedule the sites agree to; each site "
     "pads its contribution so two jobs differ by 0 or at least k of its patients (RC-PRIV-004)."),
    ("Rounding, the reference centre and padding make two releases differ by 0 or at least k of a site's "
     "patients, not by one; they are not differential privacy: coefficients, baseline survival and "
     + ("covariance stay exact unless the study enables differential privacy (then they are noisy, "
        "SRS-PRIV-023)." if private else f"covariance stay exact ({cox})."),
     "A reader who knows the k - 1 other patients of a difference (drawn at random by the site, never "
     "published) could isolate the withdrawn patient.",
     "Keep min_cell_count >= 5; keep each site's contribution key secret."),
    ("Sites keep session state (cohort and key pairs per session) in memory, never evicted while the "
     "process runs; there is no dropout recovery inside a round.",
     "A site restart loses its sessions and the round is re-run or the study stops; memory grows with the "
     "number of sessions.", "Run each site under a supervisor and restart it between studies."),
    ("Masking hides each site's contribution, not the sum; the coordinator colluding with all sites but "
     "one learns that site's statistics (under differential privacy, carrying only that site's own share "
     "of the noise).", "Disclosure of one hospital's aggregates (not of patient rows).",
     "min_sites (default 3) and the disclosure policy; contracts between the hospitals."),
    ("Differential privacy is optional and off by default; the guarantee this file states covers the "
     + ("Kaplan-Meier counts and the sums of a private Cox fit (section 4.7), not the accuracy of a private "
        "Cox model." if private else f"Kaplan-Meier counts only, and {cox}.")
     + " The plaintext evaluations of validation and every study without it are outside the sites' "
     "accountants.",
     "Cox models (coefficients, covariance, baseline hazard) trained without it, validation results and "
     "studies without differential privacy are protected by the disclosure policy, k-cells, rounding to "
     "k and padding only (no formal bound on what one patient changes).",
     "Enabling differential privacy and choosing \u03b5 is the study's decision, with the "
     "data protection assessment (the default is off); each site's operator sets its own budget "
     "(dp_epsilon, dp_delta). Keep min_cell_count."),
    ("Within a differentially private study: refusals at the source (k-cells, site minimums) are not "
     "noised; sites colluding with the coordinator can subtract their own noise shares; the noise comes "
     "from NumPy's Poisson sampler, exact only up to floating-point arithmetic.",
     "A refusal tells whether a count is below a threshold; against t colluding sites of n the noise left "
     "is Sk(\u03bc(n - t)/n), weaker than the stated (\u03b5, \u03b4); the floating-point sampler may "
     "deviate from the exact Poisson law in ways the accounting does not model.",
     "min_sites (default 3) and contracts between the hospitals against collusion; the site minimums "
     "are public study parameters; an exact integer sampler (Duchon & Duvignau 2016) is a candidate for a "
     "later version."),
    ("Per-hospital validation results are plaintext by design; --time-grid exact sends distinct event times "
     "in plaintext.", "Aggregates attributable to one hospital.",
     "Suppression below the disclosure minimums; the transcript marks plaintext and its audit fails on it."),
    ("fedprog serve speaks plain HTTP (127.0.0.1 by default); the site transport's channel security is not "
     "provided by fedprog.", "Eavesdropping or tampering on the network if exposed.",
     "Deploy behind TLS (reverse proxy) with network segmentation; mutual TLS for site links."),
    ("Tokens are issued locally from a key file, with no link to the hospital's identity provider and no "
     "refresh tokens; a revoked token's id (fedprog token revoke) is refused by every server process of "
     "the workspace.", "A leaked token is valid until it expires (default 1 hour, at most 8 hours) unless "
     "someone notices and revokes it.", "Short lifetimes; revoke leaked tokens; rotate the signing key to "
     "revoke all tokens; integrate an authorisation server."),
    ("Keys and stores at rest (log, witness, consent and token keys; SQLite stores including consent "
     "identities and the audit trail) are protected by file permissions only; the demo keeps all of them "
     "on one host.", "A host compromise exposes keys and records.",
     "Keep each site's keys at its hospital; disk encryption and access control by the operator."),
    ("The SBOM enables vulnerability monitoring, but no automated vulnerability scan is part of the build.",
     "A known vulnerability in a SOUP item may go unnoticed between releases.",
     "Monitor advisories against the SBOM as part of post-market surveillance."),
)


def _checked(requirements: Any, cited: Iterable[str]) -> None:
    missing = sorted({i for i in cited if i not in requirements})
    if missing:
        raise DossierError(f"{SPEC.id} cites {', '.join(missing)}, which the requirements do not define")


def _threats() -> Flowable:
    rows: list[list[object]] = [["#", "STRIDE", "Threat", "Asset", "Control", "Evidence"]]
    rows += [[f"T{n}", cat, threat, asset, control, ids(ev)]
             for n, (cat, threat, asset, control, ev) in enumerate(THREATS, start=1)]
    return table(rows, widths=[8, 19, 42, 24, 47, 30])


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


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    _checked(inputs.requirements, (i for t in THREATS for i in t[4]))
    residual: list[list[object]] = [["#", "Residual risk", "Consequence", "Measure"]]
    residual += [[f"R{n}", *r] for n, r in enumerate(residual_risks(), start=1)]
    threats = _threats()
    return [
        *section("1 Scope"),
        para(f"This document states the cybersecurity of {esc(inputs.device)} {esc(inputs.device_version)} "
             f"(commit {esc(inputs.commit)}): the threat model of the federated network and of the FHIR/CDS "
             "Hooks endpoint, the controls, the requirements that specify and verify them, and the residual "
             "risks (EU MDR Annex I \u00a717.2 and \u00a717.4; MDCG 2019-16; IEC 81001-5-1). Security risks "
             "that can affect safety are also hazards of the risk management file (FP-RMF)."),
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
             "control; each is verified by the marked tests listed in the trace matrix (FP-TM)."), threats,
        *_controls(inputs),
        *section("5 Residual risks"),
        para("Known limitations of the current version, stated so that the deploying organisation can "
             "control them; each is tracked for a later version."),
        table(residual, widths=[8, 62, 50, 50]),
    ]


SPEC = DocumentSpec(id="FP-CYB", title="Cybersecurity", file="FP-CYB-cybersecurity.pdf",
                    needs=("requirements",), build=build)
