"""SMART App Launch for the risk page: discovery, JWKS, the EHR launch with PKCE, one-time codes
and launches, redirect and scope checks (SMART App Launch 2.2; RFC 6749 §4.1; RFC 7636)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.testclient import TestClient

from device.fhir.auth import TokenVerifier, load_or_create_key
from device.fhir.smart import CLIENT_ID, LaunchStore, granted_scope, launch_url, s256, smart_router

BASE = "http://test/fhir"
REDIRECT = "http://test/app/"
VERIFIER = "v" * 64

pytestmark = pytest.mark.req("SRS-PAGE-002")


@pytest.fixture
def key(tmp_path: Path) -> ec.EllipticCurvePrivateKey:
    return load_or_create_key(tmp_path / "token.pem")


@pytest.fixture
def launches(tmp_path: Path) -> Iterator[LaunchStore]:
    store = LaunchStore(tmp_path / "launch.sqlite")
    yield store
    store.close()


@pytest.fixture
def client(key: ec.EllipticCurvePrivateKey, launches: LaunchStore) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(smart_router(BASE, key, launches))
    with TestClient(app, base_url="http://test", follow_redirects=False) as c:
        yield c


def authorize(client: TestClient, launch: str, **override: str) -> dict[str, list[str]]:
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT, "launch": launch,
              "scope": "launch user/RiskAssessment.cr", "state": "st-1", "aud": BASE,
              "code_challenge": s256(VERIFIER), "code_challenge_method": "S256", **override}
    res = client.get("/auth/authorize", params=params)
    assert res.status_code == 302, res.text
    target = urlsplit(res.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == REDIRECT
    return parse_qs(target.query)


def exchange(client: TestClient, code: str, verifier: str = VERIFIER, **override: str) -> tuple[int, dict]:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": verifier, "client_id": CLIENT_ID, **override}
    res = client.post("/auth/token", data=form)
    return res.status_code, res.json()


def test_discovery_names_the_endpoints_pkce_and_the_key(client: TestClient,
                                                       key: ec.EllipticCurvePrivateKey) -> None:
    conf = client.get("/fhir/.well-known/smart-configuration").json()
    assert conf["authorization_endpoint"] == "http://test/auth/authorize"
    assert conf["token_endpoint"] == "http://test/auth/token"
    assert conf["code_challenge_methods_supported"] == ["S256"]
    wanted = {"launch-ehr", "client-public", "context-ehr-patient", "permission-v2"}
    assert wanted <= set(conf["capabilities"])
    (jwk,) = client.get("/fhir/.well-known/jwks.json").json()["keys"]
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256" and jwk["alg"] == "ES256" and "d" not in jwk
    public = jwt.PyJWK(jwk).key
    assert public.public_numbers() == key.public_key().public_numbers()


def test_an_ehr_launch_yields_a_token_for_the_launch_patient(client: TestClient, launches: LaunchStore,
                                                             key: ec.EllipticCurvePrivateKey) -> None:
    launch = launches.create("pat-7", "dr-who")
    assert launch_url(BASE, launch) == f"http://test/app/?launch={launch}&iss=http%3A%2F%2Ftest%2Ffhir"
    back = authorize(client, launch)
    assert back["state"] == ["st-1"] and "code" in back
    status, body = exchange(client, back["code"][0])
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["patient"] == "pat-7"
    assert body["scope"] == "launch user/RiskAssessment.cr"
    principal = TokenVerifier(key.public_key(), BASE).verify(f"Bearer {body['access_token']}")
    assert principal.subject == "dr-who" and principal.patient == "pat-7"
    assert principal.allows("RiskAssessment", "c") and not principal.allows("AuditEvent", "s")


def test_codes_and_launches_work_once_and_pkce_must_match(client: TestClient, launches: LaunchStore) -> None:
    launch = launches.create("pat-1", "dr")
    code = authorize(client, launch)["code"][0]
    assert exchange(client, code, verifier="w" * 64) == (400, {
        "error": "invalid_grant", "error_description": "redirect_uri or code_verifier does not match"})
    assert exchange(client, code)[1]["error"] == "invalid_grant"  # a code is spent even by a failed try
    again = authorize(client, launch)  # the launch was consumed by the first authorize
    assert again["error"] == ["access_denied"] and "code" not in again
    fresh = authorize(client, launches.create("pat-1", "dr"))["code"][0]
    assert exchange(client, fresh)[0] == 200
    assert exchange(client, fresh)[1]["error"] == "invalid_grant"


def test_expired_launch_and_bad_requests_are_refused(client: TestClient, launches: LaunchStore) -> None:
    expired = launches.create("pat-1", "dr", ttl=-1)
    assert authorize(client, expired)["error"] == ["access_denied"]
    ok = launches.create("pat-1", "dr")
    assert authorize(client, ok, code_challenge_method="plain")["error"] == ["invalid_request"]
    assert authorize(client, ok, aud="http://elsewhere/fhir")["error"] == ["invalid_request"]
    wrong = authorize(client, ok, scope="launch system/*.cruds patient/Consent.r")
    assert wrong["error"] == ["invalid_scope"]
    # an unknown redirect URI is never redirected to (RFC 6749 §4.1.2.1)
    res = client.get("/auth/authorize", params={"client_id": CLIENT_ID, "redirect_uri": "http://evil/app/",
                                                "launch": ok, "state": "s"})
    assert res.status_code == 400 and res.json()["error"] == "invalid_request"
    status, body = exchange(client, "nope", client_id="someone-else")
    assert status == 401 and body["error"] == "invalid_client"
    assert exchange(client, "nope", grant_type="password")[1]["error"] == "unsupported_grant_type"


def test_only_user_risk_assessment_and_context_scopes_are_granted() -> None:
    assert granted_scope("launch openid fhirUser user/RiskAssessment.cr user/RiskAssessment.read") == \
        "launch openid fhirUser user/RiskAssessment.cr user/RiskAssessment.read"
    assert granted_scope("system/RiskAssessment.c user/*.cruds user/RiskAssessment.d user/AuditEvent.rs "
                         "patient/RiskAssessment.r bogus") == ""
