"""Bearer tokens: ES256 JWTs (RFC 7519, RFC 7518 §3.4, RFC 8725) with SMART v2 scopes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import time
from pathlib import Path

import jwt
import pytest
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from typer.testing import CliRunner

from device.fhir.auth import (
    DEFAULT_AUDIENCE,
    ISSUER,
    Principal,
    Scope,
    TokenVerifier,
    issue_token,
    jwk_thumbprint,
    load_or_create_key,
    parse_scope,
    parse_scopes,
    public_jwk,
    token_key_path,
)
from device.fhir.errors import FhirError
from fedprog import token_cmd


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(obj: object) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def verifier(key: ec.EllipticCurvePrivateKey) -> TokenVerifier:
    return TokenVerifier(key.public_key(), DEFAULT_AUDIENCE)


def claims(**extra: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {"iss": ISSUER, "sub": "clinician", "aud": DEFAULT_AUDIENCE, "iat": now,
                               "nbf": now, "exp": now + 600, "jti": "ab", "scope": "user/RiskAssessment.rs"}
    base.update(extra)
    return base


def rejected(verifier: TokenVerifier, token: str) -> FhirError:
    with pytest.raises(FhirError) as info:
        verifier.verify(f"Bearer {token}")
    err = info.value
    assert err.status == 401 and err.code == "login"
    assert "\n" not in err.diagnostics and token not in err.diagnostics
    return err


# ---------------------------------------------------------------- round trip
@pytest.mark.req("SRS-AUTH-001")
def test_round_trip_gives_principal(key: ec.EllipticCurvePrivateKey, verifier: TokenVerifier) -> None:
    token = issue_token(key, scopes="openid patient/RiskAssessment.rs user/Observation.read",
                        subject="dr-who", patient="p-17")
    principal = verifier.verify(f"Bearer {token}")
    assert principal.subject == "dr-who"
    assert principal.patient == "p-17"
    assert principal.scopes == (Scope("patient", "RiskAssessment", frozenset("rs")),
                                Scope("user", "Observation", frozenset("rs")))
    assert len(principal.token_id) == 32
    assert verifier.verify(f"bEaReR   {token}") == principal  # scheme is case-insensitive


@pytest.mark.req("SRS-AUTH-001")
def test_claims_and_header(key: ec.EllipticCurvePrivateKey) -> None:
    token = issue_token(key, scopes="user/RiskAssessment.c", subject="s", now=1_700_000_000,
                        ttl_seconds=60, audience="https://x.example/fhir")
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "typ": "JWT", "kid": jwk_thumbprint(key.public_key())}
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["iss"] == "fedprog" and payload["aud"] == "https://x.example/fhir"
    assert payload["iat"] == payload["nbf"] == 1_700_000_000 and payload["exp"] == 1_700_000_060
    assert payload["scope"] == "user/RiskAssessment.c" and "patient" not in payload
    assert len(payload["jti"]) == 32 and int(payload["jti"], 16) >= 0
    two = jwt.decode(issue_token(key, scopes="user/RiskAssessment.c", subject="s"),
                     options={"verify_signature": False})
    assert two["jti"] != payload["jti"]


@pytest.mark.req("SRS-AUTH-001", "SRS-AUTH-002")
@pytest.mark.parametrize("kwargs, message", [
    ({"scopes": "user/RiskAssessment.x"}, "user/RiskAssessment.x"),
    ({"scopes": "openid"}, "grants no FHIR resource"),
    ({"scopes": "patient/RiskAssessment.rs"}, "need a patient"),
    ({"ttl_seconds": 0}, "lifetime"),
    ({"ttl_seconds": 86400 * 30 + 1}, "lifetime"),
    ({"subject": ""}, "subject"),
])
def test_issue_refuses(key: ec.EllipticCurvePrivateKey, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"scopes": "user/RiskAssessment.rs", "subject": "s", **kwargs}
    with pytest.raises(ValueError, match=message):
        issue_token(key, **args)  # type: ignore[arg-type]


# ------------------------------------------------------------------- refusals
@pytest.mark.req("SRS-AUTH-001")
def test_expired(key: ec.EllipticCurvePrivateKey, verifier: TokenVerifier) -> None:
    token = issue_token(key, scopes="user/RiskAssessment.rs", subject="s", ttl_seconds=60,
                        now=int(time.time()) - 3600)
    assert "expired" in rejected(verifier, token).diagnostics


@pytest.mark.req("SRS-AUTH-001")
def test_within_leeway_accepted(key: ec.EllipticCurvePrivateKey, verifier: TokenVerifier) -> None:
    token = issue_token(key, scopes="user/RiskAssessment.rs", subject="s", ttl_seconds=60,
                        now=int(time.time()) - 70)  # expired 10 s ago, leeway 30 s
    assert verifier.verify(f"Bearer {token}").subject == "s"


@pytest.mark.req("SRS-AUTH-001")
def test_not_yet_valid(key: ec.EllipticCurvePrivateKey, verifier: TokenVerifier) -> None:
    token = issue_token(key, scopes="user/RiskAssessment.rs", subject="s", now=int(time.time()) + 600)
    assert "not yet valid" in rejected(verifier, token).diagnostics


@pytest.mark.req("SRS-AUTH-001", "RC-AUTH-001")
def test_wrong_key(key: ec.EllipticCurvePrivateKey, verifier: TokenVerifier) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    token = issue_token(other, scopes="user/RiskAssessment.rs", subject="s")
    assert "another key" in rejected(verifier, token).diagnostics
    # same kid as the server's key, signed by another: the signature check catches it
    forged = jwt.encode(claims(), other, algorithm="ES256",
                        headers={"kid": jwk_thumbprint(key.public_key())})
    assert rejected(verifier, forged).diagnostics == "token signature invalid"
    no_kid = jwt.encode(claims(), other, algorithm="ES256")
    assert rejected(verifier, no_kid).diagnostics == "token signature invalid"


@pytest.mark.req("SRS-AUTH-001", "RC-AUTH-001")
def test_tampered_payload(key: ec.EllipticCurvePrivateKey, verifier: TokenVerifier) -> None:
    token = issue_token(key, scopes="user/RiskAssessment.rs", subject="s")
    head, _, sig = token.split(".")
    forged = f"{head}.{b64url_json(claims(scope='system/*.cruds'))}.{sig}"
    assert rejected(verifier, forged).diagnostics == "token signature invalid"


@pytest.mark.req("SRS-AUTH-001", "RC-AUTH-001")
def test_alg_none(verifier: TokenVerifier) -> None:
    for alg in ("none", "None", "NONE"):
        token = f"{b64url_json({'alg': alg, 'typ': 'JWT'})}.{b64url_json(claims())}."
        assert "algorithm not allowed" in rejected(verifier, token).diagnostics


@pytest.mark.req("SRS-AUTH-001", "RC-AUTH-001")
def test_hs256_with_public_key_as_secret(key: ec.EllipticCurvePrivateKey, verifier: TokenVerifier) -> None:
    """The algorithm-confusion attack (RFC 8725 §2.1): HMAC keyed with the public PEM."""
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    for header in ({"alg": "HS256", "typ": "JWT"},
                   {"alg": "HS256", "typ": "JWT", "kid": jwk_thumbprint(key.public_key())}):
        signing_input = f"{b64url_json(header)}.{b64url_json(claims())}"
        sig = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        token = f"{signing_input}.{b64url(sig)}"
        assert "algorithm not allowed (only ES256)" in rejected(verifier, token).diagnostics


@pytest.mark.req("SRS-AUTH-001")
def test_wrong_audience_and_issuer(key: ec.EllipticCurvePrivateKey, verifier: TokenVerifier) -> None:
    token = issue_token(key, scopes="user/RiskAssessment.rs", subject="s",
                        audience="https://elsewhere.example/fhir")
    assert "audience is not this server" in rejected(verifier, token).diagnostics
    listed = jwt.encode(claims(aud=[DEFAULT_AUDIENCE, "x"]), key, algorithm="ES256")
    assert "audience" in rejected(verifier, listed).diagnostics
    foreign = jwt.encode(claims(iss="someone-else"), key, algorithm="ES256")
    assert "issuer" in rejected(verifier, foreign).diagnostics


@pytest.mark.req("SRS-AUTH-001")
@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "aud", "iss", "scope"])
def test_required_claims(key: ec.EllipticCurvePrivateKey, verifier: TokenVerifier, missing: str) -> None:
    body = claims()
    del body[missing]
    token = jwt.encode(body, key, algorithm="ES256")
    assert rejected(verifier, token).diagnostics == f"token lacks the {missing} claim"


@pytest.mark.req("SRS-AUTH-001")
@pytest.mark.parametrize("body, message", [
    (claims(scope="user/RiskAssessment.x"), "user/RiskAssessment.x"),
    (claims(scope=["user/RiskAssessment.rs"]), "not a string"),
    (claims(scope="patient/RiskAssessment.rs"), "no patient claim"),
    (claims(patient=7), "patient claim"),
    (claims(sub=5), "sub claim is not a string"),
    (claims(jti=5), "jti claim is not a string"),
    (claims(iat="x"), "iat claim"),
    (claims(exp="soon"), "malformed"),
])
def test_bad_claims(key: ec.EllipticCurvePrivateKey, verifier: TokenVerifier,
                    body: dict[str, object], message: str) -> None:
    token = jwt.encode(body, key, algorithm="ES256")
    assert message in rejected(verifier, token).diagnostics


@pytest.mark.req("SRS-AUTH-001")
@pytest.mark.parametrize("token", ["abc", "a.b.c", "!!!.x.y", f"{b64url(b'[1]')}.x.y",
                                   f"{b64url_json({'alg': 'ES256', 'typ': 'text/plain'})}.x.y"])
def test_malformed(verifier: TokenVerifier, token: str) -> None:
    rejected(verifier, token)


@pytest.mark.req("SRS-AUTH-001")
@pytest.mark.parametrize("header, message", [
    (None, "missing bearer token"),
    ("", "missing bearer token"),
    ("Bearer", "missing bearer token"),
    ("Bearer   ", "missing bearer token"),
    ("Basic xyz", "Authorization header is not a Bearer token"),
    ("Token abc", "Authorization header is not a Bearer token"),
])
def test_authorization_header(verifier: TokenVerifier, header: str | None, message: str) -> None:
    with pytest.raises(FhirError) as info:
        verifier.verify(header)
    assert (info.value.status, info.value.code, info.value.diagnostics) == (401, "login", message)


@pytest.mark.req("SRS-AUTH-001")
def test_oversized_token(verifier: TokenVerifier) -> None:
    assert "longer than" in rejected(verifier, "a" * 10_000).diagnostics


# --------------------------------------------------------------------- scopes
@pytest.mark.req("SRS-AUTH-002")
@pytest.mark.parametrize("text, context, rtype, letters", [
    ("user/RiskAssessment.cruds", "user", "RiskAssessment", "cruds"),
    ("user/RiskAssessment.c", "user", "RiskAssessment", "c"),
    ("user/RiskAssessment.rs", "user", "RiskAssessment", "rs"),
    ("system/Observation.cud", "system", "Observation", "cud"),
    ("patient/*.r", "patient", "*", "r"),
    ("patient/Observation.ds", "patient", "Observation", "ds"),
    ("user/Patient.read", "user", "Patient", "rs"),
    ("user/Patient.write", "user", "Patient", "cud"),
    ("system/*.*", "system", "*", "cruds"),
    ("patient/Consent.*", "patient", "Consent", "cruds"),
])
def test_parse_scope_valid(text: str, context: str, rtype: str, letters: str) -> None:
    scope = parse_scope(text)
    assert scope == Scope(context, rtype, frozenset(letters))
    assert parse_scope(str(scope)) == scope  # the canonical v2 form parses back


@pytest.mark.req("SRS-AUTH-002")
@pytest.mark.parametrize("text", [
    "user/RiskAssessment.x", "foo", "user/.rs", "admin/X.r", "user/RiskAssessment.", "user/RiskAssessment",
    "user/RiskAssessment.sr", "user/RiskAssessment.rr", "user/RiskAssessment.crudsx", "User/Patient.r",
    "user/patient.r", "user/Risk-Assessment.r", "user/RiskAssessment.READ", "user/Observation.rs?category=x",
    "openid", "", "/Patient.r", "user/Patient.r extra", "user//Patient.r",
])
def test_parse_scope_invalid(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_scope(text)
    message = str(info.value)
    assert "\n" not in message and "scope" in message


@pytest.mark.req("SRS-AUTH-002")
def test_parse_scopes_skips_non_resource_scopes() -> None:
    text = ("openid fhirUser launch launch/patient offline_access online_access  "
            "user/RiskAssessment.c\tuser/RiskAssessment.rs")
    assert parse_scopes(text) == (Scope("user", "RiskAssessment", frozenset("c")),
                                  Scope("user", "RiskAssessment", frozenset("rs")))
    assert parse_scopes("") == ()
    with pytest.raises(ValueError, match="foo"):
        parse_scopes("openid foo")


# ------------------------------------------------------------------ principal
def principal(scopes: str, patient: str | None = None) -> Principal:
    return Principal(subject="s", scopes=parse_scopes(scopes), patient=patient, token_id="t")


@pytest.mark.req("SRS-AUTH-002")
def test_allows_user_and_system() -> None:
    p = principal("user/RiskAssessment.rs system/Observation.c")
    assert p.allows("RiskAssessment", "r") and p.allows("RiskAssessment", "s", patient="p1")
    assert not p.allows("RiskAssessment", "c")
    assert p.allows("Observation", "c", patient="anyone")
    assert not p.allows("Patient", "r")
    wildcard = principal("system/*.rs")
    assert wildcard.allows("Patient", "r") and wildcard.allows("Consent", "s")
    assert not wildcard.allows("Consent", "u")


@pytest.mark.req("SRS-AUTH-002", "RC-AUTH-001")
def test_allows_patient_context() -> None:
    p = principal("patient/RiskAssessment.rs", patient="p1")
    assert p.allows("RiskAssessment", "r", patient="p1")
    assert not p.allows("RiskAssessment", "r", patient="p2")
    assert not p.allows("RiskAssessment", "r")  # a request not about one patient
    assert not p.allows("RiskAssessment", "c", patient="p1")
    unbound = principal("patient/RiskAssessment.rs")  # no patient in the token
    assert not unbound.allows("RiskAssessment", "r", patient="p1")
    assert not unbound.allows("RiskAssessment", "r")
    mixed = principal("patient/*.cruds user/Observation.r", patient="p1")
    assert mixed.allows("Observation", "r", patient="p2") and not mixed.allows("Observation", "s", "p2")


@pytest.mark.req("SRS-AUTH-002")
def test_require() -> None:
    p = principal("user/RiskAssessment.rs")
    p.require("RiskAssessment", "r")
    with pytest.raises(FhirError) as info:
        p.require("RiskAssessment", "c")
    err = info.value
    assert (err.status, err.code) == (403, "forbidden")
    assert err.diagnostics == "token lacks scope user|system/RiskAssessment.c (has: user/RiskAssessment.rs)"
    with pytest.raises(FhirError) as info:
        principal("patient/RiskAssessment.r", patient="p1").require("RiskAssessment", "r", "p2")
    assert info.value.status == 403 and "not the requested patient" in info.value.diagnostics
    assert "p1" not in info.value.diagnostics and "p2" not in info.value.diagnostics
    with pytest.raises(FhirError, match="no resource scopes"):
        principal("openid").require("Patient", "r")


# ----------------------------------------------------------------------- keys
@pytest.mark.req("SRS-AUTH-003")
def test_key_created_0600_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "keys" / "token-es256.pem"
    key = load_or_create_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    again = load_or_create_key(path)
    assert again.private_numbers() == key.private_numbers()
    assert isinstance(again.curve, ec.SECP256R1)


@pytest.mark.req("SRS-AUTH-003")
@pytest.mark.parametrize("content", [
    b"not a key\n", b"",
    ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")),
])
def test_not_a_key(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "token-es256.pem"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        load_or_create_key(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert path.read_bytes() == content  # never overwritten


@pytest.mark.req("SRS-AUTH-003")
def test_kid_is_rfc7638_thumbprint(key: ec.EllipticCurvePrivateKey) -> None:
    """Recomputed independently from the DER encoding of the public point (SEC 1 §2.3.3)."""
    point = key.public_key().public_bytes(serialization.Encoding.X962,
                                          serialization.PublicFormat.UncompressedPoint)
    assert point[0] == 4 and len(point) == 65
    x, y = b64url(point[1:33]), b64url(point[33:])
    canonical = '{"crv":"P-256","kty":"EC","x":"' + x + '","y":"' + y + '"}'
    expected = b64url(hashlib.sha256(canonical.encode()).digest())
    assert jwk_thumbprint(key.public_key()) == expected
    token = issue_token(key, scopes="user/RiskAssessment.r", subject="s")
    assert jwt.get_unverified_header(token)["kid"] == expected
    jwk = public_jwk(key.public_key())
    assert jwk == {"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": expected, "alg": "ES256", "use": "sig"}
    # the published JWK verifies the token (what a resource server fetching the JWKS does)
    published = jwt.PyJWK(jwk)
    assert jwt.decode(token, published, algorithms=["ES256"], audience=DEFAULT_AUDIENCE)["sub"] == "s"


# -------------------------------------------------------------------- command
def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(token_cmd.app, name="token")

    @app.command("noop")
    def noop() -> None:  # typer keeps subcommand names only with ≥ 2 commands
        """Nothing."""

    return app


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "workspace.json").write_text('{"study": "s", "origin": "o", "sites": {}}', encoding="utf-8")
    return root


@pytest.mark.req("SRS-AUTH-003")
def test_command_default_audience_matches() -> None:
    assert token_cmd._DEFAULT_AUDIENCE == DEFAULT_AUDIENCE


@pytest.mark.req("SRS-AUTH-003")
def test_command_prints_verifiable_token(ws: Path) -> None:
    result = CliRunner().invoke(cli(), ["token", "--workspace", str(ws), "--scope",
                                        "user/RiskAssessment.c user/RiskAssessment.rs", "--subject", "dr"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert result.stdout == token + "\n" and token.count(".") == 2
    key_file = token_key_path(ws)
    assert key_file == ws / "keys" / "token-es256.pem"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    key = load_or_create_key(key_file)
    principal = TokenVerifier(key.public_key(), DEFAULT_AUDIENCE).verify(f"Bearer {token}")
    assert principal.subject == "dr"
    assert principal.allows("RiskAssessment", "c") and principal.allows("RiskAssessment", "s")
    # a second token is signed by the same (reused) key
    again = CliRunner().invoke(cli(), ["token", "--workspace", str(ws), "--scope", "system/*.r"])
    assert TokenVerifier(key.public_key(), DEFAULT_AUDIENCE).verify(
        f"Bearer {again.stdout.strip()}").subject == "clinician"


@pytest.mark.req("SRS-AUTH-003")
def test_command_json(ws: Path) -> None:
    result = CliRunner().invoke(cli(), [
        "token", "--workspace", str(ws), "--scope", "patient/RiskAssessment.rs", "--patient", "p1",
        "--audience", "https://fhir.example/fhir", "--ttl", "120", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == {"token", "jti", "expires_at", "scope", "audience"}
    assert out["jti"] == jwt.decode(out["token"], options={"verify_signature": False})["jti"]
    assert out["scope"] == "patient/RiskAssessment.rs" and out["audience"] == "https://fhir.example/fhir"
    key = load_or_create_key(token_key_path(ws))
    principal = TokenVerifier(key.public_key(), "https://fhir.example/fhir").verify(f"Bearer {out['token']}")
    assert principal.patient == "p1" and principal.allows("RiskAssessment", "r", "p1")
    exp = jwt.decode(out["token"], options={"verify_signature": False})["exp"]
    assert out["expires_at"].endswith("Z")
    from datetime import datetime
    assert datetime.fromisoformat(out["expires_at"]).timestamp() == exp


@pytest.mark.req("SRS-AUTH-003", "SRS-CLI-001")
@pytest.mark.parametrize("args, message", [
    (["--scope", "user/RiskAssessment.x"], "user/RiskAssessment.x"),
    (["--scope", "patient/RiskAssessment.rs"], "patient"),
    (["--scope", "user/RiskAssessment.r", "--ttl", "0"], "lifetime"),
])
def test_command_bad_input(ws: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli(), ["token", "--workspace", str(ws), *args])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedprog: error: ") and message in lines[0]


@pytest.mark.req("SRS-AUTH-003", "SRS-CLI-001")
def test_command_missing_workspace(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli(), ["token", "--workspace", str(tmp_path / "nowhere"),
                                        "--scope", "user/RiskAssessment.r"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a fedprog workspace" in lines[0]
    assert not (tmp_path / "nowhere").exists()  # nothing created
