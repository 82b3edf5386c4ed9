"""FP-IFU section 8, the IT environment: each statement checked against the code that does it
(issue 18: the IFU said nothing about the IT environment or TLS)."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pypdf import PdfReader

from device.fhir import auth, smart
from device.fhir.errors import FhirError
from device.fhir.inputs import extract
from dossier.build import control
from dossier.documents import _it_environment as it
from dossier.documents import ifu
from dossier.documents.device_description import prognostic
from dossier.inputs import gather
from dossier.spec import DossierInputs
from dossier.style import render
from fedprog import serve_cmd


@pytest.fixture(scope="module")
def inputs(demo_workspace: Path) -> DossierInputs:
    return gather(demo_workspace)


@pytest.fixture(scope="module")
def text(inputs: DossierInputs, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ifu-it") / ifu.SPEC.file
    render(path, control(inputs, ifu.SPEC), ifu.SPEC.build(inputs), toc=ifu.SPEC.toc)
    whole = " ".join(" ".join(page.extract_text() or "" for page in PdfReader(path).pages).split())
    return whole.split("8 For IT operators: the IT environment")[-1]


@pytest.mark.req("SRS-DOS-023")
def test_the_server_speaks_plain_http_on_the_stated_defaults(text: str) -> None:
    params = inspect.signature(serve_cmd.serve).parameters
    assert (params["host"].default, params["port"].default) == (it.DEFAULT_HOST, it.DEFAULT_PORT)
    assert f"listens on {it.DEFAULT_HOST} port {it.DEFAULT_PORT} by default" in text
    source = inspect.getsource(serve_cmd)
    assert "ssl" not in source.lower()  # no TLS of its own: uvicorn runs without a certificate
    assert "speaks plain HTTP: it has no TLS of its own" in text and "TLS 1.2 or later" in text
    assert "base_url" in params and "--base-url" in text


@pytest.mark.req("SRS-DOS-023")
def test_tokens_launches_and_clock_are_as_the_code_says(text: str, inputs: DossierInputs) -> None:
    assert f"issued as '{auth.ISSUER}'" in text
    assert f"at most {auth.MAX_TTL_SECONDS // 3600} h" in text
    assert f"within {smart.LAUNCH_TTL} s, the authorization code for {smart.CODE_TTL} s" in text
    assert inspect.signature(auth.TokenVerifier).parameters["leeway"].default == it.leeway()
    assert f"tolerating {it.leeway()} s of skew" in text
    assert "keys/token-es256.pem" in text and "keys/revoked-tokens.sqlite" in text
    # "a request whose asOf is more than one day after the server's date is refused"
    model = prognostic(inputs, "test")
    future = datetime.now(UTC).date() + timedelta(days=2)
    with pytest.raises(FhirError, match=f"asOf {future} is in the future") as exc:
        extract(model, {"resourceType": "Bundle", "type": "collection", "entry": []}, as_of=future)
    assert exc.value.status == 422
    assert "more than one day after the server's date is refused" in text


@pytest.mark.req("SRS-DOS-023")
def test_the_backup_names_the_workspace_stores_the_server_uses(text: str) -> None:
    source = inspect.getsource(serve_cmd)
    for store in it.STORES:
        assert store in text
        assert store == "ledger.sqlite" or f'"{store}"' in source, store
    for said in ("Back up the whole folder", "fedprog ledger verify", "does not terminate TLS",
                 "authenticate users", "synchronise its clock"):
        assert said in text, said
