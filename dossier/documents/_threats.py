"""The cybersecurity threats and residual risks, kept once for FP-CYB and FP-REL (MDCG 2019-16;
IEC 81001-5-1 §5.2 threat and risk assessment; AAMI TIR57).

Each STRIDE threat carries two CVSS v3.1 base vectors (FIRST, CVSS v3.1 specification, section 7):
*inherent*, the attack against the device without the control; *residual*, the same attack against the
control as the code implements it (what the attacker must then hold or overcome). Scores are computed
here from the vectors (:func:`cvss_score`), never typed in. The residual risks are the known
limitations of the current version, stated with what the deployment must do about them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from dossier.documents import _privacy


class Threat(NamedTuple):
    """One threat: STRIDE category, threat, asset, control, evidence (requirement / risk-control ids)."""

    category: str
    threat: str
    asset: str
    control: str
    evidence: tuple[str, ...]


class Vectors(NamedTuple):
    """A threat's CVSS v3.1 base vectors: without its control, and against the control as implemented."""

    inherent: str
    residual: str


#: CVSS v3.1 base metric weights (specification section 7.4)
_WEIGHTS: dict[str, dict[str, float]] = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2}, "AC": {"L": 0.77, "H": 0.44},
    "UI": {"N": 0.85, "R": 0.62}, "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0}, "A": {"H": 0.56, "L": 0.22, "N": 0.0}}
_PR = {"U": {"N": 0.85, "L": 0.62, "H": 0.27}, "C": {"N": 0.85, "L": 0.68, "H": 0.5}}
_METRICS = ("AV", "AC", "PR", "UI", "S", "C", "I", "A")
#: qualitative severity rating scale (specification section 5)
RATINGS: tuple[tuple[float, str], ...] = ((9.0, "Critical"), (7.0, "High"), (4.0, "Medium"), (0.1, "Low"),
                                          (0.0, "None"))


def _roundup(value: float) -> float:
    """CVSS v3.1 Roundup (specification Appendix A): the smallest one-decimal number >= ``value``."""
    scaled = round(value * 100_000)
    return scaled / 100_000 if scaled % 10_000 == 0 else (math.floor(scaled / 10_000) + 1) / 10.0


def parse(vector: str) -> dict[str, str]:
    """``AV:N/AC:L/…`` (optionally prefixed ``CVSS:3.1/``) → metric → value; ValueError if incomplete."""
    parts = dict(p.split(":", 1) for p in vector.removeprefix("CVSS:3.1/").split("/"))
    if set(parts) != set(_METRICS) or parts["S"] not in ("U", "C") or any(
            parts[m] not in _WEIGHTS[m] for m in _WEIGHTS) or parts["PR"] not in _PR["U"]:
        raise ValueError(f"not a CVSS v3.1 base vector: {vector}")
    return parts


def cvss_score(vector: str) -> float:
    """The CVSS v3.1 base score of ``vector`` (specification section 7.1)."""
    m = parse(vector)
    w = {k: _WEIGHTS[k][m[k]] for k in _WEIGHTS}
    changed = m["S"] == "C"
    iss = 1 - (1 - w["C"]) * (1 - w["I"]) * (1 - w["A"])
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
    exploitability = 8.22 * w["AV"] * w["AC"] * _PR[m["S"]][m["PR"]] * w["UI"]
    if impact <= 0:
        return 0.0
    return _roundup(min((1.08 if changed else 1.0) * (impact + exploitability), 10.0))


def rating(score: float) -> str:
    """The qualitative rating of a CVSS score: None, Low, Medium, High, Critical."""
    return next(name for floor, name in RATINGS if score >= floor)


#: residual scores at or above this (High, Critical) are accepted only by the manufacturer's decision
ACCEPT_LIMIT = 7.0


