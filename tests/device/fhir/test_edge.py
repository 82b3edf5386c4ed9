"""The edge of the server on a real socket (uvicorn on loopback, in this process): body limits
enforced while the body streams (issue 16 M2), a client that leaves mid-body (a client abort, not
a 500), CPU work off the event loop (H1's stall), security headers and no CDN docs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from device.fhir import service
from device.fhir.app import create_app
from device.fhir.edge import FORM_LIMIT
from device.fhir.examples import parameters
from device.fhir.http import MAX_BODY
from device.fhir.smart import LaunchStore, smart_router
from device.model import PrognosticModel

from .conftest import DEMO_VALUES, patient_bundle, server_state
from .loopback import loopback, raw_request
from .test_app import bearer

AUD = "http://127.0.0.1/fhir"


@pytest.fixture
def live(tmp_path: Path, demo_model: PrognosticModel) -> Iterator[tuple[str, int, Any, Any]]:
    """``(origin, port, signing key, ServerState)`` of a real server with the SMART router."""
    st, key = server_state(tmp_path, demo_model, audience=AUD)
    smart = smart_router(AUD, key, LaunchStore(tmp_path / "launch.sqlite"))
    with loopback(create_app(st, routers=[smart])) as (origin, port):
        yield origin, port, key, st


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def body_of(answer: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(answer.partition(b"\r\n\r\n")[2])
    return parsed


def audit_events(st: Any) -> list[dict[str, Any]]:
    return st.store.search("AuditEvent", None, 1000)[1]


def head(path: str, length: int | None, ctype: str, auth: str | None = None, chunked: bool = False) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {ctype}"]
    lines += [f"Content-Length: {length}"] if length is not None else []
    lines += ["Transfer-Encoding: chunked"] if chunked else []
    lines += [f"Authorization: {auth}"] if auth else []
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ------------------------------------------------------------------------ M2: body limits
@pytest.mark.req("SRS-FHIR-008")
def test_a_token_request_declaring_400_mb_is_refused_before_it_is_read(live: Any) -> None:
    """Before: /auth/token read any body, unauthenticated (400 MB took the server to 1.9 GB RSS)."""
    _, port, _, st = live
    started = time.perf_counter()
    answer = raw_request(port, head("/auth/token", 400 * 1024 * 1024, "application/x-www-form-urlencoded"),
                         b"grant_type=authorization_code&code=")
    assert time.perf_counter() - started < 1.0
    assert status_of(answer) == 413
    issue = body_of(answer)["issue"][0]
    assert issue["code"] == "too-costly" and f"limit of {FORM_LIMIT} bytes" in issue["diagnostics"]
    assert any(e["outcomeDesc"].startswith("POST /auth/token -> 413") for e in audit_events(st))


@pytest.mark.req("SRS-FHIR-008")
def test_a_chunked_body_is_cut_off_at_the_limit_while_it_streams(live: Any) -> None:
    """No Content-Length: the limit holds while the chunks arrive (the route never sees the rest)."""
    _, port, _, _ = live
    chunk = b"a" * 8192
    frames = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\n\r\n"
    answer = raw_request(port, head("/auth/token", None, "application/x-www-form-urlencoded", chunked=True),
                         frames)
    assert status_of(answer) == 413


@pytest.mark.req("SRS-FHIR-008", "SRS-FHIR-004")
def test_scoring_routes_refuse_an_oversized_body_before_reading_it(live: Any) -> None:
    """Before: the authenticated routes read the whole body, then checked its size."""
    _, port, key, _ = live
    auth = bearer(key, audience=AUD)["Authorization"]
    for path in ("/fhir/Patient/$predict-risk", "/fhir"):
        answer = raw_request(port, head(path, MAX_BODY + 1, "application/fhir+json", auth), b"{")
        assert status_of(answer) == 413, answer[:300]
        assert body_of(answer)["resourceType"] == "OperationOutcome"
    # without a token the answer is 401 whatever the body (authorization comes before the body)
    small = raw_request(port, head("/fhir/Patient/$predict-risk", 10, "application/fhir+json"), b"{" * 10)
    assert status_of(small) == 401


@pytest.mark.req("SRS-FHIR-008", "SRS-AUDIT-001")
def test_a_client_leaving_mid_body_is_audited_as_a_client_abort(live: Any) -> None:
    """Before: audited as a 500 'serious failure'."""
    _, port, key, st = live
    auth = bearer(key, audience=AUD)["Authorization"]
    raw_request(port, head("/fhir/Patient/$predict-risk", 100_000, "application/fhir+json", auth),
                b'{"resourceType": "Parameters", ', close_after=True)
    deadline = time.monotonic() + 10
    while not (aborted := [e for e in audit_events(st) if "$predict-risk -> 499" in e["outcomeDesc"]]):
        assert time.monotonic() < deadline, [e["outcomeDesc"] for e in audit_events(st)]
        time.sleep(0.05)
    event = aborted[0]
    assert event["outcome"] == "4" and "client closed the connection" in event["outcomeDesc"]
    assert event["agent"][0]["who"]["display"] == "dr-who"
    assert not [e for e in audit_events(st) if e["outcome"] == "8"]


# ------------------------------------------------------------------------ off the event loop
@pytest.mark.req("SRS-FHIR-009")
def test_a_slow_scoring_does_not_stall_other_requests(live: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: single-patient scoring ran on the event loop (``km999999/m999998`` stalled every
    client for seconds). A scoring made to take 1.5 s must not delay a metadata request."""
    origin, _, key, _ = live
    real = service.assess

    def slow(*args: Any) -> Any:
        time.sleep(1.5)  # stands for any CPU-heavy input; holds its worker thread, not the loop
        return real(*args)

    monkeypatch.setattr(service, "assess", slow)
    body = parameters(patient_bundle(DEMO_VALUES))
    got: dict[str, Any] = {}

    def score() -> None:
        got["resp"] = httpx.post(f"{origin}/fhir/Patient/$predict-risk", json=body,
                                 headers=bearer(key, audience=AUD), timeout=30)

    worker = threading.Thread(target=score)
    worker.start()
    time.sleep(0.3)  # the scoring is under way
    started = time.perf_counter()
    meta = httpx.get(f"{origin}/fhir/metadata", timeout=30)
    waited = time.perf_counter() - started
    worker.join(30)
    assert meta.status_code == 200 and waited < 1.0, waited  # on the loop it would wait ≥ 1.2 s
    assert got["resp"].status_code == 200, got["resp"].text


