"""``fedprog token``: issue a bearer token (ES256 JWT, SMART v2 scopes) for the FHIR server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from ._common import fail, user_errors, workspace

#: the same value as device.fhir.auth.DEFAULT_AUDIENCE (kept literal so --help stays import-free)
_DEFAULT_AUDIENCE = "http://127.0.0.1:8080/fhir"
_MANIFEST = "workspace.json"


def token(
    scope: Annotated[str, typer.Option(
        "--scope", help="Space-separated SMART scopes, e.g. "
                        "'user/RiskAssessment.c user/RiskAssessment.rs' (v1 .read/.write/.* accepted).")],
    workspace_dir: Annotated[Path | None, typer.Option("--workspace", help="Workspace folder.")] = None,
    subject: Annotated[str, typer.Option("--subject", help="Who the token is for (sub).")] = "clinician",
    patient: Annotated[str | None, typer.Option(
        "--patient", help="Launch-context patient id; required for patient/ scopes.")] = None,
    audience: Annotated[str, typer.Option(
        "--audience", help="Token audience (aud); must equal the FHIR server's base URL.",
    )] = _DEFAULT_AUDIENCE,
    ttl: Annotated[int, typer.Option("--ttl", help="Lifetime in seconds (1 to 30 days).")] = 3600,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print {token, expires_at, scope, audience} instead of the bare token.")] = False,
) -> None:
    """Issue a bearer token signed with the workspace's ES256 key (created on first use).

    Prints only the token, so ``TOKEN=$(fedprog token --scope ...)`` works.
    """
    import time

    from device.fhir.auth import issue_token, load_or_create_key, token_key_path

    root = workspace(workspace_dir)
    if not (root / _MANIFEST).is_file():
        raise fail(f"{root} is not a fedprog workspace (no {_MANIFEST}; run fedprog demo)")
    now = int(time.time())
    with user_errors():
        try:
            key = load_or_create_key(token_key_path(root))
            jwt_ = issue_token(key, scopes=scope, subject=subject, audience=audience,
                               ttl_seconds=ttl, patient=patient, now=now)
        except ValueError as exc:
            raise fail(str(exc)) from None
    if as_json:
        expires = datetime.fromtimestamp(now + ttl, UTC).isoformat().replace("+00:00", "Z")
        print(json.dumps({"token": jwt_, "expires_at": expires, "scope": " ".join(scope.split()),
                          "audience": audience}, sort_keys=True))
    else:
        print(jwt_)


def launch(
    patient: Annotated[str, typer.Option("--patient", help="The patient the EHR opens the page for.")],
    workspace_dir: Annotated[Path | None, typer.Option("--workspace", help="Workspace folder.")] = None,
    user: Annotated[str, typer.Option("--user", help="The signed-in clinician (the token's sub).")]
    = "clinician",
    base_url: Annotated[str, typer.Option(
        "--base-url", help="The FHIR server's base URL, as `fedprog serve` has it.")] = _DEFAULT_AUDIENCE,
    ttl: Annotated[int, typer.Option("--ttl", help="Seconds the launch may be used within (once).")] = 300,
) -> None:
    """Register an EHR launch of the risk page (SMART App Launch) and print the URL to open.

    What an EHR does when a clinician opens the app for a patient: the launch id stands for
    that patient and that user, once, for --ttl seconds.
    """
    from device.fhir.smart import LaunchStore, launch_url

    root = workspace(workspace_dir)
    if not (root / _MANIFEST).is_file():
        raise fail(f"{root} is not a fedprog workspace (no {_MANIFEST}; run fedprog demo)")
    if not 1 <= ttl <= 3600:
        raise fail(f"--ttl must be 1..3600 seconds, not {ttl}")
    with user_errors():
        store = LaunchStore(root / "launch.sqlite")
        try:
            launch_id = store.create(patient, user, ttl)
        except ValueError as exc:
            raise fail(str(exc)) from None
        finally:
            store.close()
    print(launch_url(base_url.rstrip("/"), launch_id))
