"""Schemathesis against the served OpenAPI schema at 1 000 examples per operation (issue 16): no
generated request gets a 5xx, and none takes longer than 1 s (a request over it is measured once
more: an input that stalls the server is slow twice, a moment of load on a shared machine is not).

The whole device app is fuzzed in-process (FHIR routes, CDS Hooks, Consent API, SMART endpoints,
the risk page's model facts) with a token holding every scope the routes check. The example
count is ``FEDPROG_SCHEMA_EXAMPLES`` (default 1 000, the CI figure); measured on the shared
2-core machine the module takes about the time stated in the README's FHIR section. Marked
``slow``: it still runs in ``make test``. (``tests/fedprog/test_serve.py`` runs 200 examples per
operation against ``fedprog serve``'s app over a real demo workspace.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from device.fhir.app import create_app
from device.fhir.auth import issue_token
from device.fhir.cds import cds_router
from device.fhir.consent_api import consent_router
from device.fhir.page import mount_page, page_router
from device.fhir.smart import LaunchStore, smart_router
from device.model import PrognosticModel

from .conftest import server_state

EXAMPLES = int(os.environ.get("FEDPROG_SCHEMA_EXAMPLES", "1000"))
MAX_SECONDS = 1.0
BASE = "http://testserver/fhir"
SCOPES = "user/RiskAssessment.cruds system/AuditEvent.rs user/Consent.rs"


@pytest.fixture(scope="module")
def device_app(tmp_path_factory: pytest.TempPathFactory, integer_model: PrognosticModel
               ) -> Iterator[tuple[FastAPI, str]]:
    folder = tmp_path_factory.mktemp("schema")
    st, key = server_state(folder, integer_model, audience=BASE)
    smart = smart_router(BASE, key, LaunchStore(folder / "launch.sqlite"))
    app = create_app(st, routers=[cds_router(), consent_router(), smart, page_router()])
    mount_page(app)
    yield app, issue_token(key, scopes=SCOPES, subject="schemathesis", audience=BASE, ttl_seconds=3600)


@pytest.mark.slow
@pytest.mark.req("SRS-FHIR-012", "SRS-FHIR-004")
def test_no_generated_request_gets_a_server_error_or_takes_a_second(device_app: tuple[FastAPI, str]) -> None:
    app, bearer = device_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    results = list(schema.get_all_operations())
    assert all(isinstance(r, Ok) for r in results), [r for r in results if not isinstance(r, Ok)]
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert len(operations) >= 10
    slowest: dict[str, float] = {}
    started = time.perf_counter()
    for operation in operations:
        fuzz_operation(operation, bearer, slowest)
    print(f"\nschemathesis: {len(operations)} operations x {EXAMPLES} examples in "
          f"{time.perf_counter() - started:.0f} s; slowest request {max(slowest.values()) * 1000:.0f} ms "
          f"({max(slowest, key=lambda k: slowest[k])}); re-measured outliers: {OUTLIERS or 'none'}")


#: first measurements over the bound that were faster when repeated (a loaded machine, not the input)
OUTLIERS: list[str] = []
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def fuzz_operation(operation: Any, bearer: str, slowest: dict[str, float]) -> None:
    """:data:`EXAMPLES` generated requests to one operation; each answered below 500 within 1 s."""
    label = f"{operation.method.upper()} {operation.path}"

    def timed(case: Any) -> float:
        t0 = time.perf_counter()
        case.call_and_validate(headers={"Authorization": f"Bearer {bearer}"}, checks=[not_a_server_error])
        return time.perf_counter() - t0

    @given(case=operation.as_strategy())
    @FUZZ
    def no_server_error(case: Any) -> None:
        took = timed(case)
        if took >= MAX_SECONDS:  # measured again: a slow input is slow twice, a busy machine not
            OUTLIERS.append(f"{label}: {took:.3f} s")
            took = timed(case)
        slowest[label] = max(slowest.get(label, 0.0), took)
        assert took < MAX_SECONDS, f"{label}: {took:.3f} s (twice)"

    no_server_error()
