"""Issue 16 H2/H3: a ledger whose truth does not live in one file.

The attacker has write access to ``ledger.sqlite`` (an insider, or malware on the coordinator
host) but is not the witnesses. Each attack on a demo workspace in which a consent revocation
and the withdrawal of the model were witnessed (4/4) must be detected by ``fedprog ledger verify``
(exit 1, naming the anchor that disagreed), by the model registry (it refuses to replay), and by
the FHIR server, which must not serve the model the witnessed ledger says is withdrawn.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from device.fhir.auth import issue_token, load_or_create_key, token_key_path
from device.registry import LedgerUntrusted
from fedprog.serve_cmd import build_app
from fedprog.workspace import Workspace
from tests.conftest import copy_workspace
from tests.fedprog import tamper
from tests.fedprog.test_cli import run

BASE = "http://testserver/fhir"
NEW = ("SRS-LEDG-008", "SRS-LEDG-009", "SRS-LEDG-011", "RC-LEDG-001")


@pytest.fixture(scope="module")
def withdrawn(demo_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo after a witnessed consent revocation and a witnessed withdrawal of the model."""
    ws = copy_workspace(demo_workspace, tmp_path_factory.mktemp("withdrawn") / "ws")
    for args in (("consent", "revoke", "--site", "hospital-a", "--patient", "A-0002"),
                 ("model", "withdraw", "gbsg2-recurrence@1", "--reason", "consent revoked"),
                 ("ledger", "witness")):
        res = run(*args, "--workspace", ws)
        assert res.returncode == 0, res.stderr
    return ws


@pytest.fixture
def ws(withdrawn: Path, tmp_path: Path) -> Path:
    return copy_workspace(withdrawn, tmp_path / "ws")


def predict(ws: Path) -> tuple[int, str]:
    """A fresh server over ``ws`` scores the demo patient: (status, diagnostics or model sha256)."""
    app = build_app(ws, base_url=BASE)
    app.state.fedprog.models.guard.close()
    bearer = issue_token(load_or_create_key(token_key_path(ws)), scopes="user/RiskAssessment.c",
                         subject="tamper-test", audience=BASE)
    with TestClient(app) as client:
        resp = client.post("/fhir/Patient/$predict-risk",
                           content=(ws / "examples" / "predict-risk.json").read_bytes(),
                           headers={"Authorization": f"Bearer {bearer}",
                                    "Content-Type": "application/fhir+json"})
    body = resp.json()
    if resp.status_code == 200:
        return 200, str(body["method"]["coding"])
    assert body["resourceType"] == "OperationOutcome"
    return resp.status_code, str(body["issue"][0]["diagnostics"])


@pytest.mark.req("SYS-LEDG-001")
@pytest.mark.req(*NEW)
def test_the_witnessed_state_passes_everywhere(ws: Path) -> None:
    res = run("ledger", "verify", "--workspace", ws, "--json")
    assert res.returncode == 0, res.stdout
    data = json.loads(res.stdout)
    assert data["ok"] and data["witnessed"]["size"] == data["size"]
    assert data["witnessed"]["cosigned_by"] == ["hospital-a", "hospital-b", "hospital-c", "hospital-d"]
    assert Workspace(ws).models.get("gbsg2-recurrence@1").status == "withdrawn"
    status, why = predict(ws)
    assert status == 503 and "withdrawn" in why


#: attack → what `ledger verify` must say (the anchor that disagreed); {n}: the witnessed size,
#: {w}: the withdrawal's index
EXPECTED = {
    "edit-kind": ["kind 'withdrawalx': the entry was edited",
                  "(cosigned by hospital-a, hospital-b, hospital-c, hospital-d) has root",
                  "hospital-a's witness cosigned size {n} root"],
    "edit-body": ["entry {w}: stored leaf hash does not match its body",
                  "hospital-b's witness cosigned size {n}"],
    "rekey": ["the log key differs from the one pinned in workspace.json",
              "no checkpoint in the file carries cosignatures of a quorum (3 of 4) of the witnesses pinned",
              "hospital-c's witness cosigned size {n} root"],
    "truncate": ["hospital-a's witness cosigned size {n} root", "the file has {t} entries"],
    "reorder": ["has root", "the entries were rewritten", "hospital-d's witness cosigned size {n} root"],
}


@pytest.mark.req(*NEW)
@pytest.mark.parametrize("attack", sorted(tamper.ATTACKS))
def test_every_attack_is_caught_by_verify_the_registry_and_the_server(ws: Path, attack: str) -> None:
    n, w = Workspace(ws).ledger.size, tamper.indices(ws, "withdrawal")[-1]
    tamper.ATTACKS[attack](ws)
    res = run("ledger", "verify", "--workspace", ws)
    assert res.returncode == 1, res.stdout + res.stderr
    for needle in EXPECTED[attack]:
        assert needle.format(n=n, w=w, t=n - 1) in res.stdout, (needle, res.stdout)
    listed = run("model", "list", "--workspace", ws)
    assert listed.returncode == 2
    assert listed.stderr.startswith("fedprog: error: refusing to replay the ledger")
    assert "Traceback" not in listed.stderr and len(listed.stderr.strip().splitlines()) == 1
    with pytest.raises(LedgerUntrusted, match="fails its check"):
        Workspace(ws).models.list()
    status, why = predict(ws)
    assert status == 503 and "ledger fails its consistency check against the witnessed checkpoint" in why
    assert run("ledger", "witness", "--workspace", ws).returncode == 2  # nobody signs or cosigns it


