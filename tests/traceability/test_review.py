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
from tests.traceability import PASSING, baseline, junit_xml, links_file, sha_of, write_folder
from traceability.check import gaps
from traceability.links import load_links
from traceability.load import RequirementsError, load_requirements
from traceability.results import TestResult, TestRun
from traceability.review import review, today
from traceability.schema import fingerprint

pytestmark = pytest.mark.req("SRS-TRACE-005")
RUN = TestRun(commit="c", date="d", environment_sha256="e",
              tests=[TestResult(n, "passed", r) for n, (_, r) in PASSING.items()])
WHO = "A. Reviewer"


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

    stored = review(["SRS-DEMO-001"], WHO, folder)

    system = load_requirements(folder).items["SYS-DEMO-001"]
    assert stored == {"SRS-DEMO-001": {"SYS-DEMO-001": fingerprint(system)}}
    assert suspects(folder) == ["SRS-DEMO-002"]  # one id at a time
    after = raw(folder, "software.yaml")
    assert after[1] == before[1]  # the other item untouched
    assert list(after[0]) == [*before[0], "reviewed_by", "reviewed_at"]  # right after reviewed (last)
    assert (after[0]["reviewed_by"], after[0]["reviewed_at"]) == (WHO, today().isoformat())
    assert load_requirements(folder).items["SRS-DEMO-001"].reviewed_at == today()
    bookkeeping = {"reviewed", "reviewed_by", "reviewed_at"}
    assert {k: v for k, v in after[0].items() if k not in bookkeeping} == \
        {k: v for k, v in before[0].items() if k not in bookkeeping}
    assert {n: (folder / n).read_bytes() for n in others} == others  # other files untouched
    assert stat.S_IMODE((folder / "software.yaml").stat().st_mode) == 0o640
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temp file left
    assert review(["SRS-DEMO-002"], WHO, folder) and suspects(folder) == []


def test_review_adds_missing_record_and_keeps_unicode(tmp_path: Path) -> None:
    files = baseline()
    del files["risk.yaml"][1]["reviewed"]
    files["risk.yaml"][1]["rationale"] = "Ärzte sehen den Grund."
    folder = write_folder(tmp_path, files)
    assert suspects(folder) == ["RC-DEMO-001", "RC-DEMO-001"]
    review(["RC-DEMO-001"], WHO, folder)
    assert suspects(folder) == []
    text = (folder / "risk.yaml").read_text(encoding="utf-8")
    assert "Ärzte" in text and list(raw(folder, "risk.yaml")[1])[-3:] == ["reviewed", "reviewed_by",
                                                                          "reviewed_at"]


def test_review_item_without_parents_writes_nothing(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, baseline())
    before = (folder / "needs.yaml").read_bytes()
    assert review(["UN-DEMO-001"], WHO, folder) == {"UN-DEMO-001": {}}
    assert (folder / "needs.yaml").read_bytes() == before


def test_review_unknown_id_or_broken_folder(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, baseline())
    edit_system_text(folder)
    before = (folder / "software.yaml").read_bytes()
    with pytest.raises(RequirementsError, match="unknown requirement id 'SRS-NOPE-001'"):
        review(["SRS-DEMO-001", "SRS-NOPE-001"], WHO, folder)  # nothing written for the good id either
    with pytest.raises(RequirementsError, match="names the reviewer"):
        review(["SRS-DEMO-001"], "  ", folder)
    assert (folder / "software.yaml").read_bytes() == before
    (folder / "broken.yaml").write_text("- id: [\n")
    with pytest.raises(RequirementsError, match="not valid YAML"):
        review(["SRS-DEMO-001"], WHO, folder)


def test_several_ids_in_one_review(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, baseline())
    edit_system_text(folder)
    review(["SRS-DEMO-001", "SRS-DEMO-002"], WHO, folder)
    assert suspects(folder) == []


def test_write_failure_leaves_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_folder(tmp_path, baseline())
    edit_system_text(folder)
    before = (folder / "software.yaml").read_bytes()

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="No space"):
        review(["SRS-DEMO-001"], WHO, folder)
    assert (folder / "software.yaml").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["needs.yaml", "risk.yaml", "software.yaml"]


