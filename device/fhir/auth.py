"""Bearer tokens for the FHIR server: ES256-signed JWTs carrying SMART on FHIR v2 scopes.

References
----------
- RFC 7519, JSON Web Token (JWT): the claims ``iss sub aud exp nbf iat jti``.
- RFC 7518 §3.4, ECDSA with P-256 and SHA-256 (``ES256``): the only algorithm accepted.
- RFC 7638, JWK Thumbprint: the ``kid`` of the signing key.
- RFC 8725, JWT Best Current Practices: §2.1/§3.1 pin the algorithm (``alg: none`` and the
  HS256-with-the-public-key confusion are refused), §3.3 validate every claim, §3.9 audience,
  §3.11 explicit ``typ``.
- SMART App Launch v2, scopes and launch context
  (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html):
  ``<patient|user|system>/<ResourceType|*>.<cruds>``, with the v1 suffixes ``.read``,
  ``.write`` and ``.*`` still accepted.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from .denylist import TokenDenyList
from .errors import FhirError, challenge
from .keys import (  # noqa: F401  (re-exported: the key side of a token)
    ALGORITHM,
    jwk_thumbprint,
    load_or_create_key,
    public_jwk,
    token_key_path,
)
from .token_cache import VerifiedTokens

#: the ``aud`` a token must carry: the server's FHIR base URL (RFC 7519 §4.1.3)
DEFAULT_AUDIENCE = "http://127.0.0.1:8080/fhir"
#: the ``iss`` of every token this software issues (RFC 7519 §4.1.1)
ISSUER = "fedprog"
#: longest token lifetime (seconds): 8 h, one clinical shift. ``issue_token`` issues no longer one
#: and the verifier refuses a token whose ``exp - iat`` exceeds it (older 30-day tokens included):
#: there are no refresh tokens, and a leaked bearer token (RFC 6750 §5.3: short-lived) is then
#: usable for hours at most, or until it is revoked (:mod:`device.fhir.denylist`)
MAX_TTL_SECONDS = 8 * 3600
#: tokens longer than this are refused before any decoding (bounds the work a request can cause)
MAX_TOKEN_LENGTH = 8192

CONTEXTS = frozenset({"patient", "user", "system"})
INTERACTIONS = "cruds"
#: scopes without a resource (SMART App Launch v2 §"Scopes for requesting context data",
#: OpenID Connect, refresh tokens): accepted in a token and ignored by authorisation
NON_RESOURCE_SCOPES = frozenset({
    "openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access",
})
#: SMART v1 suffixes and the v2 interactions they mean
_V1_SUFFIXES = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE_RE = re.compile(r"(?P<context>[a-z]+)/(?P<type>[A-Z][A-Za-z]*|\*)\.(?P<what>[A-Za-z*]+)")
_V2_RE = re.compile(r"c?r?u?d?s?")
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "aud", "iss", "scope", "jti"]
#: RFC 7519 §2: a NumericDate is a JSON number (a numeric string is not one)
_NUMERIC_DATES = ("exp", "iat", "nbf")



# ------------------------------------------------------------------------- scopes
@dataclass(frozen=True)
class Scope:
    """One SMART v2 resource scope, e.g. ``user/RiskAssessment.rs``.

    Attributes
    ----------
    context : str
        ``patient``, ``user`` or ``system``.
    resource_type : str
        A FHIR resource type name, or ``*`` for every type.
    interactions : frozenset of str
        Letters of ``cruds``: create, read, update, delete, search.
    """

    context: str
    resource_type: str
    interactions: frozenset[str]

    def __str__(self) -> str:
        letters = "".join(c for c in INTERACTIONS if c in self.interactions)
        return f"{self.context}/{self.resource_type}.{letters}"

    def matches(self, resource_type: str, interaction: str) -> bool:
        """Whether this scope covers ``interaction`` on ``resource_type`` (patient aside)."""
        return (self.resource_type in ("*", resource_type)) and interaction in self.interactions


def parse_scope(text: str) -> Scope:
    """One SMART resource scope (App Launch v2 §"Scopes for requesting FHIR resources").

    Parameters
    ----------
    text : str
        ``<patient|user|system>/<Type|*>.<letters>`` with letters a non-empty, ordered,
        repeat-free subset of ``cruds``; or the v1 suffixes ``.read`` (= ``rs``), ``.write``
        (= ``cud``), ``.*`` (= ``cruds``).

    Raises
    ------
    ValueError
        Anything else (one line naming the scope), including v2 search-parameter
        constraints (``?param=value``), which this server does not enforce.
    """
    shown = text if len(text) <= 80 and text.isprintable() else repr(text[:80])
    if "?" in text:
        raise ValueError(f"scope {shown!r}: search-parameter constraints (?…) are not supported")
    m = _SCOPE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"scope {shown!r} is not <patient|user|system>/<ResourceType|*>.<cruds>")
    context, resource_type, what = m["context"], m["type"], m["what"]
    if context not in CONTEXTS:
        raise ValueError(f"scope {shown!r}: context must be patient, user or system, not {context!r}")
    if what in _V1_SUFFIXES:
        letters = _V1_SUFFIXES[what]
    elif what and _V2_RE.fullmatch(what):
        letters = what
    else:
        raise ValueError(f"scope {shown!r}: interactions must be letters of 'cruds' in that order "
                         f"(or read, write, *)")
    return Scope(context, resource_type, frozenset(letters))


def parse_scopes(text: str) -> tuple[Scope, ...]:
    """The resource scopes of a space-separated scope string (RFC 6749 §3.3).

    Non-resource scopes (``openid``, ``fhirUser``, ``launch``, ``launch/patient``,
    ``offline_access``, ``online_access``) are skipped; anything else that does not parse is a
    ``ValueError`` (see :func:`parse_scope`).
    """
    return tuple(parse_scope(s) for s in text.split() if s not in NON_RESOURCE_SCOPES)


# ---------------------------------------------------------------------- principal
@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for and what it may do.

    Attributes
    ----------
    subject : str
        The token's ``sub`` (RFC 7519 §4.1.2).
    scopes : tuple of Scope
        Its resource scopes (SMART App Launch v2).
    patient : str or None
        The launch-context patient (``patient`` claim) that ``patient/`` scopes are bound to.
    token_id : str
        The token's ``jti`` (RFC 7519 §4.1.7), for the audit trail.
    """

    subject: str
    scopes: tuple[Scope, ...]
    patient: str | None
    token_id: str

    def allows(self, resource_type: str, interaction: str, patient: str | None = None) -> bool:
        """Whether a scope grants ``interaction`` (one of ``cruds``) on ``resource_type``.

        ``user/`` and ``system/`` scopes ignore ``patient``; a ``patient/`` scope grants only
        when the token has a patient and it equals ``patient``, the patient the request concerns.
        """
        return any(s.matches(resource_type, interaction)
                   and (s.context != "patient" or (self.patient is not None and self.patient == patient))
                   for s in self.scopes)

    def require(self, resource_type: str, interaction: str, patient: str | None = None) -> None:
        """:meth:`allows`, or ``FhirError`` 403 ``forbidden`` saying which scope is missing (with the
        RFC 6750 §3.1 ``insufficient_scope`` challenge); never a patient id."""
        if self.allows(resource_type, interaction, patient):
            return
        needed = f"user|system/{resource_type}.{interaction}"
        headers = challenge("insufficient_scope", scope=f"user/{resource_type}.{interaction}")
        if any(s.context == "patient" and s.matches(resource_type, interaction) for s in self.scopes):
            what = ("the request names no patient" if patient is None
                    else "the token's patient is not the requested patient")
            raise FhirError(403, "forbidden",
                            f"token allows {resource_type}.{interaction} only for its own patient "
                            f"(patient/ scope), and {what}", headers=headers)
        has = " ".join(str(s) for s in self.scopes) or "no resource scopes"
        raise FhirError(403, "forbidden", f"token lacks scope {needed} (has: {has})", headers=headers)