@pytest.mark.req("SRS-LEDG-008", "SRS-LEDG-010", "RC-LEDG-001")
def test_h2_exactly_no_witness_cosigns_an_edited_kind(ws: Path) -> None:
    """The attack of the issue: one character appended to the kind of the revocation and the
    withdrawal rows. The log refuses to sign, and each witness refuses a note the log signed
    over the stored tree, because it recomputes the root from the entries itself."""
    workspace = Workspace(ws)
    before = workspace.ledger.root()
    revoked = tamper.indices(ws, "revocation")[0]
    tamper.edit_kind(ws)
    from ledger.checkpoint import Checkpoint, CheckpointError, format_note

    workspace = Workspace(ws)
    ledger = workspace.ledger
    assert ledger.root() == before  # the stored tree does not see the edit
    text = Checkpoint(ledger.origin, ledger.size, before).body()
    assert ledger.signer is not None
    note = format_note(text, [ledger.signer.sign(text)])
    for site in workspace.sites:
        with pytest.raises(CheckpointError,
                           match=f"refuses to cosign: entry {revoked}: .* kind 'revocationx'"):
            workspace.witness(site).cosign(note)
    with pytest.raises(ValueError, match=f"refusing to sign: entry {revoked}"):
        ledger.checkpoint()


@pytest.mark.req("SRS-LEDG-012")
def test_a_corrupt_ledger_is_one_line_and_exit_2(ws: Path) -> None:
    tamper.corrupt(ws)
    for args in (("ledger", "verify"), ("ledger", "show"), ("model", "list"), ("consent", "status")):
        res = run(*args, "--workspace", ws)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert res.stderr.startswith("fedprog: error: ledger ") and "damaged or not a ledger" in res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.req("SRS-LEDG-009")
def test_meta_and_checkpoints_are_protected_by_triggers(ws: Path) -> None:
    import sqlite3

    db = sqlite3.connect(ws / "ledger.sqlite")
    for sql in ("UPDATE meta SET value = 'x' WHERE key = 'vkey'",
                "DELETE FROM meta WHERE key LIKE 'witness:%'",
                "DELETE FROM checkpoints", "UPDATE checkpoints SET size = size - 1",
                "UPDATE checkpoints SET root = zeroblob(32)"):
        with pytest.raises(sqlite3.DatabaseError, match="write-once|append-only|cannot change its tree"):
            db.execute(sql)
    db.close()


@pytest.mark.req("SRS-LEDG-009")
def test_trust_is_pinned_in_the_workspace_not_the_ledger(ws: Path) -> None:
    manifest = json.loads((ws / "workspace.json").read_text())
    trust = manifest["trust"]
    assert set(trust["witnesses"]) == {"hospital-a", "hospital-b", "hospital-c", "hospital-d"}
    assert trust["log"] == Workspace(ws).ledger.verifier.verifier_key()
    # an older workspace without pins gets them from the key files on first use, never from the ledger
    del manifest["trust"]
    (ws / "workspace.json").write_text(json.dumps(manifest))
    tamper.rekey(ws)
    res = run("ledger", "verify", "--workspace", ws)
    assert res.returncode == 1 and "the log key differs from the one pinned in workspace.json" in res.stdout
    repinned = json.loads((ws / "workspace.json").read_text())["trust"]
    # the log and witness keys come back from their key files; people never do (their keys are theirs)
    assert repinned == {k: v for k, v in trust.items() if k != "people"} and "people" in trust


@pytest.mark.req("SRS-LEDG-011")
def test_a_running_server_stops_serving_when_the_ledger_is_edited_in_place(
        withdrawn: Path, tmp_path: Path) -> None:
    """Before the withdrawal: a running server serves; then the periodic check catches an edit."""
    ws = copy_workspace(withdrawn, tmp_path / "ws")
    app = build_app(ws, base_url=BASE)
    models = app.state.fedprog.models
    models.guard.close()
    assert models.guard.reason is None
    entry = Workspace(ws).models.get("gbsg2-recurrence@1")
    assert entry.status == "withdrawn"
    tamper.edit_kind(ws)  # from another process's point of view: another connection
    assert models.guard.check(fresh=True) is not None
    with pytest.raises(Exception, match="refusing to serve: the ledger fails its consistency check"):
        models.current()


@pytest.mark.req("SRS-LEDG-008", "SRS-CONS-004")
def test_the_consent_registry_reads_roots_only_from_a_verified_ledger(ws: Path) -> None:
    registry = Workspace(ws).registry("hospital-a")
    size = registry.newest_checkpoint()
    root = registry.ledger_root(size)
    assert root == Workspace(ws).ledger.root(size)
    tamper.reorder(ws)
    registry = Workspace(ws).registry("hospital-a")
    with pytest.raises(ValueError, match="fails its check"):
        registry.ledger_root(size)
    with pytest.raises(ValueError, match="fails its check"):
        Workspace(ws).witnessed("hospital-a")
