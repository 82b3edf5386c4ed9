"""SMART App Launch for the risk page: discovery, launch contexts, authorize and token endpoints.

The flow (SMART App Launch 2.2, "EHR launch"; RFC 6749 §4.1 authorization code; RFC 7636 PKCE):

1. the EHR registers a launch context — a patient and the signed-in user — for a few minutes
   (``fedprog launch``; :meth:`LaunchStore.create`) and opens ``/app/?launch=ID&iss=BASE``;
2. the page reads ``BASE/.well-known/smart-configuration``, sends the browser to
   ``/auth/authorize`` with the launch, its scopes, a ``state`` and an S256 code challenge;
3. the launch is consumed and a one-time code (60 s) redirected back to the page;
4. the page exchanges code and verifier at ``/auth/token`` for an ES256 access token
   (:func:`device.fhir.auth.issue_token`) bound to the server's base URL, with the launch's
   patient in the token response and claim.

What this server does not do: authenticate users (the EHR did, before it registered the
launch — a launch id is its one-time, short-lived assertion) or register clients (one public
client, the page itself, whose redirect URI is fixed to ``<origin>/app/``). In a hospital the
EHR's own authorization server can take this role; the FHIR server only verifies tokens.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from .auth import issue_token, parse_scope, public_jwk

CLIENT_ID = "fedprog-risk-page"
LAUNCH_TTL = 300
CODE_TTL = 60
TOKEN_TTL = 900
#: scopes the page may be granted: launch context, and creating/reading RiskAssessments as the user
GRANTABLE_RESOURCE = ("RiskAssessment", frozenset("crs"))
CONTEXT_SCOPES = frozenset({"launch", "openid", "fhirUser"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS launches (id TEXT PRIMARY KEY, patient TEXT NOT NULL, user TEXT NOT NULL,
                                     expires REAL NOT NULL, used INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS codes (code TEXT PRIMARY KEY, patient TEXT NOT NULL, user TEXT NOT NULL,
                                  challenge TEXT NOT NULL, redirect TEXT NOT NULL, scope TEXT NOT NULL,
                                  expires REAL NOT NULL, used INTEGER NOT NULL DEFAULT 0);
"""


@dataclass(frozen=True)
class Grant:
    """What a launch or a code stands for."""

    patient: str
    user: str
    scope: str = ""
    challenge: str = ""
    redirect: str = ""


class LaunchStore:
    """Launch contexts and authorization codes, each usable once and only until it expires.

    SQLite (``<workspace>/launch.sqlite``), so ``fedprog launch`` and every server worker
    process see the same launches and codes.
    """

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def create(self, patient: str, user: str, ttl: float = LAUNCH_TTL) -> str:
        """A new launch id for ``patient`` opened by ``user``."""
        if not patient or not user:
            raise ValueError("a launch needs a patient id and a user")
        launch = secrets.token_urlsafe(24)
        with self._lock:
            self._db.execute("INSERT INTO launches VALUES (?, ?, ?, ?, 0)",
                             (launch, patient, user, time.time() + ttl))
        return launch

    def take_launch(self, launch: str) -> Grant | None:
        row = self._take("launches", "id", launch, "patient, user")
        return None if row is None else Grant(patient=row[0], user=row[1])

    def add_code(self, grant: Grant) -> str:
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._db.execute("INSERT INTO codes VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                             (code, grant.patient, grant.user, grant.challenge, grant.redirect, grant.scope,
                              time.time() + CODE_TTL))
        return code

    def take_code(self, code: str) -> Grant | None:
        row = self._take("codes", "code", code, "patient, user, scope, challenge, redirect")
        return None if row is None else Grant(*row)

    def _take(self, table: str, key: str, value: str, columns: str) -> tuple[Any, ...] | None:
        """The row for ``value`` if unused and unexpired, marked used in the same transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(f"SELECT {columns}, expires, used FROM {table} WHERE {key} = ?",
                                       (value,)).fetchone()
                if row is None or row[-1] or row[-2] < time.time():
                    return None
                self._db.execute(f"UPDATE {table} SET used = 1 WHERE {key} = ?", (value,))
                return tuple(row[:-2])
            finally:
                self._db.execute("COMMIT")


def origin(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}"


def app_url(base_url: str) -> str:
    """The risk page, and the one redirect URI its client may use."""
    return f"{origin(base_url)}/app/"


def launch_url(base_url: str, launch: str) -> str:
    """What the EHR opens: the page with ``launch`` and ``iss`` (SMART App Launch, EHR launch)."""
    return f"{app_url(base_url)}?{urlencode({'launch': launch, 'iss': base_url})}"


def configuration(base_url: str) -> dict[str, Any]:
    """``.well-known/smart-configuration`` (SMART App Launch 2.2, Conformance)."""
    root = origin(base_url)
    return {
        "issuer": base_url, "jwks_uri": f"{base_url}/.well-known/jwks.json",
        "authorization_endpoint": f"{root}/auth/authorize", "token_endpoint": f"{root}/auth/token",
        "grant_types_supported": ["authorization_code"], "response_types_supported": ["code"],
        "token_endpoint_auth_methods_supported": ["none"], "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["launch", "openid", "fhirUser", "user/RiskAssessment.crs",
                             "user/RiskAssessment.cr", "user/RiskAssessment.rs"],
        "capabilities": ["launch-ehr", "client-public", "context-ehr-patient", "permission-user",
                         "permission-v2"],
    }


def granted_scope(requested: str) -> str:
    """The requested scopes this server grants (context scopes, and user RiskAssessment c/r/s)."""
    kind, interactions = GRANTABLE_RESOURCE
    out = []
    for word in requested.split():
        if word in CONTEXT_SCOPES:
            out.append(word)
            continue
        try:
            scope = parse_scope(word)
        except ValueError:
            continue
        if scope.context == "user" and scope.resource_type == kind and scope.interactions <= interactions:
            out.append(word)
    return " ".join(out)


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier`` (RFC 7636 §4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def authorize_error(query: Mapping[str, str], base_url: str) -> tuple[str, str] | None:
    """The RFC 6749 §4.1.2.1 ``(error, description)`` of an authorize request whose client and
    redirect URI are known, or None when it may proceed to the launch."""
    if query.get("response_type") != "code":
        return "unsupported_response_type", "response_type must be code"
    if query.get("aud") != base_url:
        return "invalid_request", f"aud must be this server, {base_url}"
    if query.get("code_challenge_method") != "S256" or len(query.get("code_challenge", "")) < 43:
        return "invalid_request", "PKCE with S256 is required"
    if not query.get("state"):
        return "invalid_request", "state is required"
    if not any("/" in s for s in granted_scope(query.get("scope", "")).split()):
        return "invalid_scope", "request user/RiskAssessment.cr"
    return None


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    """RFC 6749 §5.2 error response."""
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers={"Cache-Control": "no-store"})


def redeem(launches: LaunchStore, grant_type: str, code: str, redirect_uri: str, verifier: str,
           client_id: str) -> Grant | JSONResponse:
    """The grant behind a token request's code (spent now), or its RFC 6749 §5.2 error."""
    if grant_type != "authorization_code":
        return _oauth_error("unsupported_grant_type", "grant_type must be authorization_code")
    if client_id != CLIENT_ID:
        return _oauth_error("invalid_client", f"unknown client {client_id!r}", 401)
    grant = launches.take_code(code)
    if grant is None:
        return _oauth_error("invalid_grant", "unknown, used or expired code")
    if redirect_uri != grant.redirect or s256(verifier) != grant.challenge:
        return _oauth_error("invalid_grant", "redirect_uri or code_verifier does not match")
    return grant


