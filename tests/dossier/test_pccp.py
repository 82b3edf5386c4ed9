"""FP-PCCP, the predetermined change control plan, rendered from regulatory/change_control_plan.yaml: the
plan in full, and for a successor the assessment its release ledger entry records — or, honestly, that
none is recorded.

The inputs are built here rather than gathered from the demo workspace: the document reads the documented
model, its ledger anchors and the source checkout only, and a successor with a recorded assessment is
what the demo workspace does not hold.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from device.change_control import RELATIVE_PATH, assess_change, load_plan
from device.registry import ModelEntry
from dossier.build import DOCUMENTS, build, control
from dossier.documents.pccp import SPEC
from dossier.inputs import checkout
from dossier.spec import DossierError, DossierInputs, LedgerSummary
from dossier.style import render
from tests.device.test_change_control import RELEASED_C, RELEASED_EO, RELEASED_SLOPE, report
from tests.device.test_model import demo_artifact, reseal
from tests.dossier.test_documents_b import assert_renders_identically_naming_the_model

SOURCE = checkout()
PLAN = load_plan(Path(str(SOURCE)) / RELATIVE_PATH)


def _entry(art: dict[str, Any], predecessor: str | None) -> ModelEntry:
    return ModelEntry(art["model_id"], art["version"], art["sha256"], f"job@{art['version']}", "released",
                      700, None, predecessor, False,
                      ((700, "candidate"), (702, "validated"), (703, "released")),
                      {"ledger_index": 702, "report_sha256": "a" * 64, "passed": True})


def _inputs(art: dict[str, Any], predecessor: str | None, anchors: list[dict[str, Any]]) -> DossierInputs:
    ledger = LedgerSummary(size=704, root="b" * 64, origin="test/log", checkpoints=3,
                           latest_checkpoint_size=704, cosigners=["hospital-a"], witnesses=["hospital-a"],
                           entries_by_kind={"release": 1},
                           anchors=[{"index": 700, "kind": "model", "job": "job", "predecessor": predecessor},
                                    *anchors], verified=True)
    return DossierInputs(workspace=Path("unused"), date="2026-01-02", revision=art["version"],
                         device="fedprog", device_version="0.0-test", commit="c" * 40,
                         model=_entry(art, predecessor), artifact=art, ledger=ledger, source=SOURCE,
                         sbom={"file": "sbom.cdx.json", "spec_version": "1.6", "components": 0},
                         sbom_json="{}")


def _successor(change: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The demo model moved by a fifth of an SE (a routine retrain), or with ``change`` made to it."""
    art = copy.deepcopy(demo_artifact())
    art["version"] = "2"
    art["coefficients"]["pnodes"] += 0.2 * art["standard_errors"]["pnodes"]
    if change == "range":
        next(i for i in art["inputs"] if i["name"] == "pnodes")["max"] = 21.0
    art = reseal(art)
    return art, report(art, 0.6741, (1.121, 1.252, 1.121), (0.9032, 0.916))


