"""``fedprog person add|list`` and a release signed through the command line."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fedprog.workspace import Workspace
from tests.conftest import copy_workspace, release_args
from tests.fedprog.test_cli import run


@pytest.mark.req("SRS-REG-004")
def test_a_person_is_pinned_with_roles_and_their_key_written_for_them_alone(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    Workspace.init(ws, "urn:fedprog:test")
    key = tmp_path / "home" / "ada.pem"
    res = run("person", "add", "Dr. Ada Approver", "--role", "approver", "--role", "reviewer",
              "--key-out", str(key), "--workspace", ws)
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.read_text().startswith("-----BEGIN PRIVATE KEY")
    pinned = json.loads((ws / "workspace.json").read_text())["trust"]["people"]["Dr. Ada Approver"]
    assert pinned["roles"] == ["approver", "reviewer"] and "PRIVATE" not in json.dumps(pinned)
    listed = json.loads(run("person", "list", "--json", "--workspace", ws).stdout)
    assert listed["Dr. Ada Approver"]["roles"] == ["approver", "reviewer"]
    for args, why in ((["Dr. Ada Approver", "--role", "approver", "--key-out", str(tmp_path / "k2.pem")],
                       "already pinned"),
                      (["Dr. Bo", "--role", "boss", "--key-out", str(tmp_path / "k3.pem")],
                       "unknown role 'boss'"),
                      (["Dr. Cy", "--role", "author", "--key-out", str(key)], "never overwritten")):
        refused = run("person", "add", *args, "--workspace", ws)
        assert refused.returncode == 2 and why in refused.stderr and refused.stderr.count("\n") == 1


@pytest.mark.req("SRS-REG-004", "SYS-REG-001")
def test_the_release_command_refuses_a_key_or_person_that_cannot_approve(
        demo_workspace: Path, tmp_path: Path) -> None:
    """On a copy of the demo: nothing is signed, and the ledger does not grow, unless the approver's own
    key signs."""
    ws = copy_workspace(demo_workspace, tmp_path / "ws")
    author_key = tmp_path / "author.pem"
    assert run("person", "add", "Dr. Au Thor", "--role", "author", "--key-out", str(author_key),
               "--workspace", ws).returncode == 0
    ref = "gbsg2-recurrence@1"
    wrong_key = run("model", "release", ref, "--workspace", ws, "--approver", release_args(ws)[1],
                    "--key", str(author_key))
    assert wrong_key.returncode == 2 and "not the one pinned" in wrong_key.stderr
    no_role = run("model", "release", ref, "--workspace", ws, "--approver", "Dr. Au Thor",
                  "--key", str(author_key))
    assert no_role.returncode == 2 and "does not hold the role 'approver'" in no_role.stderr
    nobody = run("model", "release", ref, "--workspace", ws, "--approver", "Dr. Nobody",
                 "--key", str(author_key))
    assert nobody.returncode == 2 and "not a pinned person" in nobody.stderr
    size = Workspace(ws).ledger.size
    for res in (wrong_key, no_role, nobody):
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert Workspace(ws).ledger.size == size