def smart_router(base_url: str, key: ec.EllipticCurvePrivateKey, launches: LaunchStore) -> APIRouter:
    """Discovery (``/fhir/.well-known/…``), ``/auth/authorize`` and ``/auth/token``."""
    router = APIRouter(tags=["SMART App Launch"])
    redirect_uri = app_url(base_url)

    @router.get("/fhir/.well-known/smart-configuration")
    async def smart_configuration() -> JSONResponse:
        return JSONResponse(configuration(base_url))

    @router.get("/fhir/.well-known/jwks.json")
    async def jwks() -> JSONResponse:
        return JSONResponse({"keys": [{**public_jwk(key.public_key()), "use": "sig", "alg": "ES256"}]})

    @router.get("/auth/authorize")
    async def authorize(request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != CLIENT_ID or q.get("redirect_uri") != redirect_uri:
            # RFC 6749 §4.1.2.1: never redirect to an unverified URI
            return _oauth_error("invalid_request", "unknown client or redirect_uri "
                                f"(the client is {CLIENT_ID} at {redirect_uri})")

        def back(**params: str) -> RedirectResponse:
            return RedirectResponse(f"{redirect_uri}?{urlencode({**params, 'state': q.get('state', '')})}",
                                    status_code=302)

        refused = authorize_error(q, base_url)
        if refused is not None:
            return back(error=refused[0], error_description=refused[1])
        launch = launches.take_launch(q.get("launch", ""))
        if launch is None:
            return back(error="access_denied",
                        error_description="unknown, used or expired launch: open the page from the EHR again")
        scope = granted_scope(q.get("scope", ""))
        code = launches.add_code(Grant(launch.patient, launch.user, scope, q["code_challenge"], redirect_uri))
        return back(code=code)

    @router.post("/auth/token")
    async def token(request: Request) -> JSONResponse:
        # RFC 6749 §4.1.3: application/x-www-form-urlencoded (parsed here: no multipart dependency)
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        if ctype != "application/x-www-form-urlencoded":
            return _oauth_error("invalid_request", "send application/x-www-form-urlencoded")
        raw = await request.body()
        try:
            form = dict(parse_qsl(raw.decode("ascii"), keep_blank_values=True, strict_parsing=bool(raw),
                                  max_num_fields=10))
        except (UnicodeDecodeError, ValueError):
            return _oauth_error("invalid_request", "the form does not parse")
        grant = redeem(launches, *(form.get(k, "") for k in ("grant_type", "code", "redirect_uri",
                                                             "code_verifier", "client_id")))
        if isinstance(grant, JSONResponse):
            return grant
        access = issue_token(key, scopes=grant.scope, subject=grant.user, audience=base_url,
                             ttl_seconds=TOKEN_TTL, patient=grant.patient)
        return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": TOKEN_TTL,
                             "scope": grant.scope, "patient": grant.patient},
                            headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    return router