def _assessed(change: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A successor and the ``change_control`` its release entry would record."""
    old = demo_artifact()
    new, new_report = _successor(change)
    result = assess_change(PLAN, old, report(old, RELEASED_C, RELEASED_SLOPE, RELEASED_EO), new, new_report)
    return new, result.to_ledger()


def _released(art: dict[str, Any], cc: dict[str, Any]) -> DossierInputs:
    """A successor whose (honoured, approver-signed) release entry records ``cc`` under ``change_control``."""
    inputs = _inputs(art, "gbsg2-recurrence@1", [{"index": 703, "kind": "release"}])
    return dataclasses.replace(inputs, release_change_control=cc)


def text(inputs: DossierInputs, folder: Path) -> str:
    path = folder / SPEC.file
    render(path, control(inputs, SPEC), SPEC.build(inputs), toc=SPEC.toc)
    return " ".join(" ".join(p.extract_text() or "" for p in PdfReader(path).pages).split())


def squeezed(s: str) -> str:
    """Without whitespace: an id a narrow table cell wraps still reads whole."""
    return "".join(s.split())


@pytest.mark.req("SRS-DOS-040")
def test_the_plan_is_built_into_the_dossier_in_full(tmp_path: Path) -> None:
    art = demo_artifact()
    manifest = build(_inputs(art, None, []), tmp_path / "out", anchor=None, documents=[SPEC])
    assert [d["id"] for d in manifest.data["documents"]] == ["FP-PCCP"] and SPEC in DOCUMENTS
    words = " ".join(" ".join(p.extract_text() or "" for p in PdfReader(tmp_path / "out" / SPEC.file).pages)
                     .split())
    flat = squeezed(words)
    assert PLAN.id in words and PLAN.sha256 in flat and "MDCG 2020-3" in words
    assert "not accepted by a notified body" in words  # the plan file records no acceptance
    for clause in PLAN.clauses:
        assert squeezed(clause.id) in flat and squeezed(clause.text) in flat
    plan_text = (*PLAN.significant_changes, *PLAN.protocol.update_procedure, *PLAN.modification.triggers)
    for statement in plan_text:
        assert squeezed(statement) in flat
    b = PLAN.bounds
    for bound in (f"≤ {b.coefficient_z:g} × released SE", f"pooled C ≥ released − {b.harrell_c_margin:g}",
                  f"in [{b.calibration_slope.min:g}, {b.calibration_slope.max:g}]",
                  f"{b.min_cohort_fraction:.0%} of the released"):
        assert squeezed(bound) in flat
    assert f"{art['model_id']}@{art['version']} is a first version" in words


@pytest.mark.req("SRS-DOS-040")
def test_a_successor_within_the_plan_shows_the_assessment_its_release_recorded(tmp_path: Path) -> None:
    art, cc = _assessed()
    assert cc["within_plan"] is True
    words = text(_released(art, cc), tmp_path)
    assert "WITHIN the plan" in words and "DIFFERS" not in words and "Not assessed" not in words
    assert squeezed(cc["predecessor"]["sha256"]) in squeezed(words)
    assert all(squeezed(f"{clause} passed") in squeezed(words) for clause in cc["passed"])


@pytest.mark.req("SRS-DOS-040")
def test_a_successor_outside_the_plan_shows_the_clause_it_broke(tmp_path: Path) -> None:
    art, cc = _assessed("range")
    failed = {f["id"]: f["detail"] for f in cc["failed"]}
    assert list(failed) == ["PCCP-SPEC-INPUTS"]
    words = text(_released(art, cc), tmp_path)
    assert "OUTSIDE the plan: a significant change" in words
    assert squeezed(f"PCCP-SPEC-INPUTS FAILED {failed['PCCP-SPEC-INPUTS']}") in squeezed(words)


@pytest.mark.req("SRS-DOS-040")
def test_an_assessment_under_another_plan_is_said_to_differ(tmp_path: Path) -> None:
    art, cc = _assessed()
    cc = {**cc, "plan_sha256": "d" * 64}
    words = text(_released(art, cc), tmp_path)
    assert "DIFFERS from the plan printed here" in words


@pytest.mark.req("SRS-DOS-040")
@pytest.mark.parametrize("anchors, why", [
    ([{"index": 703, "kind": "release", "reason": "retrained"}], "records no change control assessment"),
    ([], "it has not been released"),
], ids=["released without assessment", "not released"])
def test_a_successor_without_a_recorded_assessment_is_not_assessed(
        tmp_path: Path, anchors: list[dict[str, Any]], why: str) -> None:
    art, _ = _successor()
    words = text(_inputs(art, "gbsg2-recurrence@1", anchors), tmp_path)
    assert "Not assessed" in words and why in words and "WITHIN the plan" not in words
    assert "No claim is made here that it lies within the plan" in words


@pytest.mark.req("SRS-DOS-040")
def test_renders_identically_naming_the_model_on_every_page(tmp_path: Path) -> None:
    art, cc = _assessed()
    inputs = _released(art, cc)
    assert assert_renders_identically_naming_the_model(SPEC, inputs, tmp_path) >= 3


@pytest.mark.req("SRS-DOS-040")
def test_a_missing_or_bad_plan_and_missing_inputs_are_named(tmp_path: Path) -> None:
    inputs = _inputs(demo_artifact(), None, [])
    with pytest.raises(DossierError, match="change control plan is missing"):
        SPEC.build(dataclasses.replace(inputs, source=tmp_path))
    bad = tmp_path / RELATIVE_PATH
    bad.parent.mkdir(parents=True)
    bad.write_text((Path(str(SOURCE)) / RELATIVE_PATH).read_text(encoding="utf-8").replace(
        "coefficient_z: 1.0", "coefficient_z: 5.0"), encoding="utf-8")
    with pytest.raises(DossierError, match=r"bounds\.coefficient_z: Input should be less than or equal to 3"):
        SPEC.build(dataclasses.replace(inputs, source=tmp_path))
    with pytest.raises(DossierError, match="needs the change control plan"):
        SPEC.build(dataclasses.replace(inputs, source=None))
    for lacking in (dataclasses.replace(inputs, model=None), dataclasses.replace(inputs, ledger=None)):
        with pytest.raises(DossierError, match="FP-PCCP needs"):
            SPEC.build(lacking)
