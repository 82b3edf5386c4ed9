"""``fedprog token``: issue a bearer token (ES256 JWT, SMART v2 scopes) for the FHIR server, and
``fedprog token revoke JTI``: put a token on the workspace's deny-list."""

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


app = typer.Typer(
    help="Issue a bearer token for the FHIR server (fedprog token --scope ...), or revoke one "
         "(fedprog token revoke JTI).",
    invoke_without_command=True, no_args_is_help=False, add_completion=False)


@app.callback()
def token(
    ctx: typer.Context,
    scope: Annotated[str | None, typer.Option(
        "--scope", help="Space-separated SMART scopes, e.g. "
                        "'user/RiskAssessment.c user/RiskAssessment.rs' (v1 .read/.write/.* accepted).",
    )] = None,
    workspace_dir: Annotated[Path | None, typer.Option("--workspace", help="Workspace folder.")] = None,
    subject: Annotated[str, typer.Option("--subject", help="Who the token is for (sub).")] = "clinician",
    patient: Annotated[str | None, typer.Option(
        "--patient", help="Launch-context patient id; required for patient/ scopes.")] = None,
    audience: Annotated[str, typer.Option(
        "--audience", help="Token audience (aud); must equal the FHIR server's base URL.",
    )] = _DEFAULT_AUDIENCE,
    ttl: Annotated[int, typer.Option("--ttl", help="Lifetime in seconds (1 s to 8 h).")] = 3600,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print {token, jti, expires_at, scope, audience} instead of the bare token.")] = False,
) -> None:
    """Issue a bearer token signed with the workspace's ES256 key (created on first use).

    Prints only the token, so ``TOKEN=$(fedprog token --scope ...)`` works. A token lives at most
    8 hours; ``fedprog token revoke JTI`` ends it earlier (its id is in ``--json``).
    """
    if ctx.invoked_subcommand is not None:
        return
    if scope is None:
        raise fail("--scope is required to issue a token (or: fedprog token revoke JTI)")
    import time

    import jwt as pyjwt

    from device.fhir.auth import issue_token, load_or_create_key, token_key_path

    root = _workspace_root(workspace_dir)
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
        jti = pyjwt.decode(jwt_, options={"verify_signature": False})["jti"]
        print(json.dumps({"token": jwt_, "jti": jti, "expires_at": expires, "scope": " ".join(scope.split()),
                          "audience": audience}, sort_keys=True))
    else:
        print(jwt_)


@app.command("revoke")
def revoke(
    jti: Annotated[str, typer.Argument(help="The token's id (jti), as `fedprog token --json` prints it.")],
    workspace_dir: Annotated[Path | None, typer.Option("--workspace", help="Workspace folder.")] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the revocation).")] = "",
) -> None:
    """Revoke a token: every server on the workspace refuses it (401) from its next request.

    The id is kept in ``<workspace>/keys/revoked-tokens.sqlite``; revoking it twice is harmless.
    """
    from device.fhir.denylist import TokenDenyList, denylist_path

    root = _workspace_root(workspace_dir)
    with user_errors():
        denied = TokenDenyList(denylist_path(root))
        try:
            new = denied.revoke(jti, reason)
        except ValueError as exc:
            raise fail(str(exc)) from None
        finally:
            denied.close()
    print(f"fedprog: token {jti} {'revoked' if new else 'was already revoked'}; servers on {root} refuse it "
          "from their next request")


def _workspace_root(workspace_dir: Path | None) -> Path:
    root = workspace(workspace_dir)
    if not (root / _MANIFEST).is_file():
        raise fail(f"{root} is not a fedprog workspace (no {_MANIFEST}; run fedprog demo)")
    return root


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

    root = _workspace_root(workspace_dir)
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
