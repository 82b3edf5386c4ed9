"""The dossier builder: documents from the demo workspace, manifest, reproducibility, ledger anchor,
verification, missing inputs, and the ``fedprog dossier`` commands."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

import dossier.build
from dossier.build import DOCUMENTS, MANIFEST, Manifest, build, verify
from dossier.inputs import gather
from dossier.spec import DocumentSpec, DossierError
from fedprog import dossier_cmd
from fedprog.workspace import Workspace
from ledger.canonical import sealed_sha256
from ledger.log import Ledger
from tests.conftest import copy_workspace
from tests.dossier.conftest import DOCS, DUMMY

pytestmark = pytest.mark.req("SRS-DOS-001")

Built = tuple[Path, Manifest]


def pages_text(path: Path) -> list[str]:
    return [page.extract_text() or "" for page in PdfReader(path).pages]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dossier_entries(ws_dir: Path, digest: str) -> list[int]:
    return [i for i, _, b in Workspace(ws_dir).ledger.entries("dossier") if b["manifest_sha256"] == digest]


def unvalidated_candidate(ws_dir: Path) -> str:
    """Register a new version of the released model that was never validated; its ref."""
    ws = Workspace(ws_dir)
    artifact = {**ws.models.artifact(ws.models.released().ref), "version": "99"}
    artifact["sha256"] = sealed_sha256(artifact)
    ws.models.register(artifact, "test:never-validated")
    return f"{artifact['model_id']}@99"


def test_documents_are_discovered() -> None:
    ids = [d.id for d in DOCUMENTS]
    assert all(isinstance(d, DocumentSpec) for d in DOCUMENTS)
    assert len(ids) == len(set(ids)) and len({d.file for d in DOCUMENTS}) == len(DOCUMENTS)
    assert dossier.build.discover() == DOCUMENTS


def test_manifest_lists_every_document_with_hash_and_pages(built: Built, dossier_ws: Path) -> None:
    out, manifest = built
    data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    assert data == manifest.data and manifest.sha256 == sha(out / MANIFEST)
    assert [d["id"] for d in data["documents"]] == [d.id for d in DOCS]
    for doc in data["documents"]:
        assert set(doc) == {"id", "title", "file", "sha256", "pages", "content_sha256", "approvals"}
        assert doc["sha256"] == sha(out / doc["file"])
        assert doc["pages"] == len(PdfReader(out / doc["file"]).pages) >= 1
    ws = Workspace(dossier_ws)
    released = ws.models.released()
    assert data["model"]["ref"] == released.ref and data["model"]["sha256"] == released.sha256
    assert data["date"] == ws.models.report(released)["date"][:10]
    assert data["revision"] == released.version and data["generated_by"].startswith("fedprog ")
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", data["commit"])
    assert data["source_dirty"] in (True, False, None)
    assert data["sbom"]["sha256"] == sha(out / data["sbom"]["file"])
    sbom = json.loads((out / data["sbom"]["file"]).read_text(encoding="utf-8"))
    assert sbom["specVersion"] == "1.6" and sbom["metadata"]["timestamp"].startswith(data["date"])
    listed = {MANIFEST, data["sbom"]["file"], *(d["file"] for d in data["documents"])}
    assert {p.name for p in out.iterdir()} == listed


@pytest.mark.req("SRS-DOS-003")
def test_every_page_states_the_model_software_and_page_count(built: Built) -> None:
    out, manifest = built
    model, commit = manifest.data["model"], manifest.data["commit"]
    for doc in manifest.data["documents"]:
        text = pages_text(out / doc["file"])
        assert commit in text[0] and manifest.data["device"]["version"] in text[0] and doc["id"] in text[0]
        for n, page in enumerate(text, start=1):
            assert model["sha256"] in page, (doc["file"], n)
            assert f"Page {n} of {len(text)}" in page, (doc["file"], n)


def test_tables_split_with_repeated_header_and_figures_embedded(built: Built, dossier_ws: Path,
                                                                junit: Path) -> None:
    out, _ = built
    text = pages_text(out / DUMMY.file)
    whole = "\n".join(text)
    reqs = Workspace(dossier_ws)  # the requirement ids and the verdicts the dummy lays out
    inputs = gather(reqs.root, junit=junit)
    assert inputs.requirements is not None and inputs.validation is not None
    assert all(i in whole for i in inputs.requirements.items)
    assert all(c["id"] in whole for c in inputs.validation["criteria"]) and "PASS" in whole
    table_pages = [p for p in text if re.search(r"\n(software|system|hazard|risk-control|user-need)\n", p)]
    assert len(table_pages) >= 2 and all("Id\nType\nTitle\n" in p for p in table_pages)  # header repeated
    images = sum(len(page.images) for page in PdfReader(out / DUMMY.file).pages)
    assert images == len(inputs.validation["plots"]) >= 1


@pytest.mark.req("SRS-DOS-003")
def test_rebuild_is_byte_identical_and_anchored_once(built: Built, dossier_ws: Path, tmp_path: Path,
                                                     junit: Path) -> None:
    out, first = built
    ws = Workspace(dossier_ws)
    again = build(gather(dossier_ws, junit=junit), tmp_path / "again", anchor=ws.ledger, documents=DOCS)
    assert again.sha256 == first.sha256 and not again.anchored_now
    assert again.ledger_index == first.ledger_index is not None
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "again").iterdir())
    for path in out.iterdir():
        assert path.read_bytes() == (tmp_path / "again" / path.name).read_bytes(), path.name
    assert dossier_entries(dossier_ws, first.sha256) == [first.ledger_index]
    kind, body = ws.ledger.entry(first.ledger_index)
    model = first.data["model"]
    assert kind == "dossier" and body == {"manifest_sha256": first.sha256, "model": model["ref"],
                                          "model_sha256": model["sha256"], "commit": first.data["commit"],
                                          "documents": len(DOCS)}


def test_verify_passes_on_the_built_dossier(built: Built, dossier_ws: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert verify(built[0], Workspace(dossier_ws).ledger) == []
    monkeypatch.setitem(sys.modules, "pypdf", None)  # pypdf is a dev dependency: pages counted without it
    assert verify(built[0], Workspace(dossier_ws).ledger) == []


def _flip_byte(d: Path) -> str:
    path = d / DOCS[0].file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return DOCS[0].file


def _remove(d: Path) -> str:
    (d / DOCS[-1].file).unlink()
    return DOCS[-1].file


def _extra(d: Path) -> str:
    (d / "notes.txt").write_text("not part of the dossier\n")
    return "notes.txt"


def _edit_manifest(d: Path) -> str:
    data = json.loads((d / MANIFEST).read_text())
    data["date"] = "1999-01-01"
    (d / MANIFEST).write_text(json.dumps(data))
    return MANIFEST


@pytest.mark.parametrize("tamper", [_flip_byte, _remove, _extra, _edit_manifest], ids=lambda f: f.__name__)
def test_verify_names_the_file_that_was_tampered_with(built: Built, dossier_ws: Path, tmp_path: Path,
                                                      tamper: Callable[[Path], str]) -> None:
    copy = Path(shutil.copytree(built[0], tmp_path / "copy"))
    name = tamper(copy)
    problems = verify(copy, Workspace(dossier_ws).ledger)
    assert problems and any(p.startswith(f"{name}:") for p in problems), problems


def test_verify_fails_when_the_ledger_lacks_the_anchor(built: Built, tmp_path: Path) -> None:
    with Ledger(tmp_path / "other.sqlite") as other:
        problems = verify(built[0], other)
    assert problems == [f"{MANIFEST}: its sha256 {built[1].sha256[:16]}… is not anchored in the ledger "
                        "(no dossier entry names it)"]


def test_a_missing_validation_report_is_named_and_nothing_is_written(
        demo_workspace: Path, tmp_path: Path, junit: Path) -> None:
    ws_dir = copy_workspace(demo_workspace, tmp_path / "ws")
    ref = unvalidated_candidate(ws_dir)
    inputs = gather(ws_dir, model=ref, junit=junit)
    assert inputs.model is not None and inputs.model.ref == ref and inputs.validation is None
    size = Workspace(ws_dir).ledger.size
    with pytest.raises(DossierError, match="validation report"):
        build(inputs, tmp_path / "out", anchor=Workspace(ws_dir).ledger, documents=DOCS)
    if any("validation" in d.needs for d in DOCUMENTS):
        with pytest.raises(DossierError, match="validation report"):
            build(inputs, tmp_path / "out", anchor=None)
    assert not (tmp_path / "out").exists() and Workspace(ws_dir).ledger.size == size


def test_no_released_model_is_named(demo_workspace: Path, tmp_path: Path) -> None:
    ws_dir = copy_workspace(demo_workspace, tmp_path / "ws")
    ws = Workspace(ws_dir)
    ws.models.withdraw(ws.models.released().ref, reason="test")
    with pytest.raises(DossierError, match="no released model"):
        gather(ws_dir)
    with pytest.raises(DossierError, match="no model 'nope'"):
        gather(ws_dir, model="nope")
    with pytest.raises(DossierError, match="not a fedprog workspace"):
        gather(tmp_path / "nowhere")


def test_a_failing_document_leaves_nothing_half_written(built: Built, dossier_ws: Path,
                                                        tmp_path: Path, junit: Path) -> None:
    def broken(_: object) -> list[object]:
        raise RuntimeError("boom")

    bad = DocumentSpec(id="FP-BAD", title="Broken", file="bad.pdf", needs=(), build=broken)
    inputs = gather(dossier_ws, junit=junit)
    target = Path(shutil.copytree(built[0], tmp_path / "previous"))
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    for out in (tmp_path / "new", target):
        with pytest.raises(RuntimeError, match="boom"):
            build(inputs, out, anchor=None, documents=[DUMMY, bad])
    assert not (tmp_path / "new").exists()
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["previous"]  # no partial folder left


def test_out_must_be_new_empty_or_a_previous_dossier(built: Built, dossier_ws: Path, tmp_path: Path,
                                                     junit: Path) -> None:
    inputs = gather(dossier_ws, junit=junit)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.txt").write_text("mine")
    with pytest.raises(DossierError, match="is not a dossier folder"):
        build(inputs, tmp_path / "busy", anchor=None, documents=DOCS)
    previous = Path(shutil.copytree(built[0], tmp_path / "previous"))
    (previous / "stale.pdf").write_bytes(b"old")
    manifest = build(inputs, previous, anchor=None, documents=[DUMMY])
    assert sorted(p.name for p in previous.iterdir()) == sorted([MANIFEST, "sbom.cdx.json", DUMMY.file])
    assert manifest.data["documents"][0]["sha256"] == sha(built[0] / DUMMY.file)


def test_duplicate_or_bad_document_names_are_refused(dossier_ws: Path, tmp_path: Path, junit: Path) -> None:
    inputs = gather(dossier_ws, junit=junit)
    for docs, message in (([], "no dossier documents"), ([DUMMY, DUMMY], "share the id"),
                          ([DocumentSpec("X", "X", "../x.pdf", (), DUMMY.build)], "plain name")):
        with pytest.raises(DossierError, match=message):
            build(inputs, tmp_path / "out", anchor=None, documents=docs)


# ------------------------------------------------------------------------- command line
@pytest.fixture
def cli_ws(demo_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private workspace; the commands build only the dummy document (the real ones are built above)."""
    monkeypatch.setattr(dossier.build, "DOCUMENTS", [DUMMY])
    return copy_workspace(demo_workspace, tmp_path / "ws")


