"""Revocation windows (issue 15): a released model named by a consent revocation stays in service
flagged ``retrain due`` until a successor is released or its deadline passes (simulated clock)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from device.fhir.errors import FhirError
from device.fhir.service import ReleasedModel
from device.registry import ModelEntry, ModelRegistry, RegistryError
from device.revocation import RETRAIN_DUE
from ledger.checkpoint import NoteSigner
from ledger.log import Ledger

from .test_model import demo_artifact, reseal
from .test_registry import JOB, PEOPLE, release, report

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


class Clock:
    """A settable clock for the registry (aware UTC datetimes)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


def released_registry(tmp_path: Path, clock: Clock, study: dict[str, Any] | None = None) -> ModelRegistry:
    """A registry whose demo model (job ``JOB``) is validated and released under ``study``."""
    ledger = Ledger(tmp_path / "ledger.sqlite", signer=NoteSigner.generate("test/log"), origin="test/log")
    registry = ModelRegistry(tmp_path / "models", ledger, clock=clock, people=PEOPLE)
    registry.register(demo_artifact(), JOB, study=study if study is not None else {})
    ref = registry.list()[-1].ref
    registry.record_validation(ref, report(True))
    release(registry, ref)
    return registry


@pytest.fixture
def registry(tmp_path: Path, clock: Clock) -> Iterator[ModelRegistry]:
    reg = released_registry(tmp_path, clock)
    yield reg
    reg.ledger.close()


def revoke(registry: ModelRegistry, n: int = 1, *, job: str = JOB, site: str = "site-a",
           start: int = 0) -> None:
    """``n`` revocation entries naming ``job``, each of a different patient (commitment) at ``site``."""
    for k in range(start, start + n):
        registry.ledger.append("revocation", {"site": site, "commitment": f"{k:064x}", "affects_jobs": [job]})


def first(registry: ModelRegistry) -> ModelEntry:
    """The first registered model (the released one), as replayed now."""
    return registry.list()[0]


def flags(registry: ModelRegistry) -> list[dict[str, Any]]:
    return [body for _, _, body in registry.ledger.entries(RETRAIN_DUE)]


@pytest.mark.req("SRS-CONS-007")
def test_one_revocation_flags_the_released_model_which_stays_served(registry: ModelRegistry,
                                                                   clock: Clock) -> None:
    server = ReleasedModel(registry)
    sha = server.current().sha256
    revoke(registry)
    entry = first(registry)
    assert entry.status == "released" and entry.affected_by_revocation and entry.retrain is not None
    assert (entry.retrain.revocations, entry.retrain.needed, entry.retrain.due) == (1, 5, False)
    assert registry.released().sha256 == sha  # the server's lookup still finds it
    clock.advance(hours=2)
    assert server.current().sha256 == sha  # no 503; the refresh opened the window in the ledger
    [body] = flags(registry)
    assert body["at"] == "2026-03-02T11:30:00Z" and body["deadline"] == "2026-04-01T11:30:00Z"
    terms = (body["sha256"], body["revocations"], body["min_revocations"], body["window_days"])
    assert terms == (sha, 1, 5, 30)
    assert "commitment" not in body and "site" not in body  # aggregates only
    assert registry.note_revocations() == [] and len(flags(registry)) == 1  # opened once
    flagged = first(registry).retrain
    assert flagged is not None and flagged.since == T0 + timedelta(hours=2)
    assert first(registry).to_dict()["retrain_due"]["deadline"] == "2026-04-01T11:30:00Z"
    assert [m.ref for m in registry.retrain_due()] == [entry.ref]


@pytest.mark.req("SRS-CONS-007")
def test_a_candidate_named_by_a_revocation_is_affected_at_once(tmp_path: Path, clock: Clock) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite", signer=NoteSigner.generate("test/log"), origin="test/log")
    registry = ModelRegistry(tmp_path / "models", ledger, clock=clock, people=PEOPLE)
    registry.register(demo_artifact(), JOB, study={})
    ref = registry.list()[-1].ref
    registry.record_validation(ref, report(True))
    revoke(registry)
    assert registry.get(ref).status == "affected" and registry.get(ref).retrain is None
    assert registry.note_revocations() == []
    with pytest.raises(RegistryError, match="affected by a consent revocation"):
        release(registry, ref)


