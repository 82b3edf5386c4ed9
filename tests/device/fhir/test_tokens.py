"""Tokens and who may score (issue 16, Low list): RFC 6750 challenges, NumericDate claims, the
8-hour maximum lifetime, the deny-list (``fedprog token revoke``), ``patient/RiskAssessment.c``
scoring its own patient, and a 503 that says why no model is served."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from device.fhir.app import create_app
from device.fhir.auth import ISSUER, MAX_TTL_SECONDS, TokenVerifier, issue_token, load_or_create_key
from device.fhir.cds import cds_router
from device.fhir.denylist import TokenDenyList, denylist_path
from device.fhir.errors import FhirError
from device.fhir.examples import parameters
from device.fhir.keys import token_key_path
from device.fhir.service import ReleasedModel
from device.model import PrognosticModel
from device.registry import RegistryError

from .conftest import DEMO_VALUES, patient_bundle, server_state
from .test_app import AUD, PREDICT, bearer, outcome
from .test_auth import cli
from .test_cds import hook


def signed(key: Any, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "s", "aud": AUD, "iat": now, "nbf": now, "exp": now + 600, "jti": "j1",
            "scope": "user/RiskAssessment.rs", **claims}
    return jwt.encode(body, key, algorithm="ES256")


@pytest.fixture
def app_key(tmp_path: Path, demo_model: PrognosticModel) -> tuple[TestClient, Any, TokenDenyList]:
    denied = TokenDenyList(tmp_path / "revoked.sqlite")
    st, key = server_state(tmp_path, demo_model, denylist=denied)
    return TestClient(create_app(st, routers=[cds_router()])), key, denied


# ------------------------------------------------------------------ RFC 6750 / RFC 7519
@pytest.mark.req("SRS-AUTH-004", "SRS-AUTH-001")
def test_401_and_403_carry_bearer_challenges(app_key: Any) -> None:
    """Before: no WWW-Authenticate on 401."""
    client, key, _ = app_key
    body = parameters(patient_bundle(DEMO_VALUES))
    none = client.post(PREDICT, json=body, headers={"Content-Type": "application/fhir+json"})
    outcome(none, 401)
    assert none.headers["www-authenticate"] == 'Bearer realm="fedprog"'
    bad = client.post(PREDICT, json=body, headers={"Authorization": "Bearer a.b.c",
                                                  "Content-Type": "application/fhir+json"})
    outcome(bad, 401)
    challenge = bad.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="fedprog", error="invalid_token", error_description="token')
    assert challenge.count('"') % 2 == 0 and "\n" not in challenge
    read_only = client.post(PREDICT, json=body, headers=bearer(key, "user/RiskAssessment.rs"))
    outcome(read_only, 403)
    assert read_only.headers["www-authenticate"] == \
        'Bearer realm="fedprog", error="insufficient_scope", scope="user/RiskAssessment.c"'


@pytest.mark.req("SRS-AUTH-004", "SRS-AUTH-001")
@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_a_numeric_string_time_claim_is_refused(tmp_path: Path, claim: str) -> None:
    """Before: ``"exp": "1700000000"`` was accepted (PyJWT converts it with int())."""
    key = load_or_create_key(tmp_path / "k.pem")
    verifier = TokenVerifier(key.public_key(), AUD)
    now = int(time.time())
    value = {"exp": now + 600, "iat": now, "nbf": now}[claim]
    verifier.verify(f"Bearer {signed(key, **{claim: value})}")  # a number passes
    with pytest.raises(FhirError) as info:
        verifier.verify(f"Bearer {signed(key, **{claim: str(value)})}")
    assert info.value.status == 401
    assert info.value.diagnostics == f"token {claim} claim is not a NumericDate (a JSON number, RFC 7519 §2)"
    assert "invalid_token" in info.value.headers["WWW-Authenticate"]


# ------------------------------------------------------------------ lifetime and revocation
@pytest.mark.req("SRS-AUTH-005")
def test_tokens_live_at_most_eight_hours(tmp_path: Path) -> None:
    """Before: a token could live 30 days."""
    key = load_or_create_key(tmp_path / "k.pem")
    assert MAX_TTL_SECONDS == 8 * 3600
    issue_token(key, scopes="user/RiskAssessment.rs", subject="s", audience=AUD, ttl_seconds=MAX_TTL_SECONDS)
    with pytest.raises(ValueError, match="lifetime"):
        issue_token(key, scopes="user/RiskAssessment.rs", subject="s", audience=AUD,
                    ttl_seconds=MAX_TTL_SECONDS + 1)
    verifier = TokenVerifier(key.public_key(), AUD)
    now = int(time.time())
    month = signed(key, iat=now, nbf=now, exp=now + 30 * 86400)  # as the old limit allowed
    with pytest.raises(FhirError) as info:
        verifier.verify(f"Bearer {month}")
    assert info.value.status == 401 and "lifetime exceeds the maximum of 8 h" in info.value.diagnostics
    with pytest.raises(FhirError, match="lacks the jti claim"):  # a token that could not be revoked
        verifier.verify(f"Bearer {signed(key, jti=None)}")


@pytest.mark.req("SRS-AUTH-005", "SRS-CLI-001")
def test_a_revoked_token_is_refused_from_the_next_request(tmp_path: Path,
                                                          demo_model: PrognosticModel) -> None:
    """Before: tokens could not be revoked. ``fedprog token --json`` names the jti;
    ``fedprog token revoke JTI`` denies it on every server of the workspace."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "workspace.json").write_text('{"study": "s", "origin": "o", "sites": {}}', encoding="utf-8")
    issued = CliRunner().invoke(cli(), ["token", "--workspace", str(ws), "--scope", "user/RiskAssessment.c",
                                        "--audience", AUD, "--json"])
    assert issued.exit_code == 0, issued.output
    out = json.loads(issued.stdout)
    key = load_or_create_key(token_key_path(ws))
    st, _ = server_state(tmp_path, demo_model)
    st.verifier = TokenVerifier(key.public_key(), AUD, denylist=TokenDenyList(denylist_path(ws)))
    client = TestClient(create_app(st))
    headers = {"Authorization": f"Bearer {out['token']}", "Content-Type": "application/fhir+json"}
    body = parameters(patient_bundle(DEMO_VALUES))
    assert client.post(PREDICT, json=body, headers=headers).status_code == 200
    revoked = CliRunner().invoke(cli(), ["token", "revoke", out["jti"], "--workspace", str(ws),
                                         "--reason", "laptop lost"])
    assert revoked.exit_code == 0, revoked.output
    assert f"token {out['jti']} revoked" in revoked.stdout
    refused = client.post(PREDICT, json=body, headers=headers)
    assert outcome(refused, 401)["issue"][0]["diagnostics"] == "token revoked (fedprog token revoke)"
    again = CliRunner().invoke(cli(), ["token", "revoke", out["jti"], "--workspace", str(ws)])
    assert again.exit_code == 0 and "already revoked" in again.stdout
    assert [r[0] for r in TokenDenyList(denylist_path(ws)).revoked()] == [out["jti"]]
    for bad in (["token", "revoke", "", "--workspace", str(ws)], ["token", "--workspace", str(ws)]):
        res = CliRunner().invoke(cli(), bad)
        assert res.exit_code == 2 and "fedprog: error:" in res.stderr


