"""The ledger, consent and model commands on a real demo workspace, as a user runs them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from federated.disclosure.policy import round_to_k
from tests.conftest import copy_workspace, release_args
from tests.fedprog.test_cli import demo_training, run


@pytest.fixture
def demo_ws(demo_workspace: Path) -> Path:
    return demo_workspace


@pytest.fixture
def ws(demo_workspace: Path, tmp_path: Path) -> Path:
    """A private copy of the demo workspace (tests may change it)."""
    return copy_workspace(demo_workspace, tmp_path / "ws")


def cli_json(*args: str | Path) -> dict:  # type: ignore[type-arg]
    res = run(*args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


@pytest.mark.req("SRS-LEDG-007", "SRS-LEDG-006")
def test_ledger_show_shape(demo_ws: Path) -> None:
    data = cli_json("ledger", "show", "--workspace", demo_ws)
    assert {"size", "root", "checkpoint"} <= set(data)
    assert data["entries"] == {"consent": 686, "model": 1, "validation": 1, "release": 1, "dossier": 1}
    cp = data["checkpoint"]
    assert cp["size"] == data["size"] == 690 and cp["quorum"] is True and len(cp["cosigned_by"]) == 4


@pytest.mark.req("SYS-LEDG-001")
@pytest.mark.req("SRS-LEDG-004", "RC-LEDG-001")
def test_ledger_verify_passes_and_fails_on_a_tampered_copy(ws: Path) -> None:
    assert cli_json("ledger", "verify", "--workspace", ws)["ok"] is True
    db = sqlite3.connect(ws / "ledger.sqlite")
    db.execute("DROP TRIGGER entries_no_update")
    body = db.execute("SELECT body FROM entries WHERE idx = 5").fetchone()[0]
    db.execute("UPDATE entries SET body = ? WHERE idx = 5", (body.replace('"permit"', '"deny"'),))
    db.commit()
    db.close()
    res = run("ledger", "verify", "--workspace", ws)
    assert res.returncode == 1 and "entry 5: stored leaf hash does not match its body" in res.stdout


@pytest.mark.req("SRS-LEDG-007")
def test_prove_gives_a_verified_receipt(demo_ws: Path) -> None:
    data = cli_json("ledger", "prove", "7", "--workspace", demo_ws)
    assert data["index"] == 7 and data["size"] == 690 and len(data["proof"]) == 10
    assert data["entry"]["kind"] == "consent" and set(data["entry"]["body"]) >= {"commitment", "site"}
    res = run("ledger", "prove", "9999", "--workspace", demo_ws)
    assert res.returncode == 2 and "no entry 9999" in res.stderr


@pytest.mark.req("SRS-CONS-003", "RC-PRIV-001")
def test_no_patient_identifier_reaches_the_ledger(demo_ws: Path) -> None:
    raw = b"".join(p.read_bytes() for p in demo_ws.glob("ledger.sqlite*"))
    ids = pd.concat([pd.read_csv(p, usecols=["patient_id"]) for p in demo_ws.glob("sites/*/data.csv")])
    assert len(ids) == 686
    assert not [p for p in ids["patient_id"] if p.encode() in raw]
    assert b"Patient/" not in raw


@pytest.mark.req("SRS-CONS-002")
def test_consent_status_shape(demo_ws: Path) -> None:
    rows = cli_json("consent", "status", "--workspace", demo_ws)["patients"]
    assert len(rows) == 686 and set(rows[0]) == {"site", "patient", "status"}
    assert sum(r["status"] == "declined" for r in rows) == 20


@pytest.mark.req("SYS-CONS-001")
@pytest.mark.req("SRS-CONS-005", "SRS-REG-002", "SRS-REG-003", "RC-CONS-001", "SRS-CONS-007", "SRS-CONS-009")
def test_revocation_flags_the_model_and_retrain_leaves_the_patient_out(ws: Path) -> None:
    model = cli_json("model", "list", "--workspace", ws)["models"]
    assert [(m["model_id"], m["version"], m["status"], m["affected_by_revocation"]) for m in model] == \
        [("gbsg2-recurrence", "1", "released", False)]
    out = cli_json("consent", "revoke", "--site", "hospital-a", "--patient", "A-0002", "--workspace", ws)
    assert out["affected_models"] == ["gbsg2-recurrence@1"]
    first = cli_json("model", "list", "--workspace", ws)["models"][0]
    assert first["affected_by_revocation"] is True and first["status"] == "released"  # the window policy
    assert first["retrain_due"]["revocations"] == 1 and first["retrain_due"]["since"] is not None
    successor = cli_json("model", "retrain", "gbsg2-recurrence@1", "--workspace", ws)
    kept, _ = demo_training(revoked=("A-0002",))  # hospital-d still cannot answer on the year grid
    # hospital-a pads the one withdrawal with 4 patients it withholds (k = 5 differ from job 1), and the
    # count is released rounded to a multiple of k
    assert successor["version"] == "2" and successor["training"]["n"] == round_to_k(sum(kept.values()) - 4, 5)
    models = cli_json("model", "list", "--workspace", ws)["models"]
    assert models[1]["predecessor"] == "gbsg2-recurrence@1" and models[1]["affected_by_revocation"] is False
    early = run("model", "release", "gbsg2-recurrence@2", "--workspace", ws, *release_args(ws))
    assert early.returncode == 2 and "only a validated model" in early.stderr
    assert cli_json("validate", "gbsg2-recurrence@2", "--workspace", ws, "--skip-verification",
                    "--bootstrap", "1000")["passed"] is True
    released = cli_json("model", "release", "gbsg2-recurrence@2", "--workspace", ws, "--reason", "successor",
                        *release_args(ws))
    assert released["status"] == "released" and released["history"][-1]["state"] == "released"
    assert cli_json("model", "due", "--workspace", ws)["due"] == []  # the released successor clears it
    assert cli_json("model", "list", "--workspace", ws)["models"][0]["status"] == "affected"
    refused = run("model", "release", "gbsg2-recurrence@1", "--workspace", ws, *release_args(ws))
    assert refused.returncode == 2 and "affected by a consent revocation" in refused.stderr
    gone = cli_json("model", "withdraw", "gbsg2-recurrence@1", "--reason", "revoked", "--workspace", ws)
    assert gone["status"] == "withdrawn"
    assert cli_json("ledger", "verify", "--workspace", ws)["ok"] is True
    again = run("consent", "revoke", "--site", "hospital-a", "--patient", "A-0002", "--workspace", ws)
    assert again.returncode == 2 and "no active consent to revoke" in again.stderr


@pytest.mark.req("SRS-CONS-003")
def test_erasure_keeps_proofs_valid(ws: Path) -> None:
    before = cli_json("ledger", "prove", "1", "--workspace", ws)
    erased = cli_json("consent", "erase", "--site", "hospital-a", "--patient", "A-0002", "--workspace", ws)
    assert erased["erased"]
    rows = cli_json("consent", "status", "--site", "hospital-a", "--workspace", ws)["patients"]
    assert "A-0002" not in {r["patient"] for r in rows}
    assert cli_json("ledger", "prove", "1", "--workspace", ws)["proof"] == before["proof"]
    assert cli_json("ledger", "verify", "--workspace", ws)["ok"] is True


@pytest.mark.req("SYS-CONS-001")
@pytest.mark.req("SRS-CONS-001", "SRS-CONS-002")
def test_grant_and_import_fhir(ws: Path, tmp_path: Path) -> None:
    for args in (("--fhir", "R5"), ("--deny", "--fhir", "R5")):
        cli_json("consent", "grant", "--site", "hospital-b", "--patient", "B-9001", *args, "--workspace", ws)
    exported = run("consent", "export", "--site", "hospital-b", "--patient", "B-9001", "--workspace", ws)
    bundle = json.loads(exported.stdout)
    assert bundle["resourceType"] == "Bundle" and len(bundle["entry"]) == 2
    assert [e["resource"]["decision"] for e in bundle["entry"]] == ["permit", "deny"]
    path = tmp_path / "consent.json"
    path.write_text(json.dumps(bundle["entry"][-1]["resource"]))
    assert cli_json("consent", "import", path, "--site", "hospital-b", "--workspace", ws)["imported"] == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType": "Patient", "id": "x"}')
    res = run("consent", "import", bad, "--site", "hospital-b", "--workspace", ws)
    assert res.returncode == 2 and res.stderr.startswith("fedprog: error:")


@pytest.mark.req("SRS-LEDG-006")
def test_witness_command_cosigns_a_new_checkpoint(ws: Path) -> None:
    cli_json("consent", "grant", "--site", "hospital-c", "--patient", "C-0001", "--workspace", ws)
    data = cli_json("ledger", "witness", "--workspace", ws)
    assert data["size"] == 691 and data["quorum"] is True and len(data["cosigned_by"]) == 4


@pytest.mark.req("SYS-LEDG-001")
@pytest.mark.req("SRS-LEDG-005", "RC-LEDG-001")
def test_a_witness_detects_a_rewritten_history(ws: Path) -> None:
    """Roll the log back and grow it differently: every site's witness refuses to cosign."""
    cli_json("ledger", "witness", "--workspace", ws)
    db = sqlite3.connect(ws / "ledger.sqlite")
    for t in ("entries_no_delete", "nodes_no_delete", "checkpoints_no_delete"):
        db.execute(f"DROP TRIGGER {t}")
    db.execute("DELETE FROM entries WHERE idx >= 680")
    db.execute("DELETE FROM nodes WHERE (idx + 1) * (1 << level) > 680")
    db.execute("DELETE FROM checkpoints")
    db.commit()
    db.close()
    # hospital-d anchored consents at the removed entries: its registry notices and appends nothing
    refused = run("consent", "grant", "--site", "hospital-d", "--patient", "D-9001", "--workspace", ws)
    assert refused.returncode == 2 and "rolled back or replaced" in refused.stderr
    assert "Traceback" not in refused.stderr
    for i in range(10):  # hospital-a's last consent lies before the cut: its registry cannot tell
        cli_json("consent", "grant", "--site", "hospital-a", "--patient", f"A-9{i + 1:03d}",
                 "--workspace", ws)
    res = run("ledger", "witness", "--workspace", ws)
    assert res.returncode == 2 and "fork" in res.stderr.lower()