def cli(*args: str | Path) -> Any:
    return CliRunner().invoke(trace_cmd.app, ["review", *map(str, args)], env={"COLUMNS": "200"})


@pytest.mark.req("SRS-TRACE-008")
def test_cli_review_records_who_and_when_for_parent_and_test_links(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "reqs", baseline())
    edit_system_text(folder)
    junit = junit_xml(tmp_path / "junit.xml", PASSING)
    links = tmp_path / "links.yaml"
    result = cli("SRS-DEMO-001", "--by", WHO, "--junit", junit, "--links", links, "--requirements", folder)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"SRS-DEMO-001 reviewed by {WHO} against SYS-DEMO-001; 1 test"
    assert suspects(folder) == ["SRS-DEMO-002"]
    (link,) = load_links(links).values()  # only the named item's test link
    assert (link.req, link.test, link.test_sha256) == ("SRS-DEMO-001", "tests/test_demo.py::test_one",
                                                       sha_of("tests/test_demo.py::test_one"))
    assert (link.reviewed_by, link.reviewed_at) == (WHO, today())
    assert link.req_fingerprint == fingerprint(load_requirements(folder).items["SRS-DEMO-001"])
    assert raw(folder, "software.yaml")[0]["reviewed_by"] == WHO


@pytest.mark.req("SRS-TRACE-008")
@pytest.mark.parametrize(("args", "expected"), [
    (["SRS-DEMO-001"], "Missing option '--by'"),
    (["SRS-DEMO-001", "--by", " "], "--by names the reviewer"),
    (["--all", "--by", WHO], "No such option '--all'"),
    (["--by", WHO], "Missing argument 'ID...'"),
    (["SRS-NOPE-001", "--by", WHO], "unknown requirement id 'SRS-NOPE-001'"),
])
def test_cli_review_is_refused_without_a_reviewer_or_an_id(tmp_path: Path, args: list[str],
                                                           expected: str) -> None:
    folder = write_folder(tmp_path / "reqs", baseline())
    edit_system_text(folder)
    junit = junit_xml(tmp_path / "junit.xml", PASSING)
    links = links_file(tmp_path / "links.yaml", folder, {})
    before = {p: p.read_bytes() for p in [*folder.iterdir(), links]}
    result = cli(*args, "--junit", junit, "--links", links, "--requirements", folder)
    assert result.exit_code == 2 and expected in result.output
    assert {p: p.read_bytes() for p in before} == before  # nothing reviewed
    assert suspects(folder) == ["SRS-DEMO-001", "SRS-DEMO-002"]


@pytest.mark.req("SRS-TRACE-008")
def test_a_review_replaces_only_the_named_items_test_links(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "reqs", baseline())
    links = links_file(tmp_path / "links.yaml", folder, PASSING, by="First Reviewer")
    moved = {"tests/test_demo.py::test_one": ("passed", ("SYS-DEMO-001",)),  # SRS-DEMO-001 mark removed
             "tests/test_demo.py::test_new": ("passed", ("SRS-DEMO-001",)),
             "tests/test_demo.py::TestTwo::test_two[a]": ("passed", ("SRS-DEMO-002", "RC-DEMO-001"))}
    junit = junit_xml(tmp_path / "junit.xml", moved)
    assert cli("SRS-DEMO-001", "--by", WHO, "--junit", junit, "--links", links,
               "--requirements", folder).exit_code == 0
    got = {k: v.reviewed_by for k, v in load_links(links).items()}
    assert got == {("SRS-DEMO-001", "tests/test_demo.py::test_new"): WHO,
                   ("SYS-DEMO-001", "tests/test_demo.py::test_one"): "First Reviewer",
                   ("SRS-DEMO-002", "tests/test_demo.py::TestTwo::test_two"): "First Reviewer",
                   ("RC-DEMO-001", "tests/test_demo.py::TestTwo::test_two"): "First Reviewer"}