# ------------------------------------------------------------------ patient/RiskAssessment.c
@pytest.mark.req("SRS-AUTH-006", "SRS-AUTH-002")
def test_a_patient_scope_scores_its_own_patient_and_only_it(app_key: Any) -> None:
    """Before: patient/RiskAssessment.c could never score, and its 403 said the patient differs."""
    client, key, _ = app_key
    own = bearer(key, "patient/RiskAssessment.c", patient="p7")
    resp = client.post(PREDICT, json=parameters(patient_bundle(DEMO_VALUES, patient_id="p7")), headers=own)
    assert resp.status_code == 200, resp.text
    assert resp.json()["subject"] == {"reference": "Patient/p7"}
    other = client.post(PREDICT, json=parameters(patient_bundle(DEMO_VALUES, patient_id="p8")), headers=own)
    text = outcome(other, 403)["issue"][0]["diagnostics"]
    assert text == "token allows RiskAssessment.c only for its own patient (patient/ scope), and the " \
                   "Bundle's Patient is another"
    assert "p7" not in text and "p8" not in text
    many = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": parameters(patient_bundle(DEMO_VALUES, patient_id="p7")),
         "request": {"method": "POST", "url": "Patient/$predict-risk"}}]}
    assert "a batch needs user/ or system/RiskAssessment.c" in outcome(
        client.post("/fhir", json=many, headers=own), 403)["issue"][0]["diagnostics"]
    cds = {k: v for k, v in own.items() if k != "Content-Type"}
    url = "/cds-services/fedprog-risk"
    assert client.post(url, json=hook(DEMO_VALUES, patient_id="p7"), headers=cds).status_code == 200
    assert client.post(url, json=hook(DEMO_VALUES, patient_id="p8"), headers=cds).status_code == 403


# ------------------------------------------------------------------ 503 says why
@dataclass
class _Entry:
    ref: str
    model_id: str
    status: str
    lifecycle: str
    history: tuple[tuple[int, str], ...]
    retrain: Any = None


@dataclass
class _Registry:
    """A registry whose released model has left service (the registry itself is tested elsewhere)."""

    entries: list[_Entry]
    ledger: Any = field(default_factory=lambda: type("L", (), {"size": 7})())

    def note_revocations(self) -> list[Any]:
        return []

    def released(self, model_id: str | None = None) -> Any:
        raise RegistryError("no released model: release a validated model first (fedprog model release REF)")

    def list(self) -> list[_Entry]:
        return self.entries


@pytest.mark.req("SRS-FHIR-011")
@pytest.mark.parametrize(("status", "lifecycle", "says"), [
    ("withdrawn", "withdrawn", "m@1 was withdrawn and is no longer served"),
    ("affected", "released", "m@1 is affected by a consent revocation"),
])
def test_the_503_says_why_no_model_is_served(status: str, lifecycle: str, says: str) -> None:
    """Before: after a revocation or withdrawal the 503 said 'release a validated model first'."""
    entry = _Entry("m@1", "m", status, lifecycle, ((3, "validated"), (4, "released")))
    with pytest.raises(FhirError) as info:
        ReleasedModel(_Registry([entry])).current()  # type: ignore[arg-type]
    assert info.value.status == 503 and says in info.value.diagnostics
    assert "release a validated model first" not in info.value.diagnostics
    never = _Entry("m@1", "m", "validated", "validated", ((3, "validated"),))
    with pytest.raises(FhirError, match="release a validated model first"):
        ReleasedModel(_Registry([never])).current()  # type: ignore[arg-type]
