"""The scoring pool: a batch spread over worker processes answers exactly as the in-process batch,
entry by entry (bad entries failing alone); a worker that dies, hangs or talks garbage is replaced
and its chunk still scored, within the deadline; closing leaves no process behind; the app uses it."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from device.fhir import pool as pool_mod
from device.fhir import service
from device.fhir.app import create_app
from device.fhir.auth import TokenVerifier, issue_token, load_or_create_key
from device.fhir.errors import FhirError
from device.fhir.examples import parameters
from device.fhir.http import ServerState
from device.fhir.pool import ScoringPool
from device.fhir.pool_worker import PROTOCOL, Worker, decode_body, encode_frame
from device.fhir.service import FixedModel
from device.fhir.store import FhirStore
from device.model import PrognosticModel

from .conftest import DEMO_VALUES, patient_bundle

URL = {"method": "POST", "url": "Patient/$predict-risk"}

pytestmark = pytest.mark.req("SRS-FHIR-003")


def entry(i: int, **values: Any) -> dict[str, Any]:
    """A batch entry for patient ``b<i>``: the demo values, varied by ``i``, overridden by ``values``."""
    v = {**DEMO_VALUES, "tsize": 5.0 + i % 50, "pnodes": 1 + i % 12, "age": 30.0 + i % 50, **values}
    v = {k: x for k, x in v.items() if x is not None}
    return {"resource": parameters(patient_bundle(v, patient_id=f"b{i}")), "request": URL}


#: entries that fail alone: no resource (400), outside the envelope (422), an input missing (422),
#: not valid FHIR (400)
NOT_FHIR = {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": {"resourceType": "Patient", "id": "x", "gender": 42}}]}
BAD = {3: lambda i: {"request": URL}, 17: lambda i: entry(i, age=500.0), 24: lambda i: entry(i, tsize=None),
       38: lambda i: {"resource": parameters(NOT_FHIR), "request": URL}}


def batch(n: int, bad: bool = True) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "batch",
            "entry": [BAD[i](i) if bad and i in BAD else entry(i) for i in range(n)]}


VARYING = ("id", "occurrenceDateTime", "location")


def comparable(x: Any, approx: bool = True) -> Any:
    """``x`` without what differs between two runs — RiskAssessment ids, times (and locations) —
    and its numbers to 1e-12 (a chunk is scored as its own matrix: the last bit may differ)."""
    if isinstance(x, dict):
        return {k: comparable(v, approx) for k, v in x.items() if k not in VARYING}
    if isinstance(x, list):
        return [comparable(v, approx) for v in x]
    return pytest.approx(x, rel=0, abs=1e-12) if approx and isinstance(x, float) else x


def assert_same(got: service.BatchResult, want: service.BatchResult) -> None:
    assert len(got.bundle["entry"]) == len(want.bundle["entry"])
    for k, (a, b) in enumerate(zip(got.bundle["entry"], want.bundle["entry"], strict=True)):
        assert a["response"]["status"] == b["response"]["status"], k
        assert comparable(a, approx=False) == comparable(b), k
    assert got.patients == want.patients
    assert [(comparable(r, False), s) for r, s, _ in got.rows] == \
        [(comparable(r), s) for r, s, _ in want.rows]
    for ra, _, recorded in got.rows:
        assert ra["occurrenceDateTime"] == recorded
        assert [e["resource"] for e in got.bundle["entry"] if "resource" in e].count(ra) == 1


@pytest.fixture
def in_process_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the chunks the server process scores itself (a worker's are not seen here)."""
    calls: list[int] = []
    real = service.assess_entries

    def spy(model: PrognosticModel, resources: list[Any], *args: Any, **kw: Any) -> Any:
        calls.append(len(resources))
        return real(model, resources, *args, **kw)

    monkeypatch.setattr(service, "assess_entries", spy)
    return calls


@pytest.fixture(scope="module")
def shared_pool() -> Iterator[ScoringPool]:
    with ScoringPool(2, min_batch=10) as p:
        yield p


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_pool_batch_equals_the_in_process_batch_entry_by_entry(
        shared_pool: ScoringPool, demo_model: PrognosticModel, in_process_calls: list[int]) -> None:
    body = batch(40)
    got = shared_pool.assess_batch(demo_model, body)
    assert in_process_calls == []  # both chunks were scored by the workers
    want = service.assess_batch(demo_model, body)
    assert_same(got, want)
    statuses = [e["response"]["status"] for e in got.bundle["entry"]]
    assert [k for k, s in enumerate(statuses) if s != "200 OK"] == sorted(BAD)
    assert statuses[3].startswith("400") and statuses[17].startswith("422") and statuses[38].startswith("400")
    # an entry's error names its place in the whole batch, not in its chunk (38 is in the second)
    assert got.bundle["entry"][38]["response"]["outcome"]["issue"][0]["expression"]
    assert "Bundle.entry[3]" in got.bundle["entry"][3]["response"]["outcome"]["issue"][0]["diagnostics"]
    assert len({ra["occurrenceDateTime"] for ra, _, _ in got.rows}) == 1  # one batch, one time
    assert len({ra["id"] for ra, _, _ in got.rows}) == len(got.rows) == 36


