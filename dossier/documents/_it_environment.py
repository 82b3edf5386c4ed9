"""FP-IFU section 8: the IT environment a hospital must provide (EU MDR Annex I §17.4, §23.4(ab):
minimum requirements on hardware, IT networks and IT security measures).

Each statement is what the code does, its numbers taken from the device code where one holds
them (token issuer and lifetime, clock tolerance, launch and code lifetimes, key and store paths);
the defaults of ``fedprog serve`` (a command of the ``fedprog`` package, which the dossier does
not import) are stated here and checked against the command by tests/dossier/test_ifu_it.py.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from reportlab.platypus import Flowable

from device.fhir.auth import ISSUER, MAX_TTL_SECONDS, TokenVerifier
from device.fhir.denylist import denylist_path
from device.fhir.keys import ALGORITHM, token_key_path
from device.fhir.smart import CODE_TTL, LAUNCH_TTL
from dossier.documents._layout import section
from dossier.style import esc, para

#: ``fedprog serve``'s defaults (checked against the command by the tests)
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8080
#: the workspace's stores the server writes while it runs, relative to the workspace
STORES = {"ledger.sqlite": "the ledger", "fhir.sqlite": "RiskAssessments and AuditEvents",
          "launch.sqlite": "SMART launches"}


def leeway() -> int:
    """The clock skew the token check tolerates, in seconds (the verifier's default)."""
    return int(inspect.signature(TokenVerifier).parameters["leeway"].default)


def _rel(path: Path) -> str:
    return path.relative_to(Path("W")).as_posix()


def it_environment() -> list[Flowable]:
    key, deny = _rel(token_key_path(Path("W"))), _rel(denylist_path(Path("W")))
    items = [
        ("TLS",
         f"fedprog serve listens on {DEFAULT_HOST} port {DEFAULT_PORT} by default (--host, --port) and "
         "speaks plain HTTP: it has no TLS of its own. The hospital must terminate TLS 1.2 or later at a "
         "reverse proxy (with a certificate of the hospital's PKI) and forward to the server on the "
         "loopback interface or a protected network segment; never expose the HTTP port. Start the "
         "server with --base-url set to the public HTTPS address of the FHIR base (…/fhir): it is the "
         "audience every token must carry, and the address the risk page and SMART discovery use."),
        ("Ports",
         "One TCP port serves everything the hospital uses: the FHIR endpoint (/fhir), CDS Hooks "
         "(/cds-services), the risk page (/app/) and the SMART App Launch endpoints (/auth/…, "
         "/fhir/.well-known/smart-configuration). Only the proxy's HTTPS port needs to be reachable "
         "from clinical workstations and the EHR. Federated training between hospitals runs separately "
         "(README, Deploying across hospitals) and is not part of this clinical service."),
        ("Tokens and SMART launch",
         f"The server accepts only {ALGORITHM} bearer tokens signed with the "
         f"workspace's key ({key}) and issued as '{ISSUER}': by fedprog token, or by "
         "its own SMART App Launch endpoints after the EHR registered a launch "
         f"(fedprog launch; a launch is usable once within {LAUNCH_TTL} s, the "
         f"authorization code for {CODE_TTL} s). A token lives at most "
         f"{MAX_TTL_SECONDS // 3600} h; fedprog token revoke ends it at the next "
         f"request ({deny}). Tokens of the hospital's own authorization server are "
         "not accepted. Protect the key as a secret: whoever holds it can issue "
         "tokens."),
        ("Time",
         "The server's clock decides: the day of the assessment when a request gives no asOf (UTC date), "
         "and so the age of each result against the model's maximum; the expiry of tokens (tolerating "
         f"{leeway()} s of skew); launch and code lifetimes; the deadlines of consent revocation windows. "
         "A request whose asOf is more than one day after the server's date is refused. Keep the server "
         "synchronised with the hospital's time source (NTP); a clock off by more than the tolerance "
         "refuses valid tokens or accepts expired ones."),
        ("Backups",
         "Everything the device keeps is under its workspace folder: "
         + "; ".join(f"{name} ({what})" for name, what in STORES.items()) + "; models/ (artifacts), "
         "validation/ (reports), sites/ (consent registries), keys/ (signing keys and revoked tokens). "
         "Back up the whole folder, stopped or with "
         "SQLite's online backup, on the hospital's schedule; the backup holds private keys and "
         "pseudonymous commitments and is protected accordingly. After a restore, run fedprog ledger "
         "verify before serving."),
        ("What the device does not do",
         "It does not terminate TLS, authenticate users (the EHR does, before "
         "it registers a launch), synchronise its clock, back itself up, query "
         "the EHR (CDS Hooks uses the prefetch only) or run redundantly: a "
         "hospital that needs high availability runs it behind its own "
         "infrastructure."),
    ]
    return [*section("8 For IT operators: the IT environment"),
            para("This section is for the hospital's IT staff who install and run the server (EU MDR Annex I "
                 "§17.4: the minimum IT requirements and security measures). The hospital provides:"),
            *[para(f"<b>{esc(title)}.</b> {esc(text)}") for title, text in items]]
