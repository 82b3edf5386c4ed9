"""``fedprog init`` and ``fedprog site add``: a workspace for one's own study, each hospital's table
checked against it, and the basis of each site's data use recorded — never assumed. Every refusal is
one line, exit 2, and leaves the workspace as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "own-study"
BASIS = "GDPR Art. 9(2)(j) and the national research law"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("FEDPROG_WORKSPACE", None)
    return subprocess.run([sys.executable, "-m", "fedprog", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


def one_line(res: subprocess.CompletedProcess[str], *words: str) -> None:
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedprog: error: "), res.stderr
    assert all(w in lines[0] for w in words), lines[0]


@pytest.fixture()
def ws(tmp_path: Path) -> Path:
    res = run("init", "--study", EXAMPLES / "study.toml", "--workspace", tmp_path / "ws", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["study"] == "urn:fedprog:study:rotterdam-os" and Path(out["study_file"]).is_file()
    return tmp_path / "ws"


def sites_of(ws: Path) -> list[str]:
    return sorted(json.loads((ws / "workspace.json").read_text())["sites"])


@pytest.mark.req("SRS-CLI-004")
def test_init_keeps_the_study_and_pins_the_log_key_and_refuses_a_second_time(ws: Path) -> None:
    manifest = json.loads((ws / "workspace.json").read_text())
    assert manifest["study_file"] == "study.toml" and manifest["trust"]["log"] and manifest["sites"] == {}
    assert (ws / "study.toml").read_text() == (EXAMPLES / "study.toml").read_text()
    again = run("init", "--study", EXAMPLES / "study.toml", "--workspace", ws)
    one_line(again, "already a fedprog workspace")


@pytest.mark.req("SRS-CONS-011")
def test_a_site_needs_exactly_one_basis_for_using_its_patients_data(ws: Path) -> None:
    data = EXAMPLES / "hospital-a.csv"
    neither = run("site", "add", "hospital-a", "--data", data, "--workspace", ws)
    one_line(neither, "--consent", "--legal-basis")
    one_line(run("site", "add", "hospital-a", "--data", data, "--workspace", ws, "--legal-basis", BASIS,
                 "--consent", EXAMPLES / "consents-a.ndjson"), "exactly one")
    one_line(run("site", "add", "hospital-a", "--data", data, "--workspace", ws, "--legal-basis", "  "),
             "in words")
    assert sites_of(ws) == []


@pytest.mark.req("SRS-CONS-011")
def test_consent_for_another_study_is_refused_before_anything_is_recorded(ws: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.ndjson"
    lines = (EXAMPLES / "consents-a.ndjson").read_text().splitlines()
    lines[-1] = lines[-1].replace("urn:fedprog:study:rotterdam-os", "urn:fedprog:study:another")
    other.write_text("\n".join(lines) + "\n")
    one_line(run("site", "add", "hospital-a", "--data", EXAMPLES / "hospital-a.csv", "--consent", other,
                 "--workspace", ws), "urn:fedprog:study:another")
    assert sites_of(ws) == [] and not (ws / "sites" / "hospital-a" / "consent.sqlite").exists()


@pytest.mark.req("SRS-CLI-004", "SRS-DATA-001")
def test_a_table_is_checked_against_the_study_before_the_site_is_added(ws: Path, tmp_path: Path) -> None:
    import pandas as pd

    table = pd.read_csv(EXAMPLES / "hospital-a.csv")
    table.drop(columns=["nodes"]).to_csv(tmp_path / "no-nodes.csv", index=False)
    one_line(run("site", "add", "x", "--data", tmp_path / "no-nodes.csv", "--legal-basis", BASIS,
                 "--workspace", ws), "no column 'nodes'", "the study names it")
    pd.concat([table, table.head(1)]).to_csv(tmp_path / "twice.csv", index=False)
    one_line(run("site", "add", "x", "--data", tmp_path / "twice.csv", "--legal-basis", BASIS,
                 "--workspace", ws), "A-00001", "more than one row")
    # a German Excel export read without its decimal mark: one line saying which flag
    one_line(run("site", "add", "x", "--data", EXAMPLES / "hospital-b.csv", "--encoding", "cp1252",
                 "--legal-basis", BASIS, "--workspace", ws), "--decimal ,")
    one_line(run("site", "add", "x", "--data", EXAMPLES / "hospital-b.csv", "--decimal", ",",
                 "--legal-basis", BASIS, "--workspace", ws), "--encoding cp1252")
    one_line(run("site", "add", "bad name", "--data", EXAMPLES / "hospital-c.csv", "--legal-basis", BASIS,
                 "--workspace", ws), "site name")
    assert sites_of(ws) == []


@pytest.mark.req("SRS-CONS-011", "SRS-CONS-001")
def test_a_legal_basis_is_recorded_per_patient_and_a_patient_can_object(ws: Path) -> None:
    res = run("site", "add", "hospital-c", "--data", EXAMPLES / "hospital-c.csv", "--legal-basis", BASIS,
              "--basis-date", "2025-01-01", "--workspace", ws, "--json")
    assert res.returncode == 0, res.stderr
    added = json.loads(res.stdout)
    assert added["patients"] == 596 and added["consent"] == {"permit": 596, "deny": 0, "none": 0}
    import pandas as pd

    patient = str(pd.read_csv(EXAMPLES / "hospital-c.csv", sep="\t")["patient_id"].iloc[0])
    bundle = json.loads(run("consent", "export", "--site", "hospital-c", "--patient", patient,
                            "--workspace", ws).stdout)
    consent = bundle["entry"][0]["resource"]
    assert consent["policyRule"] == {"text": BASIS} and consent["provision"]["type"] == "permit"
    assert consent["dateTime"] == "2025-01-01"
    objection = run("consent", "revoke", "--site", "hospital-c", "--patient", patient, "--workspace", ws)
    assert objection.returncode == 0, objection.stderr
    status = json.loads(run("consent", "status", "--site", "hospital-c", "--workspace", ws, "--json").stdout)
    states = {p["patient"]: p["status"] for p in status["patients"]}
    assert states[patient] == "inactive" and sum(s == "active" for s in states.values()) == 595


@pytest.mark.req("SRS-CLI-004")
def test_train_refuses_an_undeclared_input_and_an_unapproved_study(tmp_path: Path) -> None:
    study = (EXAMPLES / "study.toml").read_text()
    cut = study.index("[inputs.chemo]")
    (tmp_path / "study.toml").write_text(study[:cut])
    ws = tmp_path / "ws"
    assert run("init", "--study", tmp_path / "study.toml", "--workspace", ws).returncode == 0
    for name in ("a", "c"):
        assert run("site", "add", f"hospital-{name}", "--data", EXAMPLES / f"hospital-{name}.csv",
                   "--legal-basis", BASIS, "--workspace", ws).returncode == 0
    assert run("site", "add", "hospital-b", "--data", EXAMPLES / "hospital-b.csv", "--decimal", ",",
               "--encoding", "cp1252", "--legal-basis", BASIS, "--workspace", ws).returncode == 0
    one_line(run("train", "--workspace", ws), "covariate 'chemo' has no declared input")
    one_line(run("train", "--workspace", ws, "--covariates", "age,nodes,grade"),
             "hospital-a, hospital-b, hospital-c", "have not approved")
    assert run("site", "approve", "--site", "hospital-a", "--workspace", ws, "--json").returncode == 0
    one_line(run("train", "--workspace", ws), "covariate 'chemo'")
    assert not (ws / "models").exists() or not list((ws / "models").glob("*.json"))