@pytest.mark.req("SRS-CONS-008")
def test_a_successor_is_due_at_min_revocations(registry: ModelRegistry) -> None:
    revoke(registry, 4)
    revoke(registry, job="other@1", start=9)
    flagged = first(registry).retrain
    assert flagged is not None and (flagged.revocations, flagged.due) == (4, False)  # other jobs do not count
    revoke(registry, 1, start=4, site="site-b")
    flagged = first(registry).retrain
    assert flagged is not None and (flagged.revocations, flagged.due, flagged.expired) == (5, True, False)
    assert first(registry).status == "released" and registry.released().ref == first(registry).ref


@pytest.mark.req("SRS-CONS-008", "SRS-CONS-009")
def test_due_at_the_deadline_then_out_of_service(registry: ModelRegistry, clock: Clock) -> None:
    server = ReleasedModel(registry)
    server.current()
    revoke(registry, 2)
    server.current()  # opens the window at T0
    size = registry.ledger.size
    clock.advance(days=30, seconds=-1)
    flagged = first(registry).retrain
    assert flagged is not None and not flagged.due and server.current() is not None
    clock.advance(seconds=1)  # the deadline: due with 2 of 5, and the window is enforced
    entry = first(registry)
    assert entry.retrain is not None and entry.retrain.due and entry.retrain.expired
    assert entry.status == "affected" and entry.lifecycle == "released"
    assert "deadline passed" in entry.retrain.summary()
    with pytest.raises(RegistryError, match="no released model"):
        registry.released()
    with pytest.raises(FhirError) as exc:
        server.current()  # 503 at the deadline although the ledger did not grow
    assert exc.value.status == 503 and registry.ledger.size == size
    assert [m.ref for m in registry.retrain_due()] == [entry.ref]  # overdue: still listed


@pytest.mark.req("SRS-CONS-009")
def test_a_released_successor_clears_the_flag(registry: ModelRegistry, clock: Clock) -> None:
    old_ref = first(registry).ref
    server = ReleasedModel(registry)
    revoke(registry)
    assert server.current().ref == old_ref
    art = demo_artifact()
    art["version"] = "2"
    registry.register(reseal(art), "demo@2", predecessor=old_ref, study={})
    second = registry.list()[-1].ref
    registry.record_validation(second, report(True))
    assert registry.get(old_ref).retrain is not None  # a validated successor does not clear it yet
    release(registry, second, significant_change="assessed as a new version (no plan here)")
    old = registry.get(old_ref)
    assert old.retrain is None and old.status == "affected" and registry.retrain_due() == []
    assert server.current().ref == second and registry.get(second).retrain is None
    clock.advance(days=60)  # past the old deadline: the successor serves on
    assert server.current().ref == second
    registry.withdraw(second, reason="field safety notice")
    with pytest.raises(FhirError):  # the flagged predecessor never comes back
        server.current()


@pytest.mark.req("SRS-CONS-008")
def test_the_study_sets_the_terms_and_the_recorded_terms_win(tmp_path: Path, clock: Clock) -> None:
    registry = released_registry(tmp_path, clock, {"policy": {"min_cell_count": 3},
                                                   "revocation": {"window_days": 10}})
    revoke(registry)
    flagged = first(registry).retrain
    assert flagged is not None and (flagged.needed, flagged.window_days, flagged.since) == (3, 10, None)
    assert flagged.deadline == T0 + timedelta(days=10)
    registry.note_revocations()
    study = registry.folder / f"{first(registry).sha256}.study.json"
    study.write_text('{"revocation": {"window_days": 90, "min_revocations": 2}}')
    revoke(registry, start=1)
    flagged = first(registry).retrain
    assert flagged is not None and (flagged.needed, flagged.revocations, flagged.due) == (3, 2, False)
    clock.advance(days=10)
    assert first(registry).status == "affected"
