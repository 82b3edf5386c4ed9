"""Dossier fixtures: a private copy of the demo workspace, one build of it, a dummy document."""

from __future__ import annotations

from pathlib import Path

import pytest
from reportlab.platypus import Flowable

from dossier.build import DOCUMENTS, Manifest, build
from dossier.inputs import gather
from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import esc, figure, heading, para, table
from fedprog.workspace import Workspace
from tests.conftest import copy_workspace


def _dummy_body(inputs: DossierInputs) -> list[Flowable]:
    """A long document exercising the builder: a multi-page table, verdicts, the run's figures."""
    assert inputs.validation is not None and inputs.validation_dir is not None and inputs.requirements
    story: list[Flowable] = [heading("Requirements"), para(f"{len(inputs.requirements)} items.")]
    story.append(table([("Id", "Type", "Title"), *[(i.id, i.type, i.title)
                                                   for i in inputs.requirements.items.values()]],
                       widths=[30, 20, 100]))
    story += [heading("Acceptance"),
              table([("Criterion", "Verdict"), *[(c["id"], "PASS" if c["passed"] else "FAIL")
                                                 for c in inputs.validation["criteria"]]])]
    story.append(heading("Figures"))
    story += [figure(inputs.validation_dir / p["file"], esc(p["title"])) for p in inputs.validation["plots"]]
    return story


#: a document the builder tests use besides the real ones (which may not exist yet)
DUMMY = DocumentSpec(id="FP-ZZTEST", title="Builder test document", file="zz-test.pdf",
                     needs=("validation", "requirements"), build=_dummy_body, toc=True)
#: the documents the tests build: the real ones and the dummy
DOCS = [*DOCUMENTS, DUMMY]


#: a small, fixed test run (the documents that need one read it; the checkout's own JUnit may change
#: while the tests run, e.g. under `make test`)
JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="3" failures="0" errors="0" skipped="1"
 timestamp="2026-01-01T00:00:00"><properties>
<property name="commit" value="0123456789abcdef0123456789abcdef01234567"/>
<property name="date" value="2026-01-01T00:00:00+00:00"/><property name="python" value="3.11.7"/>
<property name="platform" value="Linux"/><property name="environment_sha256" value="{zeros}"/></properties>
<testcase classname="tests.dossier.test_build" name="test_build"><properties>
<property name="nodeid" value="tests/dossier/test_build.py::test_build"/>
<property name="req" value="SRS-DOS-001"/></properties></testcase>
<testcase classname="tests.dossier.test_build" name="test_rebuild"><properties>
<property name="nodeid" value="tests/dossier/test_build.py::test_rebuild"/>
<property name="req" value="SRS-DOS-003"/></properties></testcase>
<testcase classname="tests.dossier.test_build" name="test_skipped"><skipped message="test"/></testcase>
</testsuite></testsuites>
""".replace("{zeros}", "0" * 64)


@pytest.fixture(scope="module")
def junit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixed test run as a JUnit file."""
    path = tmp_path_factory.mktemp("junit") / "junit.xml"
    path.write_text(JUNIT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def dossier_ws(demo_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the session's demo workspace."""
    return copy_workspace(demo_workspace, tmp_path_factory.mktemp("dossier") / "ws")


@pytest.fixture(scope="module")
def built(dossier_ws: Path, junit: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    """The dossier of the demo workspace built once (anchored, then a witnessed checkpoint)."""
    ws = Workspace(dossier_ws)
    out = tmp_path_factory.mktemp("built") / "dossier"
    manifest = build(gather(dossier_ws, junit=junit), out, anchor=ws.ledger, documents=DOCS)
    ws.publish_checkpoint()
    return out, manifest