@pytest.mark.req("SYS-DOS-001")
def test_cli_build_and_verify(cli_ws: Path, tmp_path: Path, junit: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "dossier"
    args = ["build", "--workspace", str(cli_ws), "--out", str(out), "--junit", str(junit)]
    res = runner.invoke(dossier_cmd.app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["ledger"]["new"] and result["manifest_sha256"] == sha(out / MANIFEST)
    assert [d["id"] for d in result["documents"]] == [DUMMY.id] and result["seconds"] > 0
    again = runner.invoke(dossier_cmd.app, args)
    assert again.exit_code == 0, again.output
    assert f"already anchored (identical dossier) at entry {result['ledger']['index']}" in again.stdout
    assert "built in" in again.stdout and DUMMY.file in again.stdout
    blockers = result["issue_blockers"]
    assert result["status"] == "draft"
    assert blockers == json.loads((out / MANIFEST).read_text())["issue_blockers"]
    assert f"DRAFT dossier: {len(blockers)} reason(s) it cannot be issued:" in again.stdout
    assert all(f"  BLOCKER {line}\n" in again.stdout for line in blockers)
    unapproved = f"{DUMMY.id} is not approved by its author, reviewer, approver"
    assert any(line.startswith(unapproved) for line in blockers)
    ok = runner.invoke(dossier_cmd.app, ["verify", str(out), "--workspace", str(cli_ws), "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout) == {"dossier": str(out), "ok": True, "problems": []}
    _extra(out)
    bad = runner.invoke(dossier_cmd.app, ["verify", str(out), "--workspace", str(cli_ws)])
    assert bad.exit_code == 1 and "FAIL notes.txt: not listed in the manifest" in bad.stdout


@pytest.mark.req("SRS-CLI-001")
def test_cli_missing_inputs_exit_2_with_one_line(cli_ws: Path, tmp_path: Path, junit: Path) -> None:
    runner = CliRunner()
    ref = unvalidated_candidate(cli_ws)
    for args, message in (
            (["--workspace", str(cli_ws), "--model", ref, "--junit", str(junit)], "validation report"),
            (["--workspace", str(tmp_path / "nowhere")], "not a fedprog workspace"),
            (["--workspace", str(cli_ws), "--junit", str(tmp_path / "none.xml")], "no such JUnit file")):
        res = runner.invoke(dossier_cmd.app, ["build", "--out", str(tmp_path / "out"), *args])
        assert res.exit_code == 2, res.output
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fedprog: error: ") and message in lines[0]
    assert not (tmp_path / "out").exists()
    for args in ([], ["build"], ["verify"]):
        res = runner.invoke(dossier_cmd.app, [*args, "--help"])
        assert res.exit_code == 0 and "Usage" in res.stdout