@pytest.mark.req("SRS-FHIR-009", "SRS-DEV-008")
def test_the_unit_that_stalled_the_server_is_answered_at_once(live: Any) -> None:
    origin, _, key, _ = live
    body = parameters(patient_bundle({**DEMO_VALUES, "tsize": 2}, units={"tsize": "km999999/m999998"}))
    started = time.perf_counter()
    resp = httpx.post(f"{origin}/fhir/Patient/$predict-risk", json=body, headers=bearer(key, audience=AUD))
    assert resp.status_code == 422 and time.perf_counter() - started < 1.0


# ------------------------------------------------------------------------ headers and docs
@pytest.mark.req("SRS-FHIR-010")
def test_security_headers_and_no_cdn_docs(tmp_path: Path, demo_model: PrognosticModel) -> None:
    from device.fhir.page import mount_page, page_router

    st, _ = server_state(tmp_path, demo_model, audience=AUD)
    app = create_app(st, routers=[page_router()])
    mount_page(app)
    with loopback(app) as (origin, _):
        page = httpx.get(f"{origin}/app/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        api = httpx.get(f"{origin}/fhir/metadata")
        assert api.headers["content-security-policy"].startswith("default-src 'none'")
        assert api.headers["x-content-type-options"] == "nosniff"
        for docs in ("/docs", "/redoc"):
            gone = httpx.get(f"{origin}{docs}")
            assert gone.status_code == 404 and "cdn" not in gone.text.lower()
        assert httpx.get(f"{origin}/openapi.json").status_code == 200
        html = page.text.lower()
        assert "<script>" not in html and "style=" not in html and "http" not in html.split("<body")[0]
