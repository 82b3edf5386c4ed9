"""Issue 21's levers keep every guarantee: the compiled shapes accept only what fhir.resources (the
oracle) accepts and the server decides exactly as with the oracle alone; a remembered token is still
refused once revoked or expired; the RiskAssessment and AuditEvent are durable before the response."""

from __future__ import annotations

import asyncio
import copy
import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.riskassessment import RiskAssessment

from device.fhir import examples, inputs, service, shapes
from device.fhir.app import create_app
from device.fhir.auth import issue_token
from device.fhir.denylist import TokenDenyList
from device.fhir.errors import FhirError
from device.fhir.http import FHIR_JSON
from device.fhir.token_cache import VerifiedTokens
from device.model import PrognosticModel

from .conftest import server_state

AUD = "http://testserver/fhir"
#: values put in place of an element: each is refused by fhir.resources somewhere, or not
ODD: list[Any] = [None, "", [], {}, 0, 1.5, True, "x y", " a", "2024-13-01", "2024-02-30",
                  "2024-06-01T10:00:00", "urn:x", {"x": 1}, [None], [{}], "1.5", float("nan"), 10**400]


def corpus(model: PrognosticModel) -> list[dict[str, Any]]:
    """The $predict-risk requests the examples build: every value form, units, dates and statuses."""
    values = examples.typical_values(model)
    bundles = [examples.patient_bundle(model.inputs, values, patient_id="c0"),
               examples.patient_bundle(model.inputs, values, patient_id="c1", boolean_as="snomed",
                                       birth_date="1970-03-02", effective="2024-05-01T09:30:00+02:00"),
               examples.patient_bundle(model.inputs, values, patient_id="c2", effective=None, gender=None,
                                       bundle_type="searchset", status="amended"),
               examples.patient_bundle(model.inputs, values, patient_id="c3", effective="2024-05")]
    return [examples.demo_request(model), *(examples.parameters(b) for b in bundles)]


