"""Pure ASGI middleware at the edge of every route: request-body limits enforced while the body
streams, before anything parses it, and the security headers of every response.

- Body limits (RFC 9110 §15.5.14, 413 Content Too Large): a declared ``Content-Length`` over the
  route's limit is answered at once, without reading the body; a body that streams past the limit
  (chunked, or lying about its length) stops being read at the first chunk over it. Either way
  the answer is a 413 OperationOutcome, and at most ``limit`` bytes (plus one chunk) were held.
  ``/auth/token`` (an OAuth form, RFC 6749 §4.1.3: a few hundred bytes, no token needed) gets
  :data:`FORM_LIMIT`; every other route :data:`MAX_BODY`.
- Security headers: ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer`` on
  every response; on the risk page (``/app/``) a Content-Security-Policy that allows only its own
  origin (no inline script or style, no CDN) with ``frame-ancestors 'none'`` and
  ``X-Frame-Options: DENY`` (clickjacking); every API response ``default-src 'none'``
  (OWASP Secure Headers; CSP Level 3).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import FhirError
from .http import MAX_BODY, FhirResponse

#: the largest ``/auth/token`` form (grant type, code, redirect URI, PKCE verifier, client id)
FORM_LIMIT = 16 * 1024
#: body limit by path prefix (first match wins), else :data:`MAX_BODY`
LIMITS: tuple[tuple[str, int], ...] = (("/auth/", FORM_LIMIT),)

PAGE_PREFIX = "/app"
#: the risk page's policy: its own scripts, styles and API only; never framed
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")
#: every other response is data, never a document to render
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
PAGE_HEADERS = {**COMMON_HEADERS, "Content-Security-Policy": PAGE_CSP, "X-Frame-Options": "DENY"}
API_HEADERS = {**COMMON_HEADERS, "Content-Security-Policy": API_CSP}


class BodyTooLarge(FhirError):
    """413: the request body is (or declares itself) larger than the route accepts."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        size = f"of {declared} bytes " if declared is not None else ""
        super().__init__(413, "too-costly", f"request body {size}exceeds the limit of {limit} bytes "
                         "for this route; it was not read")


def body_limit(path: str, limits: Iterable[tuple[str, int]] = LIMITS, default: int = MAX_BODY) -> int:
    """The largest body accepted on ``path``."""
    return next((n for prefix, n in limits if path.startswith(prefix)), default)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimitMiddleware:
    """Refuse a body over the route's limit before reading it (``Content-Length``) or while it
    streams (each ``http.request`` chunk counted); the route's own ``request.body()`` then raises
    :class:`BodyTooLarge`, which the app renders as a 413 OperationOutcome."""

    def __init__(self, app: ASGIApp, limits: tuple[tuple[str, int], ...] = LIMITS,
                 default: int = MAX_BODY) -> None:
        self.app, self.limits, self.default = app, limits, default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"], self.limits, self.default)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            refusal = BodyTooLarge(limit, declared)
            await FhirResponse(refusal.outcome(), status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)


class SecurityHeadersMiddleware:
    """Add :data:`PAGE_HEADERS` to the page's responses and :data:`API_HEADERS` to all others
    (headers a route set itself are kept)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        extra = PAGE_HEADERS if path == PAGE_PREFIX or path.startswith(PAGE_PREFIX + "/") else API_HEADERS

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)