def test_a_small_batch_is_scored_in_process(shared_pool: ScoringPool, demo_model: PrognosticModel,
                                            in_process_calls: list[int]) -> None:
    got = shared_pool.assess_batch(demo_model, batch(9))
    assert in_process_calls == [9]
    assert_same(got, service.assess_batch(demo_model, batch(9)))


def test_the_batch_limit_and_shape_are_checked_as_in_process(shared_pool: ScoringPool,
                                                            demo_model: PrognosticModel) -> None:
    with pytest.raises(FhirError) as too_many:
        shared_pool.assess_batch(demo_model, batch(12, bad=False), limit=11)
    assert too_many.value.status == 422
    with pytest.raises(FhirError) as not_a_list:
        shared_pool.assess_batch(demo_model, {"resourceType": "Bundle", "type": "batch", "entry": {}})
    assert not_a_list.value.status == 400


def test_a_worker_killed_mid_use_is_replaced_and_the_batch_still_completes(
        demo_model: PrognosticModel, monkeypatch: pytest.MonkeyPatch, in_process_calls: list[int]) -> None:
    real_send = pool_mod._Worker._send
    killed: list[int] = []

    def send_then_die(self: Any, data: bytes, deadline: float) -> None:
        real_send(self, data, deadline)
        if self.index == 0 and not killed:  # the worker has its chunk: kill it before it answers
            killed.append(self.pid)
            os.kill(self.pid, signal.SIGKILL)

    monkeypatch.setattr(pool_mod._Worker, "_send", send_then_die)
    body = batch(40)
    with ScoringPool(2, min_batch=10) as p:
        first = p.pids
        got = p.assess_batch(demo_model, body)
        assert killed == [first[0]] and in_process_calls == [20]  # its chunk was scored here instead
        assert p.pids[0] != first[0] and p.pids[1] == first[1] and not alive(first[0])
        again = p.assess_batch(demo_model, body)  # the replacement serves the next batch
        assert in_process_calls == [20]
    want = service.assess_batch(demo_model, body)
    assert_same(got, want)
    assert_same(again, want)


def test_a_worker_that_died_while_idle_is_replaced_before_its_next_chunk(
        demo_model: PrognosticModel, in_process_calls: list[int]) -> None:
    body = batch(20)
    with ScoringPool(2, min_batch=10) as p:
        p.wait_ready()
        dead = p.pids[0]
        os.kill(dead, signal.SIGKILL)
        p._workers[0].proc.wait(timeout=10)  # dead and gone before the batch comes
        got = p.assess_batch(demo_model, body)
        assert in_process_calls == [] and p.pids[0] != dead and not alive(dead)
    assert_same(got, service.assess_batch(demo_model, body))


def test_a_hung_worker_is_killed_at_its_deadline_and_its_chunk_scored_in_process(
        demo_model: PrognosticModel, monkeypatch: pytest.MonkeyPatch, in_process_calls: list[int]) -> None:
    body = batch(20)
    with ScoringPool(2, min_batch=10) as p:
        p.assess_batch(demo_model, body)  # both ready and holding the model
        monkeypatch.setattr(pool_mod, "BASE_TIMEOUT", 1.0)
        monkeypatch.setattr(pool_mod, "PER_ENTRY", 0.0)
        hung = p.pids[1]
        os.kill(hung, signal.SIGSTOP)
        try:
            start = time.monotonic()
            got = p.assess_batch(demo_model, body)
            elapsed = time.monotonic() - start
        finally:
            if alive(hung):
                os.kill(hung, signal.SIGKILL)
        assert elapsed < 1.0 + 3.0  # the deadline, then the kill and the chunk scored here
        assert in_process_calls == [10]
        assert p.pids[1] != hung and not alive(hung)
    assert_same(got, service.assess_batch(demo_model, body))


