"""Every refusal of the FHIR server as one exception, rendered as an OperationOutcome.

FHIR R4 §3.1.0.6 (RESTful API, "handling errors"): a server returns an OperationOutcome with
``issue[].severity``, ``issue[].code`` from the IssueType value set
(http://hl7.org/fhir/R4/valueset-issue-type.html) and, for a business rule on an element,
``issue[].expression`` naming it (FHIRPath). A 401 or 403 about a bearer token also carries its
``WWW-Authenticate: Bearer`` challenge (RFC 6750 §3, :func:`challenge`).
"""

from __future__ import annotations

from typing import Any

#: IssueType codes this server uses (a subset of the required R4 binding)
ISSUE_CODES = frozenset({
    "invalid", "structure", "required", "value", "invariant", "security", "login", "forbidden",
    "not-supported", "not-found", "business-rule", "processing", "exception", "expired", "conflict",
    "too-costly",
})


class FhirError(Exception):
    """A request the server refuses: HTTP ``status`` with one OperationOutcome issue.

    Parameters
    ----------
    status : int
        400 unparseable, 401 no/invalid token, 403 missing scope, 404 unknown, 406/415
        unsupported format, 409/412 state, 422 a business rule.
    code : str
        IssueType code (see :data:`ISSUE_CODES`).
    diagnostics : str
        One line a person can act on.
    expression : list of str, optional
        FHIRPath of the offending element(s), e.g. ``Observation.valueQuantity``.
    headers : dict, optional
        HTTP headers the response must carry, e.g. ``WWW-Authenticate`` on a 401 (RFC 6750 §3).
    """

    def __init__(self, status: int, code: str, diagnostics: str,
                 expression: list[str] | None = None, headers: dict[str, str] | None = None) -> None:
        if code not in ISSUE_CODES:
            raise ValueError(f"{code!r} is not an IssueType code this server uses")
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.expression = list(expression or [])
        self.headers = dict(headers or {})

    def outcome(self) -> dict[str, Any]:
        """The OperationOutcome resource for this error."""
        return operation_outcome(self.code, self.diagnostics, self.expression)


def operation_outcome(code: str, diagnostics: str, expression: list[str] | None = None,
                      severity: str = "error") -> dict[str, Any]:
    """A one-issue OperationOutcome (R4)."""
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = list(expression)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


#: RFC 6750 §3: the realm of this server's bearer-token challenges
REALM = "fedprog"


def _quoted(text: str) -> str:
    """``text`` as an RFC 6750 §3 auth-param value: %x20-21 / %x23-5B / %x5D-7E only."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "'" for c in text)


def challenge(error: str | None = None, description: str = "", scope: str = "") -> dict[str, str]:
    """The ``WWW-Authenticate: Bearer`` header (RFC 6750 §3): no error code when the request had
    no credentials (§3.1), ``invalid_token`` (401) or ``insufficient_scope`` (403) otherwise."""
    params = [f'realm="{REALM}"']
    if error:
        params.append(f'error="{error}"')
    if description:
        params.append(f'error_description="{_quoted(description)}"')
    if scope:
        params.append(f'scope="{_quoted(scope)}"')
    return {"WWW-Authenticate": "Bearer " + ", ".join(params)}
