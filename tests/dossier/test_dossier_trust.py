"""The dossier reads the ledger only against the trust anchors pinned in workspace.json.

Adversary: whoever controls the coordinator host (the ledger file and the log key beside it) rewrites
or re-keys the ledger; a technical file built from it would document a history nobody witnessed."""

from __future__ import annotations

from pathlib import Path

import pytest

from dossier.inputs import gather
from dossier.spec import DossierError
from tests.conftest import copy_workspace
from tests.fedprog import tamper
from tests.fedprog.test_cli import run


@pytest.mark.req("SRS-LEDG-009")
@pytest.mark.parametrize("attack", ["rekey", "truncate"])
def test_a_rewritten_or_rekeyed_ledger_gives_no_dossier(demo_workspace: Path, tmp_path: Path,
                                                         attack: str) -> None:
    ws = copy_workspace(demo_workspace, tmp_path / "ws")
    tamper.ATTACKS[attack](ws)
    with pytest.raises(DossierError):
        gather(ws)
    res = run("dossier", "build", "--workspace", ws, "--out", tmp_path / "out", "--draft")
    assert res.returncode == 2 and "Traceback" not in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()
