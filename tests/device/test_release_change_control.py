"""The release gate applies the change control plan to a successor (FDA PCCP; MDCG 2020-3).

Adversary: an operator who retrains with a degraded model and hopes it ships as a routine update, or
who appends a release entry claiming the plan was met."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from device.registry import ModelRegistry, RegistryError
from ledger.checkpoint import NoteSigner
from ledger.log import Ledger
from tests.conftest import signed_release

from .test_change_control import PLAN, RELEASED_C, RELEASED_EO, RELEASED_SLOPE, _retrained, report
from .test_model import demo_artifact, reseal
from .test_registry import KEY, PEOPLE, PERSON


def _validated(reg: ModelRegistry, art: dict[str, Any], rep: dict[str, Any], job: str,
               predecessor: str | None = None) -> str:
    reg.register(art, job, predecessor=predecessor)
    ref = f"{art['model_id']}@{art['version']}"
    reg.record_validation(ref, {**rep, "verification": {"status": "passed", "tests": 1}})
    return ref


@pytest.fixture
def registry(tmp_path: Path) -> tuple[ModelRegistry, str]:
    ledger = Ledger(tmp_path / "ledger.sqlite", signer=NoteSigner.generate("test/log"), origin="test/log")
    reg = ModelRegistry(tmp_path / "models", ledger, people=PEOPLE, plan=PLAN)
    art = demo_artifact()
    first = _validated(reg, art, report(art, RELEASED_C, RELEASED_SLOPE, RELEASED_EO), "demo@1")
    signed_release(reg, first, PERSON, KEY)
    return reg, first


@pytest.mark.req("SRS-REG-007", "RC-REG-002")
def test_a_successor_within_the_plan_is_released_with_its_signed_assessment(
        registry: tuple[ModelRegistry, str]) -> None:
    reg, first = registry
    art = json.loads(_retrained())
    ref = _validated(reg, art, report(art, 0.6741, (1.121, 1.252, 1.121), (0.9032, 0.9160)), "demo@2", first)
    signed_release(reg, ref, PERSON, KEY)
    body = reg.ledger.entries("release")[-1][2]
    assert reg.get(ref).status == "released"
    assert body["change_control"]["within_plan"] is True and body["change_control"]["failed"] == []
    assert body["approval"]["statement"]["change_control"]["within_plan"] is True  # the approver signed it


@pytest.mark.req("SRS-REG-007", "RC-REG-002")
def test_a_degraded_successor_is_refused_as_a_significant_change(registry: tuple[ModelRegistry, str]) -> None:
    reg, first = registry
    art = json.loads(_retrained())
    worse = report(art, RELEASED_C - 0.05, (1.121, 1.252, 1.121), (0.9032, 0.9160))  # C fell by 0.05
    ref = _validated(reg, art, worse, "demo@2", first)
    with pytest.raises(RegistryError, match=r"outside the change control plan .*PCCP-PERF-C"):
        signed_release(reg, ref, PERSON, KEY)
    assert reg.get(ref).status == "validated"
    # a release entry copied from an honest one, claiming the plan was met: not honoured
    honest = copy.deepcopy(reg.ledger.entries("release")[-1][2])
    entry = reg.get(ref)
    forged = {**honest, "model": entry.ref, "sha256": entry.sha256,
              "report_sha256": entry.validation["report_sha256"],
              "change_control": {"plan_sha256": "x", "within_plan": True}}
    reg.ledger.append("release", forged)
    assert reg.get(ref).status == "validated"
    # a new assessment, named, lets it through — recorded with the failed clause, and signed
    signed_release(reg, ref, PERSON, KEY, significant_change="CER rev 3 and notified body letter 2026-12")
    record = reg.ledger.entries("release")[-1][2]["change_control"]
    assert reg.get(ref).status == "released" and record["within_plan"] is False
    assert record["significant_change"].startswith("CER rev 3") and record["failed"][0]["id"] == "PCCP-PERF-C"


@pytest.mark.req("SRS-REG-007")
def test_without_a_plan_every_successor_is_a_significant_change(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite", signer=NoteSigner.generate("test/log"), origin="test/log")
    reg = ModelRegistry(tmp_path / "models", ledger, people=PEOPLE, plan=tmp_path / "no-plan.yaml")
    art = demo_artifact()
    first = _validated(reg, art, report(art, RELEASED_C, RELEASED_SLOPE, RELEASED_EO), "demo@1")
    signed_release(reg, first, PERSON, KEY)  # a first version is not a change
    nxt = copy.deepcopy(art)
    nxt["version"] = "2"
    ref = _validated(reg, reseal(nxt), report(nxt, RELEASED_C, RELEASED_SLOPE, RELEASED_EO), "demo@2", first)
    with pytest.raises(RegistryError, match="no change control plan is available"):
        signed_release(reg, ref, PERSON, KEY)


@pytest.mark.req("SRS-REG-007", "RC-REG-002")
def test_a_successor_registered_without_its_predecessor_is_still_assessed(
        registry: tuple[ModelRegistry, str]) -> None:
    """Adversary: an operator who registers a degraded retrain of a released model as if it were a
    first version (no predecessor), hoping to skip the plan."""
    reg, _ = registry
    art = json.loads(_retrained())
    worse = report(art, RELEASED_C - 0.05, (1.121, 1.252, 1.121), (0.9032, 0.9160))
    ref = _validated(reg, art, worse, "demo@2")  # no predecessor named
    with pytest.raises(RegistryError, match=r"outside the change control plan .*PCCP-PERF-C"):
        signed_release(reg, ref, PERSON, KEY)
    assert reg.get(ref).status == "validated"