def test_a_worker_talking_garbage_is_replaced_and_its_chunk_scored_in_process(
        demo_model: PrognosticModel, monkeypatch: pytest.MonkeyPatch, in_process_calls: list[int],
        caplog: pytest.LogCaptureFixture) -> None:
    garbage = ("import sys; sys.stdout.buffer.write(b'\\x00\\x00\\x00\\x05hello'); sys.stdout.flush(); "
               "sys.stdin.read()")
    monkeypatch.setattr(pool_mod, "WORKER_COMMAND", (sys.executable, "-c", garbage))
    body = batch(12, bad=False)
    with ScoringPool(1, min_batch=10) as p:
        first = p.pids[0]
        got = p.assess_batch(demo_model, body)
        assert in_process_calls == [12] and p.pids[0] != first
    assert_same(got, service.assess_batch(demo_model, body))
    assert "scoring worker 0" in caplog.text and "not JSON" in caplog.text


def test_close_ends_every_worker_by_end_of_input_and_leaves_no_process(demo_model: PrognosticModel) -> None:
    p = ScoringPool(2, min_batch=10)
    p.wait_ready()
    assert all(w.ready for w in p._workers)
    p.assess_batch(demo_model, batch(20, bad=False))
    procs = [w.proc for w in p._workers]
    p.close()
    p.close()  # idempotent
    assert [proc.returncode for proc in procs] == [0, 0]  # they exited on end of input, not killed
    assert not any(alive(proc.pid) for proc in procs)
    tasks = Path("/proc/self/task").iterdir()
    children = {int(c) for t in tasks for c in (t / "children").read_text().split()}
    assert children.isdisjoint(proc.pid for proc in procs)
    # a closed pool still answers, in-process
    assert_same(p.assess_batch(demo_model, batch(20)), service.assess_batch(demo_model, batch(20)))


def test_a_worker_survives_a_request_it_cannot_serve(demo_model: PrognosticModel) -> None:
    w = Worker()
    sha, art = demo_model.sha256, pool_mod.artifact_json(demo_model)
    assert "failed" in w.handle({"protocol": PROTOCOL, "sha256": sha, "entries": []})  # model never sent
    assert "failed" in w.handle({"protocol": PROTOCOL, "sha256": "0" * 64, "artifact": art, "entries": []})
    assert "failed" in w.handle({"nonsense": True})
    reply = w.handle({"protocol": PROTOCOL, "sha256": sha, "artifact": art,
                      "entries": [entry(0)["resource"], None], "start": 7})
    assert reply["results"][0]["patient"] == "Patient/b0"
    assert reply["results"][1]["error"]["diagnostics"] == "Bundle.entry[8] has no resource"
    assert decode_body(encode_frame(reply)[4:]) == reply


def test_the_artifact_sent_to_workers_hashes_to_the_model(demo_model: PrognosticModel) -> None:
    from device.model import load_model

    art = pool_mod.artifact_json(demo_model)
    assert art is not None and load_model(art).sha256 == demo_model.sha256


AUD, STARTED = "http://testserver/fhir", "2026-11-29T00:00:00Z"


def test_an_app_with_batch_workers_answers_a_large_batch_as_one_without(
        tmp_path: Path, demo_model: PrognosticModel) -> None:
    key = load_or_create_key(tmp_path / "token.pem")
    headers = {"Authorization": "Bearer " + issue_token(key, scopes="user/RiskAssessment.c", subject="dr-who",
                                                        audience=AUD),
               "Content-Type": "application/fhir+json"}
    body = batch(300)
    risks = []
    for workers in (2, 0):
        store = FhirStore(tmp_path / f"fhir-{workers}.sqlite")
        st = ServerState(base_url=AUD, verifier=TokenVerifier(key.public_key(), AUD), store=store,
                         models=FixedModel(demo_model), software_version="test", started=STARTED)
        app = create_app(st, batch_workers=workers)
        with TestClient(app) as c:
            resp = c.post("/fhir", json=body, headers=headers)
        store.close()
        assert resp.status_code == 200, resp.text
        out = resp.json()["entry"]
        risks.append([[p["probabilityDecimal"] for p in e["resource"]["prediction"]] if "resource" in e
                      else e["response"]["status"] for e in out])
        assert all(e["resource"]["id"] in e["response"]["location"] for e in out if "resource" in e)
        if workers:
            pool: ScoringPool = app.state.pool
            assert pool.size == 2 and not any(alive(pid) for pid in pool.pids)  # closed at shutdown
            assert all(w.model == demo_model.sha256 for w in pool._workers)  # they scored the batch
        else:
            assert app.state.pool is None
    assert risks[0] == comparable(risks[1])
    assert sum(isinstance(r, list) for r in risks[0]) == 296