def variants(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """``resource`` with each element (to depth 3) replaced by each :data:`ODD` value, removed, or
    joined by an unknown element and a second value[x]."""
    out: list[dict[str, Any]] = [{**resource, "unknownElement": 1}, {**resource, "valueString": "x"},
                                 {**resource, "effectiveInstant": "2024-01-01T00:00:00Z"}]

    def walk(node: Any, path: list[Any]) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for key, child in list(items):
            if key == "resourceType" or len(path) > 3:
                continue
            for odd in ODD:
                out.append(_replaced(resource, [*path, key], odd))
            out.append(_replaced(resource, [*path, key], ...))
            walk(child, [*path, key])

    walk(resource, [])
    return out


def _replaced(resource: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    copied = copy.deepcopy(resource)
    node = copied
    for key in path[:-1]:
        node = node[key]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return copied


def oracle_accepts(resource: dict[str, Any]) -> bool:
    try:
        kind = resource.get("resourceType")
        (Bundle if kind == "Bundle" else get_fhir_model_class(kind)).model_validate(resource)
    except (ValueError, TypeError, KeyError):
        return False
    return True


@pytest.mark.req("SRS-FHIR-015")
def test_an_input_shape_accepts_only_what_fhir_resources_accepts_and_parses_it_alike(
        demo_model: PrognosticModel) -> None:
    checked = fast = 0
    for body in corpus(demo_model):
        bundle = body["parameter"][0]["resource"]
        shell = {**bundle, "entry": [{k: v for k, v in e.items() if k != "resource"}
                                     for e in bundle["entry"]]}
        for resource in [shell, *(e["resource"] for e in bundle["entry"])]:
            assert shapes.read(resource) is not None, resource  # the corpus takes the fast path
            for variant in [resource, *variants(resource)]:
                checked += 1
                shape = shapes.read(variant)
                if shape is None:
                    continue
                fast += 1
                assert oracle_accepts(variant), variant  # a shape never accepts what the oracle refuses
                if variant["resourceType"] == "Bundle":
                    continue
                full = get_fhir_model_class(variant["resourceType"]).model_validate(variant)
                for name in ("id", "birthDate", "effectiveDateTime", "effectiveInstant", "issued", "status"):
                    assert getattr(shape, name, None) == getattr(full, name, None), (name, variant)
    assert checked > 1000 and 0 < fast < checked  # both paths were exercised


def _decide(model: PrognosticModel, body: dict[str, Any]) -> tuple[Any, ...]:
    try:
        bundle, as_of = inputs.request_bundle(body)
        got = inputs.extract(model, bundle, as_of or date(2026, 6, 1))
    except FhirError as exc:
        return ("refused", exc.status, exc.outcome()["issue"][0]["diagnostics"])
    return ("scored", got.patient, tuple(got.values), got.sources, got.references)


@pytest.mark.req("SRS-FHIR-015")
def test_the_server_accepts_and_refuses_exactly_as_with_fhir_resources_alone(
        demo_model: PrognosticModel, monkeypatch: pytest.MonkeyPatch) -> None:
    bodies: list[dict[str, Any]] = []
    for body in corpus(demo_model):
        bodies.append(body)
        for k, entry in enumerate(body["parameter"][0]["resource"]["entry"][:3]):
            for variant in variants(entry["resource"])[::3]:
                changed = copy.deepcopy(body)
                changed["parameter"][0]["resource"]["entry"][k]["resource"] = variant
                bodies.append(changed)
    fast = [_decide(demo_model, b) for b in bodies]
    monkeypatch.setattr(shapes, "read", lambda resource: None)  # the oracle alone
    oracle = [_decide(demo_model, b) for b in bodies]
    assert fast == oracle
    assert {d[0] for d in fast} == {"scored", "refused"}


@pytest.mark.req("SRS-FHIR-015")
def test_the_risk_assessment_shape_fits_what_the_device_builds_and_refuses_what_the_oracle_refuses(
        demo_model: PrognosticModel) -> None:
    built = []
    for body in corpus(demo_model):
        try:
            built.append(service.assess(demo_model, body).resource)
        except FhirError:  # e.g. results older than the intended use allows, today
            continue
    assert len(built) >= 2
    for ra in built:
        assert shapes.fits_risk_assessment(ra)
        RiskAssessment.model_validate(ra)
        for variant in variants(ra):
            if shapes.fits_risk_assessment(variant):
                assert oracle_accepts(variant), variant
    two_values = copy.deepcopy(built[0])
    two_values["prediction"][0]["extension"][0]["valueString"] = "x"
    assert not oracle_accepts(two_values) and not shapes.fits_risk_assessment(two_values)
    nan = copy.deepcopy(built[0])
    nan["prediction"][0]["relativeRisk"] = float("nan")
    assert not shapes.fits_risk_assessment(nan)


# --------------------------------------------------------------------------- tokens
def _auth(key: Any, **kw: Any) -> str:
    return "Bearer " + issue_token(key, scopes="user/RiskAssessment.c", subject="dr-who", audience=AUD, **kw)


@pytest.mark.req("SRS-FHIR-016")
def test_a_remembered_token_is_refused_once_revoked(tmp_path: Path, demo_model: PrognosticModel) -> None:
    deny = TokenDenyList(tmp_path / "revoked.sqlite")
    st, key = server_state(tmp_path, demo_model, denylist=deny)
    header = _auth(key)
    first = st.verifier.verify(header)
    assert len(st.verifier.verified) == 1
    assert st.verifier.verify(header) == first  # remembered
    deny.revoke(first.token_id)
    with pytest.raises(FhirError) as exc:
        st.verifier.verify(header)
    assert exc.value.status == 401 and "revoked" in str(exc.value)


@pytest.mark.req("SRS-FHIR-016")
def test_a_token_failing_verification_is_never_remembered(tmp_path: Path,
                                                          demo_model: PrognosticModel) -> None:
    st, key = server_state(tmp_path, demo_model)
    good = _auth(key)
    st.verifier.verify(good)
    head, payload, signature = good.removeprefix("Bearer ").split(".")
    forged = f"Bearer {head}.{payload}.{signature[:-4]}AAAA"
    expired = _auth(key, now=1_700_000_000, ttl_seconds=3600)
    for bad in (forged, expired, _auth(key).replace("Bearer ", "Bearer x")):
        for _ in range(2):  # refused the second time too: nothing was remembered
            with pytest.raises(FhirError) as exc:
                st.verifier.verify(bad)
            assert exc.value.status == 401
    assert len(st.verifier.verified) == 1


@pytest.mark.req("SRS-FHIR-016")
def test_a_remembered_token_is_verified_in_full_again_once_expired(tmp_path: Path,
                                                                   demo_model: PrognosticModel) -> None:
    st, key = server_state(tmp_path, demo_model)
    header = _auth(key, ttl_seconds=600)
    principal = st.verifier.verify(header)
    token = header.removeprefix("Bearer ")
    import jwt

    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    now = [float(exp + st.verifier.leeway - 1)]
    st.verifier.verified.clock = lambda: now[0]
    assert st.verifier.verified.get(token) == principal  # within exp + leeway
    now[0] = exp + st.verifier.leeway  # PyJWT refuses from exp + leeway on
    assert st.verifier.verified.get(token) is None
    assert len(st.verifier.verified) == 0


@pytest.mark.req("SRS-FHIR-016")
def test_the_cache_is_bounded_and_drops_expired_entries_first(tmp_path: Path,
                                                             demo_model: PrognosticModel) -> None:
    st, key = server_state(tmp_path, demo_model)
    principal = st.verifier.verify(_auth(key))
    cache = VerifiedTokens(max_entries=3, clock=lambda: 100.0)
    cache.put("old", principal, until=50.0)  # already expired
    cache.put("a", principal, until=200.0)
    cache.put("b", principal, until=200.0)
    cache.put("c", principal, until=200.0)  # full: the expired one goes
    assert [cache.get(t) is not None for t in ("old", "a", "b", "c")] == [False, True, True, True]
    cache.put("d", principal, until=200.0)  # full, none expired: the oldest goes
    assert len(cache) == 3 and cache.get("a") is None and cache.get("d") == principal


# ---------------------------------------------------------------------- durability
def _stored(path: Path, type_: str, id_: str | None = None) -> int:
    db = sqlite3.connect(path)  # a connection of its own: sees only what was committed
    try:
        where, args = ("type = ? AND id = ?", (type_, id_)) if id_ else ("type = ?", (type_,))
        return int(db.execute(f"SELECT COUNT(*) FROM resources WHERE {where}", args).fetchone()[0])
    finally:
        db.close()


async def _call(app: Any, path: str, body: bytes, headers: dict[str, str],
                at_start: Any) -> tuple[int, dict[str, str], bytes]:
    """One request through the ASGI app; ``at_start(status, headers)`` runs when the response starts."""
    sent = False
    out: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
            at_start(out["status"], out["headers"])
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "server": ("testserver", 80), "client": ("127.0.0.1", 5000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    return out["status"], out["headers"], out["body"]


@pytest.mark.req("SRS-FHIR-017")
def test_the_risk_assessment_and_audit_event_are_durable_before_the_response_starts(
        tmp_path: Path, demo_model: PrognosticModel) -> None:
    import orjson

    st, key = server_state(tmp_path, demo_model)
    app = create_app(st)
    db = tmp_path / "fhir.sqlite"
    headers = {"Authorization": _auth(key), "Content-Type": FHIR_JSON, "Host": "testserver"}
    seen: list[tuple[int, int]] = []

    def single(status: int, h: dict[str, str]) -> None:
        ra_id = h["location"].rsplit("/", 1)[1]
        seen.append((_stored(db, "RiskAssessment", ra_id), _stored(db, "AuditEvent")))

    body = orjson.dumps(examples.demo_request(demo_model))
    status, _, _ = asyncio.run(_call(app, "/fhir/Patient/$predict-risk", body, headers, single))
    assert status == 200 and seen == [(1, 1)]

    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": examples.demo_request(demo_model, f"b{i}"),
         "request": {"method": "POST", "url": "Patient/$predict-risk"}} for i in range(5)]}
    counts: list[tuple[int, int]] = []
    status, _, out = asyncio.run(_call(app, "/fhir", orjson.dumps(batch), headers, lambda s, h: counts.append(
        (_stored(db, "RiskAssessment"), _stored(db, "AuditEvent")))))
    assert status == 200 and counts == [(6, 2)]
    assert len(orjson.loads(out)["entry"]) == 5