# ------------------------------------------------------------------------ issuing
def issue_token(key: ec.EllipticCurvePrivateKey, *, scopes: str, subject: str,
                audience: str = DEFAULT_AUDIENCE, ttl_seconds: int = 3600,
                patient: str | None = None, now: int | None = None) -> str:
    """A signed ES256 access token (RFC 7519, RFC 7518 §3.4) with SMART v2 scopes.

    Parameters
    ----------
    key : ec.EllipticCurvePrivateKey
        The P-256 signing key (see :func:`load_or_create_key`).
    scopes : str
        Space-separated SMART scopes; validated with :func:`parse_scopes`.
    subject : str
        ``sub``: who the token is for.
    audience : str
        ``aud``: the FHIR server's base URL (RFC 8725 §3.9).
    ttl_seconds : int
        Lifetime, 1 s to :data:`MAX_TTL_SECONDS` (8 h).
    patient : str, optional
        Launch-context patient; required when any scope is ``patient/``.
    now : int, optional
        Issue time (seconds since the epoch); the current time by default.

    Raises
    ------
    ValueError
        A scope does not parse, no resource scope, a ``patient/`` scope without ``patient``,
        an empty subject or audience, or a lifetime out of range.
    """
    parsed = parse_scopes(scopes)
    if not parsed:
        raise ValueError(f"scope {scopes!r} grants no FHIR resource (want e.g. user/RiskAssessment.rs)")
    if patient is None and any(s.context == "patient" for s in parsed):
        raise ValueError("patient/ scopes need a patient (the launch-context patient id)")
    if patient is not None and not patient:
        raise ValueError("patient must not be empty")
    if not subject:
        raise ValueError("subject must not be empty")
    if not audience:
        raise ValueError("audience must not be empty")
    if isinstance(ttl_seconds, bool) or not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"token lifetime must be 1..{MAX_TTL_SECONDS} seconds, not {ttl_seconds}")
    issued = int(time.time()) if now is None else int(now)
    claims: dict[str, Any] = {
        "iss": ISSUER, "sub": subject, "aud": audience, "iat": issued, "nbf": issued,
        "exp": issued + int(ttl_seconds), "jti": secrets.token_hex(16), "scope": " ".join(scopes.split()),
    }
    if patient is not None:
        claims["patient"] = patient
    headers = {"alg": ALGORITHM, "typ": "JWT", "kid": jwk_thumbprint(key.public_key())}
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers=headers)


