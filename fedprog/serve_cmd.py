"""``fedprog serve``: the device's FHIR R4 server over a workspace (FastAPI on uvicorn)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._common import fail, user_errors, workspace

if TYPE_CHECKING:
    from fastapi import FastAPI

_MANIFEST = "workspace.json"


def build_app(root: Path, *, base_url: str, model_id: str | None = None, batch_workers: int = 0) -> FastAPI:
    """The server over workspace ``root``: the released model, the workspace's token key and
    deny-list of revoked tokens, its
    FHIR store (``fhir.sqlite``: RiskAssessments and AuditEvents), the sites' consent registries,
    CDS Hooks. ``base_url`` is the FHIR base and the audience tokens must name; ``batch_workers``
    scoring processes share large batches (0: scored in the server process)."""
    from datetime import UTC, datetime
    from importlib.metadata import version

    from device.fhir.app import create_app
    from device.fhir.auth import TokenVerifier, load_or_create_key, token_key_path
    from device.fhir.cds import cds_router
    from device.fhir.consent_api import consent_router
    from device.fhir.denylist import TokenDenyList, denylist_path
    from device.fhir.http import ServerState
    from device.fhir.ledger_guard import GuardedReleasedModel
    from device.fhir.page import mount_page, page_router
    from device.fhir.smart import LaunchStore, smart_router
    from device.fhir.store import FhirStore

    from .fhir_consent import WorkspaceConsent
    from .workspace import Workspace

    ws = Workspace(root)
    key = load_or_create_key(token_key_path(root))
    base = base_url.rstrip("/")
    verifier = TokenVerifier(key.public_key(), base, denylist=TokenDenyList(denylist_path(root)))
    st = ServerState(base_url=base, verifier=verifier,
                     store=FhirStore(root / "fhir.sqlite"), models=GuardedReleasedModel(ws.models, model_id),
                     software_version=version("fedprog"),
                     started=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                     consent=WorkspaceConsent(ws))
    smart = smart_router(base, key, LaunchStore(root / "launch.sqlite"))
    app = create_app(st, routers=[cds_router(), consent_router(), smart, page_router()],
                     batch_workers=batch_workers)
    mount_page(app)
    return app


_ENV = ("FEDPROG_SERVE_WORKSPACE", "FEDPROG_SERVE_BASE_URL", "FEDPROG_SERVE_MODEL",
        "FEDPROG_SERVE_BATCH_WORKERS")


def app_from_env() -> FastAPI:
    """The app for each uvicorn worker process (``--workers`` > 1 needs a factory to import)."""
    import gc
    import os

    root, base, model, batch = (os.environ.get(k) for k in _ENV)
    if not root or not base:
        raise RuntimeError("app_from_env needs FEDPROG_SERVE_WORKSPACE and FEDPROG_SERVE_BASE_URL")
    app = build_app(Path(root), base_url=base, model_id=model or None, batch_workers=int(batch or 0))
    gc.freeze()  # as in serve: the app's long-lived objects stay out of every collection
    return app


def serve(
    workspace_dir: Annotated[Path | None, typer.Option("--workspace", help="Workspace folder.")] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.", min=1, max=65535)] = 8080,
    base_url: Annotated[str | None, typer.Option(
        "--base-url", help="Public FHIR base URL (token audience); default http://HOST:PORT/fhir.")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="Serve this model id (default: the newest released model).")] = None,
    workers: Annotated[int, typer.Option(
        "--workers", help="Worker processes (each scores on its own core).", min=1, max=64)] = 1,
    batch_workers: Annotated[int | None, typer.Option(
        "--batch-workers", help="Scoring processes sharing a large batch Bundle, per worker process "
        "(default: the number of CPUs; 0: score batches in the worker process).", min=0, max=64)] = None,
) -> None:
    """Serve FHIR $predict-risk, RiskAssessment, AuditEvent, Consent and CDS Hooks.

    Only a released model that no consent revocation affects is served; a withdrawal or
    revocation takes effect on the next request.
    """
    import gc
    import os

    import uvicorn

    root = workspace(workspace_dir)
    if not (root / _MANIFEST).is_file():
        raise fail(f"{root} is not a fedprog workspace (no {_MANIFEST}; run fedprog demo)")
    base = base_url or f"http://{host}:{port}/fhir"
    batch = (os.cpu_count() or 1) if batch_workers is None else batch_workers
    # with several worker processes each builds its own app (and scoring pool) from the environment
    with user_errors():  # e.g. a damaged ledger file: one line, exit 2
        app = build_app(root, base_url=base, model_id=model, batch_workers=batch if workers == 1 else 0)
    try:
        current = app.state.fedprog.models.current()
        print(f"fedprog: serving {current.ref} (sha256 {current.sha256[:16]}…) at {base}")
    except Exception as exc:  # the server still starts and answers 503 until a release
        print(f"fedprog: warning: {exc}")
    print(f"fedprog: CDS Hooks discovery at {base.removesuffix('/fhir')}/cds-services; "
          f"tokens: fedprog token --workspace {root} --audience {base} --scope ...")
    if workers == 1:
        gc.freeze()  # the app's long-lived objects (models, validators) stay out of every collection
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
        return
    os.environ.update(dict(zip(_ENV, (str(root), base, model or "", str(batch)), strict=True)))
    uvicorn.run("fedprog.serve_cmd:app_from_env", factory=True, workers=workers, host=host, port=port,
                log_level="warning", access_log=False)
