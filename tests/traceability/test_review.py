"""Suspect links and their review (traceability.review, ``fedprog trace review``)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from fedprog import trace_cmd
from tests.traceability import PASSING, baseline, write_folder
from traceability.check import gaps
from traceability.load import RequirementsError, load_requirements
from traceability.results import TestResult, TestRun
from traceability.review import review, review_all
from traceability.schema import fingerprint

pytestmark = pytest.mark.req("SRS-TRACE-005")
RUN = TestRun(commit="c", date="d", environment_sha256="e",
              tests=[TestResult(n, "passed", r) for n, (_, r) in PASSING.items()])


def suspects(folder: Path) -> list[str]:
    return [g.id for g in gaps(load_requirements(folder), RUN) if g.kind == "suspect-link"]


def raw(folder: Path, name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = yaml.safe_load((folder / name).read_text(encoding="utf-8"))
    return data


def edit_system_text(folder: Path) -> None:
    data = raw(folder, "needs.yaml")
    data[1]["text"] = "The system now does something else — with ünïcode."
    (folder / "needs.yaml").write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
                                       encoding="utf-8")


def test_review_clears_one_suspect_link_and_nothing_else(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, baseline())
    edit_system_text(folder)
    assert suspects(folder) == ["SRS-DEMO-001", "SRS-DEMO-002"]
    (folder / "software.yaml").chmod(0o640)
    before = raw(folder, "software.yaml")
    others = {n: (folder / n).read_bytes() for n in ("needs.yaml", "risk.yaml")}

    stored = review("SRS-DEMO-001", folder)

    assert stored == {"SYS-DEMO-001": fingerprint(load_requirements(folder).items["SYS-DEMO-001"])}
    assert suspects(folder) == ["SRS-DEMO-002"]  # one id at a time
    after = raw(folder, "software.yaml")
    assert after[1] == before[1]  # the other item untouched
    assert list(after[0]) == list(before[0])  # field order kept
    assert {k: v for k, v in after[0].items() if k != "reviewed"} == \
        {k: v for k, v in before[0].items() if k != "reviewed"}
    assert {n: (folder / n).read_bytes() for n in others} == others  # other files untouched
    assert stat.S_IMODE((folder / "software.yaml").stat().st_mode) == 0o640
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temp file left
    assert review("SRS-DEMO-002", folder) and suspects(folder) == []


def test_review_adds_missing_record_and_keeps_unicode(tmp_path: Path) -> None:
    files = baseline()
    del files["risk.yaml"][1]["reviewed"]
    files["risk.yaml"][1]["rationale"] = "Ärzte sehen den Grund."
    folder = write_folder(tmp_path, files)
    assert suspects(folder) == ["RC-DEMO-001", "RC-DEMO-001"]
    review("RC-DEMO-001", folder)
    assert suspects(folder) == []
    text = (folder / "risk.yaml").read_text(encoding="utf-8")
    assert "Ärzte" in text and list(raw(folder, "risk.yaml")[1])[-1] == "reviewed"


def test_review_item_without_parents_writes_nothing(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, baseline())
    before = (folder / "needs.yaml").read_bytes()
    assert review("UN-DEMO-001", folder) == {}
    assert (folder / "needs.yaml").read_bytes() == before


def test_review_unknown_id_or_broken_folder(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, baseline())
    with pytest.raises(RequirementsError, match="unknown requirement id 'SRS-NOPE-001'"):
        review("SRS-NOPE-001", folder)
    (folder / "broken.yaml").write_text("- id: [\n")
    with pytest.raises(RequirementsError, match="not valid YAML"):
        review("SRS-DEMO-001", folder)


def test_review_all_baselines_everything(tmp_path: Path) -> None:
    files = baseline()
    for raws in files.values():
        for item in raws:
            item.pop("reviewed", None)
    folder = write_folder(tmp_path, files)
    assert len(suspects(folder)) == 6
    assert review_all(folder) == [
        "HAZ-DEMO-001", "RC-DEMO-001", "SRS-DEMO-001", "SRS-DEMO-002", "SYS-DEMO-001"]
    assert suspects(folder) == [] and review_all(folder) == []


def test_write_failure_leaves_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_folder(tmp_path, baseline())
    edit_system_text(folder)
    before = (folder / "software.yaml").read_bytes()

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="No space"):
        review("SRS-DEMO-001", folder)
    assert (folder / "software.yaml").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["needs.yaml", "risk.yaml", "software.yaml"]


def test_cli_review_one_or_all(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, baseline())
    edit_system_text(folder)
    runner = CliRunner()
    result = runner.invoke(trace_cmd.app, ["review", "SRS-DEMO-001", "--requirements", str(folder)])
    assert result.exit_code == 0 and result.stdout.strip() == "SRS-DEMO-001 reviewed against SYS-DEMO-001"
    assert suspects(folder) == ["SRS-DEMO-002"]
    for args in ([], ["SRS-DEMO-002", "--all"]):
        refused = runner.invoke(trace_cmd.app, ["review", *args, "--requirements", str(folder)])
        assert refused.exit_code == 2 and "exactly one of ID or --all" in refused.stderr
    assert suspects(folder) == ["SRS-DEMO-002"]
    unknown = runner.invoke(trace_cmd.app, ["review", "SRS-NOPE-001", "--requirements", str(folder)])
    assert unknown.exit_code == 2 and unknown.stderr.count("\n") == 1
    result = runner.invoke(trace_cmd.app, ["review", "--all", "--requirements", str(folder)])
    assert result.exit_code == 0 and result.stdout.strip() == "1 items reviewed: SRS-DEMO-002"
    assert suspects(folder) == []