# ---------------------------------------------------------------------- verifying
def _unauthorized(reason: str, *, credentials: bool = True) -> FhirError:
    """401 ``login`` with its RFC 6750 §3 challenge."""
    return FhirError(401, "login", reason,
                     headers=challenge("invalid_token", reason) if credentials else challenge())


class TokenVerifier:
    """Checks ``Authorization: Bearer <jwt>`` headers against one ES256 public key.

    The algorithm is pinned to ES256 (RFC 8725 §3.1): a token whose header names any other
    algorithm, ``none`` included, is refused before its signature is looked at, so neither the
    unsigned-token nor the HS256-keyed-with-the-public-key confusion can succeed. Every claim of
    RFC 7519 that the server relies on is required and checked (RFC 8725 §3.3, §3.9).

    Parameters
    ----------
    public_key : ec.EllipticCurvePublicKey
        The P-256 key tokens are signed with.
    audience : str
        This server's base URL; a token's ``aud`` must equal it.
    leeway : int
        Clock skew tolerated on ``exp``, ``nbf`` and ``iat``, in seconds.
    denylist : TokenDenyList, optional
        Revoked token ids (``jti``), consulted on every request; none when not given.

    A token verified once is remembered by its SHA-256 until ``exp`` plus the leeway
    (:class:`device.fhir.token_cache.VerifiedTokens`); the deny-list is consulted every time.
    """

    def __init__(self, public_key: ec.EllipticCurvePublicKey, audience: str, leeway: int = 30,
                 denylist: TokenDenyList | None = None) -> None:
        self.denylist = denylist
        self.public_key = public_key
        self.audience = audience
        self.leeway = leeway
        self.kid = jwk_thumbprint(public_key)
        #: tokens whose signature and claims were verified, until they expire (the deny-list and
        #: the scopes are still checked on every request)
        self.verified = VerifiedTokens()
        self._jwt = jwt.PyJWT(options={"require": list(_REQUIRED_CLAIMS), "strict_aud": True,
                                       "enforce_minimum_key_length": True})

    def verify(self, authorization: str | None) -> Principal:
        """The :class:`Principal` of a valid ``Authorization`` header value.

        Raises
        ------
        FhirError
            401 ``login`` with a one-line reason (the token itself is never echoed): no header,
            not ``Bearer``, malformed, wrong algorithm, bad signature, expired, not yet valid,
            wrong audience or issuer, a missing claim, or a scope that does not parse.
        """
        if authorization is None or not authorization.strip():
            raise _unauthorized("missing bearer token", credentials=False)
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise _unauthorized("Authorization header is not a Bearer token", credentials=False)
        token = token.strip()
        if not token:
            raise _unauthorized("missing bearer token", credentials=False)
        if len(token) > MAX_TOKEN_LENGTH:
            raise _unauthorized(f"token longer than {MAX_TOKEN_LENGTH} characters")
        principal = self.verified.get(token)
        if principal is None:
            principal = self._verify_in_full(token)
        if self.denylist is not None and self.denylist.is_revoked(principal.token_id):
            raise _unauthorized("token revoked (fedprog token revoke)")
        return principal

    def _verify_in_full(self, token: str) -> Principal:
        """Header, ES256 signature and every claim; the principal is remembered until ``exp``."""
        self._check_header(token)
        try:
            claims = self._jwt.decode(token, self.public_key, algorithms=[ALGORITHM],
                                      audience=self.audience, issuer=ISSUER, leeway=self.leeway)
        except jwt.PyJWTError as exc:
            raise _unauthorized(self._reason(exc)) from None
        except (OverflowError, ValueError, TypeError):  # e.g. a signed exp of Infinity
            raise _unauthorized("token is malformed (a time claim is not a finite number)") from None
        self._check_times(claims)
        principal = self._principal(claims)
        self.verified.put(token, principal, float(claims["exp"]) + self.leeway)
        return principal

    def _check_times(self, claims: dict[str, Any]) -> None:
        """``exp``/``iat``/``nbf`` are JSON numbers (RFC 7519 §2 NumericDate; PyJWT would accept
        ``"exp": "1700000000"``), and the lifetime ``exp - iat`` is at most :data:`MAX_TTL_SECONDS`."""
        for name in _NUMERIC_DATES:
            value = claims.get(name)
            if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise _unauthorized(f"token {name} claim is not a NumericDate (a JSON number, RFC 7519 §2)")
        if claims["exp"] - claims["iat"] > MAX_TTL_SECONDS + self.leeway:
            raise _unauthorized(f"token lifetime exceeds the maximum of {MAX_TTL_SECONDS // 3600} h")

    def _check_header(self, token: str) -> None:
        """Refuse any ``alg`` but ES256, a ``typ`` other than JWT and a foreign ``kid`` (RFC 8725)."""
        segment = token.split(".", 1)[0]
        try:
            header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        except (ValueError, binascii.Error, RecursionError):
            raise _unauthorized("token is malformed (header is not base64url JSON)") from None
        if not isinstance(header, dict):
            raise _unauthorized("token is malformed (header is not a JSON object)")
        if header.get("alg") != ALGORITHM:
            raise _unauthorized(f"token algorithm not allowed (only {ALGORITHM})")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() not in ("JWT", "AT+JWT")):
            raise _unauthorized("token type is not JWT")
        kid = header.get("kid")
        if kid is not None and kid != self.kid:
            raise _unauthorized("token signed by another key (kid is not this server's key)")

    def _reason(self, exc: jwt.PyJWTError) -> str:
        """A one-line reason for a PyJWT exception, without echoing the token."""
        if isinstance(exc, jwt.ExpiredSignatureError):
            return "token expired"
        if isinstance(exc, jwt.InvalidSignatureError):
            return "token signature invalid"
        if isinstance(exc, jwt.InvalidAlgorithmError):
            return f"token algorithm not allowed (only {ALGORITHM})"
        if isinstance(exc, jwt.InvalidAudienceError):
            return f"token audience is not this server ({self.audience})"
        if isinstance(exc, jwt.InvalidIssuerError):
            return f"token issuer is not {ISSUER}"
        if isinstance(exc, jwt.ImmatureSignatureError):
            return "token not yet valid (iat/nbf in the future)"
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return f"token lacks the {exc.claim} claim"
        if isinstance(exc, jwt.InvalidIssuedAtError):
            return "token iat claim is not a number"
        if isinstance(exc, jwt.exceptions.InvalidSubjectError):
            return "token sub claim is not a string"
        if isinstance(exc, jwt.exceptions.InvalidJTIError):
            return "token jti claim is not a string"
        if isinstance(exc, jwt.DecodeError):
            return "token is malformed"
        return f"token invalid ({type(exc).__name__})"

    def _principal(self, claims: dict[str, Any]) -> Principal:
        """The Principal of already verified claims; 401 for unusable ``scope``/``patient``."""
        scope = claims["scope"]
        if not isinstance(scope, str):
            raise _unauthorized("token scope claim is not a string")
        try:
            scopes = parse_scopes(scope)
        except ValueError as exc:
            raise _unauthorized(f"token {exc}") from None
        patient = claims.get("patient")
        if patient is not None and (not isinstance(patient, str) or not patient):
            raise _unauthorized("token patient claim is not a non-empty string")
        if patient is None and any(s.context == "patient" for s in scopes):
            raise _unauthorized("token has patient/ scopes but no patient claim")
        jti = claims.get("jti", "")
        return Principal(subject=claims["sub"], scopes=scopes, patient=patient,
                         token_id=jti if isinstance(jti, str) else "")
