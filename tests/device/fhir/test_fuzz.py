"""Property-based fuzzing of the FHIR app (hypothesis, issue 16): units, dates, quantities, Bundle
shapes and Authorization headers. Every property sends :data:`EXAMPLES` requests through the real
ASGI app (audit trail and store included) and requires: no response of 500 or more, no batch entry
of 500 or more, and no request slower than :data:`MAX_SECONDS`, measured per request (a request
over it is measured once more: an input that stalls the server is slow twice, a moment of load on
a shared machine is not; such outliers are listed in the figures).

Figures (requests, slowest request, responses >= 500) are printed at the end of the module (run
with ``-s`` to see them). Example counts are modest for CI time; the deadline is off because the
latency bound is checked on each request itself, not on hypothesis' whole example.
"""

from __future__ import annotations

import base64
import json
import string
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.fhir.app import create_app
from device.fhir.auth import ISSUER
from device.fhir.examples import parameters
from device.model import PrognosticModel

from .conftest import DEMO_VALUES, patient_bundle, server_state
from .test_app import AUD, PREDICT, bearer

EXAMPLES = 200
#: the request of a batch entry that scores a patient
POST = {"method": "POST", "url": "Patient/$predict-risk"}
MAX_SECONDS = 1.0
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Stats:
    """Per property: requests sent, the slowest, and the answers >= 500 (must stay 0)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[float]] = {}
        self.server_errors = 0
        #: first measurements over the bound that were under it when repeated
        self.outliers: list[str] = []

    def add(self, name: str, seconds: float) -> None:
        self.rows.setdefault(name, []).append(seconds)

    def report(self) -> str:
        lines = [f"{n:<12} {len(v):>5} requests  slowest {max(v) * 1000:7.1f} ms"
                 for n, v in self.rows.items()]
        total = sum(len(v) for v in self.rows.values())
        slowest = max((max(v) for v in self.rows.values()), default=0.0)
        tail = f"total {total} requests, slowest {slowest * 1000:.1f} ms, >= 500: {self.server_errors}"
        return "\n".join(["fuzz figures:", *lines, tail, f"re-measured outliers: {self.outliers or 'none'}"])


STATS = Stats()


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory, integer_model: PrognosticModel
         ) -> Iterator[tuple[TestClient, Any]]:
    st_, key = server_state(tmp_path_factory.mktemp("fuzz"), integer_model)
    with TestClient(create_app(st_)) as client:
        yield client, key
    print("\n" + STATS.report())


def send(fuzz: tuple[TestClient, Any], name: str, body: Any, *, path: str = PREDICT,
         headers: dict[str, str] | None = None, raw: bytes | None = None) -> Any:
    """POST and check the invariants; returns the response."""
    client, key = fuzz
    content = raw if raw is not None else json.dumps(body, allow_nan=True).encode()

    def timed() -> tuple[Any, float]:
        started = time.perf_counter()
        resp = client.post(path, content=content, headers=headers if headers is not None else bearer(key))
        return resp, time.perf_counter() - started

    resp, took = timed()
    if took >= MAX_SECONDS:  # measured again: a slow input is slow twice, a busy machine not
        STATS.outliers.append(f"{name}: {took:.3f} s")
        resp, took = timed()
    STATS.add(name, took)
    entries = resp.json().get("entry", []) if resp.status_code == 200 else []
    bad = resp.status_code >= 500 or any(str(e.get("response", {}).get("status", "")).startswith("5")
                                         for e in entries)
    STATS.server_errors += bad
    assert not bad, resp.text[:2000]
    assert took < MAX_SECONDS, f"{took:.3f} s"
    return resp


# ------------------------------------------------------------------------- units
ATOMS = ["m", "g", "s", "mol", "L", "l", "[in_i]", "[ft_i]", "[lb_av]", "[oz_av]", "min", "h", "d", "wk", "a",
         "mo", "1", "%", "Cel", "[IU]", "10*3", "", "{x}"]
PREFIX = st.sampled_from(["", "f", "p", "n", "u", "m", "c", "d", "k", "M", "G"])
EXPONENT = st.one_of(st.just(""), st.integers(-12, 12).map(str), st.integers(-10**9, 10**9).map(str),
                     st.text("0123456789", min_size=1, max_size=6000), st.sampled_from(["+", "-", "٣", "²"]))
TERM = st.builds(lambda p, a, e: p + a + e, PREFIX, st.sampled_from(ATOMS), EXPONENT)
UNITS = st.one_of(
    st.lists(TERM, min_size=1, max_size=9).flatmap(
        lambda terms: st.sampled_from([".", "/"]).map(lambda sep: sep.join(terms))),
    st.text(string.ascii_letters + string.digits + "[]{}_./+-%*", max_size=120),
    st.text(max_size=40),
)


@pytest.mark.req("SRS-FHIR-007", "SRS-DEV-008")
@FUZZ
@given(unit=UNITS, value=st.one_of(st.integers(-10**6, 10**6), st.floats(-1e308, 1e308)))
def test_fuzz_units(fuzz: Any, unit: str, value: float) -> None:
    body = parameters(patient_bundle({**DEMO_VALUES, "tsize": value}, units={"tsize": unit}))
    send(fuzz, "units", body)


# ------------------------------------------------------------------------- dates
def _iso(y: int, mo: int, d: int, h: int, mi: int, s: int, frac: str, tz: str) -> str:
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}{tz}"


OFFSET = st.one_of(st.just("Z"), st.just(""), st.builds(lambda sign, h, m: f"{sign}{h:02d}:{m:02d}",
                                                         st.sampled_from("+-"), st.integers(0, 15),
                                                         st.integers(0, 59)))
DATES = st.one_of(
    st.builds(_iso, st.integers(0, 10000), st.integers(0, 13), st.integers(0, 32), st.integers(0, 24),
              st.integers(0, 60), st.integers(0, 61), st.sampled_from(["", ".5", ".999999999"]), OFFSET),
    st.sampled_from(["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "9999", "0001", "0000",
                     "9999-12", "0001-01", "2024-02-30", "2024-13", "10000-01-01"]),
    st.integers(0, 10000).map(str), st.text(max_size=30),
)
WHERE = st.sampled_from(["effectiveDateTime", "issued", "effectiveInstant", "period.start", "period.end",
                         "birthDate", "asOf.valueDate", "asOf.valueDateTime"])


def _dated(when: str, where: str) -> dict[str, Any]:
    values = {k: v for k, v in DEMO_VALUES.items() if k != "age" or where != "birthDate"}
    bundle = patient_bundle(values)
    obs = bundle["entry"][2]["resource"]
    if where == "birthDate":
        bundle["entry"][0]["resource"]["birthDate"] = when
    elif where.startswith("period."):
        del obs["effectiveDateTime"]
        obs["effectivePeriod"] = {where.split(".")[1]: when}
    elif not where.startswith("asOf"):
        del obs["effectiveDateTime"]
        obs[where] = when
    body = parameters(bundle)
    if where.startswith("asOf"):
        body["parameter"].append({"name": "asOf", where.split(".")[1]: when})
    return body


@pytest.mark.req("SRS-FHIR-007")
@FUZZ
@given(when=DATES, where=WHERE, batched=st.booleans())
def test_fuzz_dates(fuzz: Any, when: str, where: str, batched: bool) -> None:
    body = _dated(when, where)
    if batched:  # a good entry beside the fuzzed one: it must be scored whatever the other does
        good = parameters(patient_bundle(DEMO_VALUES, patient_id="ok"))
        body = {"resourceType": "Bundle", "type": "batch", "entry": [{"resource": r, "request": POST}
                                                                     for r in (good, body)]}
        resp = send(fuzz, "dates", body)
        assert resp.json()["entry"][0]["response"]["status"] == "200 OK"
    else:
        send(fuzz, "dates", body)


# ------------------------------------------------------------------------- quantities
NUMBERS = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.floats(-1e6, 1e6), st.sampled_from([2.5, 3.7, 1e-320, -0.0, 2**53 + 1]))
JSON_SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=20))


@pytest.mark.req("SRS-FHIR-007", "SRS-DEV-009")
@FUZZ
@given(name=st.sampled_from(sorted(DEMO_VALUES)), value=JSON_SCALARS,
       extra=st.dictionaries(st.sampled_from(["comparator", "system", "code", "unit", "extension", "id"]),
                             JSON_SCALARS, max_size=3),
       element=st.sampled_from(["valueQuantity", "valueInteger", "valueBoolean", "valueString",
                                "valueCodeableConcept"]))
def test_fuzz_quantities(fuzz: Any, name: str, value: Any, extra: dict[str, Any], element: str) -> None:
    bundle = patient_bundle(DEMO_VALUES)
    oid = f"p1-{name}".replace("_", "-")
    obs = next(e["resource"] for e in bundle["entry"][1:] if e["resource"]["id"] == oid)
    for key in [k for k in obs if k.startswith("value")]:
        del obs[key]
    obs[element] = {"value": value, **extra} if element == "valueQuantity" else value
    send(fuzz, "quantities", parameters(bundle))


# ------------------------------------------------------------------------- Bundle shapes
RESOURCE_TYPES = st.sampled_from(["Patient", "Observation", "Bundle", "Parameters", "Element", "Quantity",
                                  "DomainResource", "Resource", "OperationOutcome", "RiskAssessment", "",
                                  "patient", "Binary"])
JSON = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=20)
RESOURCE = st.one_of(JSON, st.builds(lambda t, rest: {**rest, "resourceType": t}, RESOURCE_TYPES,
                                     st.dictionaries(st.sampled_from(["id", "status", "code", "subject",
                                                                      "entry", "type", "parameter",
                                                                      "valueQuantity", "birthDate"]), JSON,
                                                     max_size=4)))
ENTRY = st.one_of(JSON, st.fixed_dictionaries({"resource": RESOURCE}, optional={
    "fullUrl": JSON, "request": st.one_of(JSON, st.just(POST))}))
BUNDLE = st.builds(lambda t, entries, rest: {**rest, "resourceType": "Bundle", "type": t, "entry": entries},
                   st.sampled_from(["collection", "batch", "searchset", "document", "history", "nope", 7]),
                   st.one_of(st.lists(ENTRY, max_size=6), JSON),
                   st.dictionaries(st.sampled_from(["id", "total", "link", "meta"]), JSON, max_size=2))
SHAPES = st.one_of(BUNDLE, BUNDLE.map(parameters), RESOURCE,
                   st.builds(lambda parts: {"resourceType": "Parameters", "parameter": parts},
                             st.one_of(JSON, st.lists(st.fixed_dictionaries(
                                 {"name": st.sampled_from(["patient", "asOf", "horizon", "x"])},
                                 optional={"resource": RESOURCE, "valueDate": JSON, "valueDecimal": NUMBERS}),
                                 max_size=4))))


@pytest.mark.req("SRS-FHIR-007", "SRS-FHIR-003")
@FUZZ
@given(body=SHAPES, path=st.sampled_from([PREDICT, "/fhir"]))
def test_fuzz_bundle_shapes(fuzz: Any, body: Any, path: str) -> None:
    send(fuzz, "bundles", body, path=path)


# ------------------------------------------------------------------------- token headers
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)
JWT_HEADERS = st.fixed_dictionaries({}, optional={"alg": st.sampled_from(["ES256", "none", "HS256", "RS256"]),
                                                  "typ": JSON_SCALARS, "kid": JSON_SCALARS, "crit": JSON})
CLAIMS = st.fixed_dictionaries(
    {"iss": st.one_of(st.just(ISSUER), JSON_SCALARS), "aud": st.one_of(st.just(AUD), JSON),
     "scope": st.one_of(st.sampled_from(["user/RiskAssessment.c", "patient/RiskAssessment.c",
                                         "user/*.*", "system/RiskAssessment.cruds"]), JSON_SCALARS)},
    optional={"exp": st.one_of(NUMBERS.filter(lambda x: x == x), st.integers(0, 2**40).map(str)),
              "iat": JSON_SCALARS, "nbf": JSON_SCALARS, "sub": JSON_SCALARS, "jti": JSON_SCALARS,
              "patient": JSON_SCALARS})


@st.composite
def authorizations(draw: st.DrawFn, key: Any) -> str:
    kind = draw(st.sampled_from(["text", "forged", "signed"]))
    if kind == "text":
        return draw(HEADER_TEXT)
    if kind == "forged":
        head = _b64(json.dumps(draw(JWT_HEADERS)).encode())
        body = _b64(json.dumps(draw(JSON)).encode())
        scheme = draw(st.sampled_from(["Bearer", "bearer", "Basic", "Bearer  "]))
        return f"{scheme} {head}.{body}.{draw(HEADER_TEXT)}"
    claims = draw(CLAIMS)
    try:
        token = jwt.encode(claims, key, algorithm="ES256")
    except (TypeError, ValueError, OverflowError):  # PyJWT refuses a few claim values itself
        token = "x.y.z"
    return f"Bearer {token}"


@pytest.mark.req("SRS-FHIR-007", "SRS-AUTH-001", "SRS-AUTH-004")
@FUZZ
@given(data=st.data())
def test_fuzz_token_headers(fuzz: Any, data: st.DataObject) -> None:
    _, key = fuzz
    auth = data.draw(authorizations(key))
    headers = {"Content-Type": "application/fhir+json", "Authorization": auth}
    resp = send(fuzz, "tokens", parameters(patient_bundle(DEMO_VALUES)), headers=headers)
    if resp.status_code == 401:
        assert resp.headers["www-authenticate"].startswith('Bearer realm="fedprog"')