#: each threat with its inherent and residual CVSS v3.1 base vectors
_SCORED: tuple[tuple[Threat, str, str], ...] = (
    (Threat("Spoofing",
     "A client calls the endpoint with no token, a forged, expired, alg:none or wrong-audience "
     "token.", "Risk service; patient data in requests",
     "ES256 JWT, algorithm pinned; iss, aud, exp checked; every request authenticated except the "
     "public metadata, OperationDefinition and CDS Hooks discovery.",
     ("SRS-AUTH-001", "SRS-AUTH-003", "RC-AUTH-001")),
     "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:N", "AV:N/AC:H/PR:H/UI:N/S:U/C:H/I:H/A:N"),
    (Threat("Spoofing",
     "A forged checkpoint or witness cosignature is presented as the ledger state.", "Ledger",
     "Ed25519 signed notes (C2SP); cosignature/v1 per site witness; strict-majority quorum.",
     ("SRS-LEDG-003", "SRS-LEDG-006")),
     "AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:H/A:N", "AV:N/AC:H/PR:H/UI:N/S:U/C:N/I:H/A:N"),
    (Threat("Tampering", "A modified or corrupted model artifact is registered or served.", "Model artifact",
     "SHA-256 of the canonical JSON recomputed on every load and at release; content-addressed store.",
     ("SRS-DEV-001", "SRS-DEV-002", "RC-ART-001")),
     "AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:H/A:N", "AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:L"),
    (Threat("Tampering",
     "The ledger history is rewritten: rollback, second root for a size, split view.", "Ledger",
     "Witnesses cosign only after a consistency proof and stop on a fork; UPDATE/DELETE refused by the "
     "database; full verification.", ("SRS-LEDG-002", "SRS-LEDG-004", "SRS-LEDG-005", "RC-LEDG-001")),
     "AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:H/A:N", "AV:L/AC:H/PR:H/UI:N/S:U/C:N/I:H/A:N"),
    (Threat("Tampering",
     "Malformed or hostile messages between coordinator and sites (NaN, wrong shapes, unknown "
     "fields, deserialisation attacks).", "Federated computation",
     "Versioned pydantic messages validated on receipt; arrays as exact bytes; no pickle.", ("SRS-FED-008",)),
     "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "AV:N/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:L"),
    (Threat("Tampering",
     "Hostile or malformed FHIR input: invalid resources, unconvertible units, out-of-range "
     "values.", "Risk estimate", "FHIR validation plus own binding checks; UCUM conversion or refusal; "
     "intended-use envelope; every error an OperationOutcome, never a 500.",
     ("SRS-FHIR-004", "SRS-FHIR-005", "SRS-FHIR-006", "SRS-DEV-005")),
     "AV:N/AC:L/PR:L/UI:N/S:U/C:N/I:H/A:L", "AV:N/AC:H/PR:L/UI:N/S:U/C:N/I:L/A:N"),
    (Threat("Repudiation", "A risk is issued, or a request refused, without a record.", "Audit trail",
     "AuditEvent for every request, stored with the RiskAssessment in one transaction before the response.",
     ("SRS-AUDIT-001", "RC-AUDIT-001")),
     "AV:N/AC:L/PR:L/UI:N/S:U/C:N/I:L/A:N", "AV:N/AC:H/PR:H/UI:N/S:U/C:N/I:L/A:N"),
    (Threat("Repudiation",
     "A release, withdrawal or consent decision is denied afterwards.", "Lifecycle records",
     "Every transition is a signed ledger entry cosigned by the sites' witnesses.",
     ("SRS-REG-001", "SRS-CONS-005")),
     "AV:L/AC:L/PR:H/UI:N/S:U/C:N/I:H/A:N", "AV:L/AC:H/PR:H/UI:N/S:U/C:N/I:L/A:N"),
    (Threat("Information disclosure", "The coordinator learns one hospital's statistics.", "Site aggregates",
     "Secure aggregation on by default: pairwise X25519/HKDF/ChaCha20 masks modulo 2^128, fresh every round.",
     ("SRS-SEC-001", "SRS-SEC-002", "SRS-SEC-003")),
     "AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", "AV:N/AC:H/PR:H/UI:N/S:U/C:L/I:N/A:N"),
    (Threat("Spoofing",
     "A malicious coordinator substitutes the sites' round keys, lists a peer set of one site, "
     "asks for plaintext or re-asks a round with another request to unmask a site.", "Site aggregates",
     "Round keys signed with each site's Ed25519 identity key and checked against the approved study; at "
     "least max(2, min_sites) peers; masks bound to the request digest; each round answered once.",
     ("SRS-SEC-004", "RC-PRIV-003")),
     "AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", "AV:N/AC:H/PR:H/UI:N/S:U/C:L/I:N/A:N"),
    (Threat("Tampering",
     "A malicious coordinator writes its own requests: a lowered policy, one-patient blocks, "
     "another cohort, a finer grid or Kaplan-Meier times, stale or stepped consent checkpoints, extreme "
     "or many coefficient vectors.", "Patient data",
     "Sites answer only the study their operator approved (SHA-256), under their own floors; only the "
     "newest witnessed checkpoint; a bound on |beta·x| over the declared ranges and a budget of rounds.",
     ("SRS-PRIV-010", "SRS-PRIV-012", "SRS-PRIV-014", "RC-PRIV-003")),
     "AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", "AV:N/AC:H/PR:L/UI:N/S:U/C:L/I:N/A:N"),
    (Threat("Information disclosure", "The coordinator decodes single-patient cells (a day with one event, a "
     "risk-set difference of one censored patient) or uses errors as oracles.", "Patient data",
     "k-cells at the source on a public time ladder: every atom of a site's patients is 0 or at least k; "
     "errors in a secure study carry no counts or values; a malicious-coordinator harness asserts on "
     "what it decodes.", ("SRS-PRIV-011", "SRS-PRIV-013", "SRS-PRIV-015", "RC-PRIV-003")),
     "AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", "AV:N/AC:H/PR:L/UI:N/S:U/C:L/I:N/A:N"),
    (Threat("Information disclosure",
     "The coordinator, or a reader of releases, learns about one patient from "
     "aggregate Kaplan-Meier counts (a count of one, the difference of two sums or of two fits, a re-run "
     "after a dropout).", "Patient data",
     "Optional differential privacy (off by default; \u03b5, \u03b4 per fit pinned in the approved study): "
     "each site adds its share of distributed Skellam noise to its integer counts before masking, so no "
     "exact sum is decoded; a persistent accountant per site over all studies refuses beyond its "
     "operator's budget; a private release states \u03b5, \u03b4 and shows noisy counts only. Cox models: "
     "section 4.7; what it does not cover: residual risks R1, R2, R8, R9.",
     ("SRS-PRIV-016", "SRS-PRIV-017", "SRS-PRIV-018", "SRS-PRIV-019", "SRS-PRIV-023")),
     "AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N", "AV:N/AC:H/PR:N/UI:N/S:U/C:L/I:N/A:N"),
    (Threat("Information disclosure", "Patient-level values leave a site in messages, errors or small cells.",
     "Patient data", "Shapes fixed by public parameters; disclosure policy; small cells suppressed; outbound "
     "transcript and its audit.", ("SRS-PRIV-001", "SRS-PRIV-002", "SRS-PRIV-003", "SRS-PRIV-004",
                                   "RC-PRIV-002")),
     "AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", "AV:N/AC:H/PR:H/UI:N/S:U/C:L/I:N/A:N"),
    (Threat("Information disclosure",
     "A reader of releases differences two artifacts or validation reports (a "
     "model and its successor retrained without a withdrawn patient) to recover her covariates and event.",
     "Patient data", "Released counts rounded to multiples of k (artifact: n, events, coverage bins; "
     "validation: per site, subgroup, risk group); the model centred on the study's declared reference "
     "patient, never a data mean; each site pads a withdrawal so that its patient set differs from every "
     "earlier job's by 0 or at least k.", ("SRS-PRIV-020", "SRS-PRIV-021", "SRS-PRIV-022", "RC-PRIV-004")),
     "AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", "AV:N/AC:H/PR:N/UI:N/S:U/C:L/I:N/A:N"),
    (Threat("Information disclosure",
     "A patient identifier reaches the shared ledger, or a reader of the ledger "
     "links one patient's consent events.", "Patient identity",
     "Only HMAC-SHA256 commitments under a fresh salt per consent event (no value links two events "
     "of one patient); the site proves linkage to an auditor with the openings; erasure by "
     "crypto-shredding every salt of the patient.", ("SRS-CONS-003", "SRS-CONS-010", "RC-PRIV-001")),
     "AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", "AV:N/AC:H/PR:H/UI:N/S:U/C:L/I:N/A:N"),
    (Threat("Denial of service",
     "A site stops answering or answers invalidly and stalls the study.", "Training",
     "Timeout per round; the site is excluded with its reason and the fit re-run, or stopped cleanly.",
     ("SRS-FED-009",)),
     "AV:N/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:H", "AV:N/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:L"),
    (Threat("Denial of service", "Oversized or many-entry requests exhaust the server.", "Risk service",
     "Token and body size limits; batch size limit; a bad batch entry fails alone.", ("SRS-FHIR-003",)),
     "AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", "AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:L"),
    (Threat("Elevation of privilege",
     "A token used beyond its scopes: predicting with a read scope, reading the "
     "audit trail or another patient's consent.", "Risk service; audit; consent",
     "SMART v2 scopes checked per resource type and interaction; patient scopes bound to the patient.",
     ("SRS-AUTH-002", "SRS-CONS-006")),
     "AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:N", "AV:N/AC:H/PR:H/UI:N/S:U/C:L/I:N/A:N"),
    (Threat("Tampering (supply chain)",
     "A compromised or vulnerable third-party component.", "Device software",
     "SOUP list with versions, licences and risk notes; CycloneDX SBOM with hashes.",
     ("SRS-SOUP-001", "SRS-SOUP-002")),
     "AV:N/AC:H/PR:N/UI:R/S:U/C:H/I:H/A:H", "AV:N/AC:H/PR:N/UI:R/S:U/C:H/I:H/A:H"),
)


#: the threats, in the order FP-CYB numbers them (T1 …)
THREATS: tuple[Threat, ...] = tuple(t for t, _, _ in _SCORED)
_VECTORS: dict[Threat, Vectors] = {t: Vectors(i, r) for t, i, r in _SCORED}


def vectors(threat: Threat) -> Vectors:
    """The CVSS vectors scored for ``threat``; ValueError for a threat scored nowhere."""
    found = _VECTORS.get(threat)
    if found is None:
        raise ValueError(f"threat {threat[1][:60]!r} has no CVSS vectors in dossier/documents/_threats.py")
    return found


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
    ("A design (splines, dummy-coded categories, interactions) splits each time atom by the side of each "
     "column a site builds; a site refuses a design whose sides split its patients by event status into a "
     "cell of 1 to k - 1, but not per interval of the time grid (that rule would leave non-linear effects "
     "unfittable on hospitals of a few hundred patients).", "The year-to-year differences of a side's "
     "risk-set sums can be the few patients of that side who left in one year: their covariates, and "
     "under bounded coefficients more of them.", "Planned: side cells per interval, or differential "
     "privacy for designs; until then declare knots and categories that are well populated at every "
     "site over follow-up, and keep min_cell_count >= 5."),
    ("In a logistic study a coordinator can move the peak of the weights pi(1 - pi) across an input's "
     "range with bounded coefficient vectors; each site answers at most 40 logistic rounds per study (kept "
     "in its budget file, so a restart does not reset it).", "Within the budget, sums at a few weight "
     "profiles: partial recovery of the cells of single values of an input.", "Planned: differential "
     "privacy for logistic regression; keep the studies' logistic fits few."),
)


def high_residual(threats: tuple[Threat, ...] = THREATS) -> list[tuple[int, Threat]]:
    """``(number, threat)`` of every threat whose residual score is High or Critical (T1 is number 1)."""
    return [(n, t) for n, t in enumerate(threats, start=1)
            if cvss_score(vectors(t).residual) >= ACCEPT_LIMIT]
