"""External validation at a hospital that never trained: a released model evaluated on that
hospital's own rows inside the intended use, judged against the external criteria only, anchored
in the ledger without changing the model's release state; the external hospital is no peer of
training, and a coordinator cannot make it one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federated.demo_study import DEMO_INPUTS, EXTERNAL_SITE, rotterdam_table
from federated.disclosure.policy import round_to_k
from fedprog.registration import registered_study
from fedprog.workspace import Workspace
from tests.conftest import copy_workspace
from tests.fedprog.test_cli import run

pytestmark = pytest.mark.req("SRS-VAL-007")
REF, SITE = "gbsg2-recurrence@1", "hospital-e"


@pytest.fixture(scope="module")
def external_ws(demo_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo workspace with an external hospital added under a declared legal basis, its table
    GBSG2 women the released model was not fitted on (the demo's smallest hospital cannot train:
    its women, renumbered, as another hospital's export)."""
    ws_dir = copy_workspace(demo_workspace, tmp_path_factory.mktemp("ext") / "ws")
    table = pd.read_csv(ws_dir / "sites" / "hospital-d" / "data.csv")
    table["patient_id"] = table["patient_id"].str.replace("D-", "E-")
    path = ws_dir.parent / "hospital-e.csv"
    table.to_csv(path, index=False)
    added = run("site", "add", SITE, "--data", path, "--external", "--legal-basis",
                "GDPR Art. 9(2)(j), retrospective research", "--workspace", ws_dir)
    assert added.returncode == 0, added.stderr
    assert f"--site {SITE} --model MODEL@VERSION" in added.stdout
    return ws_dir


def test_an_external_site_witnesses_but_is_no_peer_of_training(external_ws: Path) -> None:
    ws = Workspace(external_ws)
    assert ws.external_sites == [SITE] and SITE not in ws.sites
    assert SITE in ws.trust()["witnesses"]
    entry = ws.models.get(REF)
    assert SITE not in ws.protocol(registered_study(ws, entry)).peers


@pytest.fixture(scope="module")
def external_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace after ``fedprog demo --external`` (what ``make demo`` runs)."""
    ws = tmp_path_factory.mktemp("demo-external") / "ws"
    res = subprocess.run([sys.executable, "-m", "fedprog", "demo", "--external", "--workspace", str(ws)],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    assert "external validation at rotterdam" in res.stdout and "recalibrated at rotterdam" in res.stdout
    return ws


def test_the_demo_validates_the_released_model_at_the_rotterdam_tumour_bank(external_demo: Path) -> None:
    ws = Workspace(external_demo)
    assert ws.external_sites == [EXTERNAL_SITE] and EXTERNAL_SITE not in ws.sites
    entry = ws.models.get(REF)
    (report,) = ws.models.external_reports(entry)
    assert report["setting"] == "external" and sorted(report["sites"]) == [EXTERNAL_SITE]
    assert {c["requirement"] for c in report["criteria"]} == {"SRS-VAL-006"}
    assert entry.lifecycle == "released"
    # the women it was validated on: the tumour bank's rows inside the model's intended-use envelope
    table = rotterdam_table()
    inside = np.ones(len(table), dtype=bool)
    for name, spec in DEMO_INPUTS.items():
        inside &= spec.accepts_array(table[name].to_numpy())
    study = registered_study(ws, entry)
    site = report["sites"][EXTERNAL_SITE]
    k = report["settings"]["policy"]["min_cell_count"]
    assert site["n"] == int(round_to_k(int(inside.sum()), k))
    events = (table["event"] == 1) & (table["time"] <= study.max_time)  # follow-up censored at 5 years
    assert site["events"] == int(round_to_k(int(events[inside].sum()), k))
    assert (table["pnodes"][inside] >= 1).all() and 1100 < inside.sum() < 1546  # node-positive only
    assert EXTERNAL_SITE not in ws.models.artifact(entry.ref)["training"]["sites"]
    # the model recalibrated there is a new candidate, validated there too (apparent performance)
    (recal,) = [m for m in ws.models.list() if m.predecessor == entry.ref and "recalibrated" in m.model_id]
    assert recal.model_id == f"gbsg2-recurrence-recalibrated-{EXTERNAL_SITE}"
    assert recal.lifecycle == "candidate"
    assert ws.models.artifact(recal.ref)["training"]["recalibration"]["site"] == EXTERNAL_SITE
    (again,) = ws.models.external_reports(recal)
    assert again["setting"] == "external"


@pytest.mark.req("SYS-VAL-001")
def test_fedprog_validate_external_site(external_ws: Path, tmp_path: Path) -> None:
    ws_dir = copy_workspace(external_ws, tmp_path / "ws")
    refused = run("validate", REF, "--external-site", SITE, "--workspace", ws_dir)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert f"site '{SITE}' has not approved this study" in refused.stderr
    approve = run("site", "approve", "--site", SITE, "--model", REF, "--workspace", ws_dir, "--json")
    assert approve.returncode == 0, approve.stderr
    assert json.loads(approve.stdout)["peers"] == [SITE]  # itself the only peer

    res = run("validate", REF, "--external-site", SITE, "--bootstrap", "20", "--workspace", ws_dir)
    ws = Workspace(ws_dir)
    entry = ws.models.get(REF)
    report = next(r for r in ws.models.external_reports(entry) if sorted(r["sites"]) == [SITE])
    assert res.returncode == (0 if report["passed"] else 1), res.stderr
    assert f"external validation at {SITE}" in res.stdout and "its release state is unchanged" in res.stdout
    assert report["setting"] == "external" and sorted(report["sites"]) == [SITE]
    assert {c["requirement"] for c in report["criteria"]} == {"SRS-VAL-006"}  # external criteria only
    assert report["leave_one_site_out"]["sites"] == {} and report["verification"]["status"] == "skipped"
    assert entry.lifecycle == "released"  # evidence, not a gate
    kinds = [kind for _, kind, body in ws.models.entries() if body.get("sha256") == entry.sha256]
    assert kinds.count("external-validation") == 1
    # the women it was validated on: the hospital's own rows inside the intended-use envelope
    table = pd.read_csv(external_ws.parent / "hospital-e.csv")
    inside = np.ones(len(table), dtype=bool)
    for name, spec in DEMO_INPUTS.items():
        inside &= spec.accepts_array(table[name].to_numpy())
    k = report["settings"]["policy"]["min_cell_count"]
    assert report["sites"][SITE]["n"] == int(round_to_k(int(inside.sum()), k))

    bad = run("validate", REF, "--external-site", "hospital-a", "--workspace", ws_dir)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert f"not an external site of this workspace (external sites: {SITE})" in bad.stderr


def test_a_coordinator_cannot_make_the_external_hospital_train(external_ws: Path, tmp_path: Path) -> None:
    """Adversary: a malicious coordinator that writes the external hospital a training request of the
    study (its rows would enter the sums), or its own approved validation study as a training round:
    the hospital answers a refusal and no statistic."""
    from federated.protocol.messages import ErrorReply, PrepareRequest
    from tests.privacy.wire import Wire

    ws = Workspace(copy_workspace(external_ws, tmp_path / "ws"))
    study = registered_study(ws, ws.models.get(REF))
    ws.approve(SITE, ws.protocol(study, [SITE]))
    for protocol in (ws.protocol(study), ws.protocol(study, [SITE])):
        wire = Wire([ws.site_object(SITE)], protocol)
        request = PrepareRequest(session="attack", round=1, study=wire.study, cohort=study.cohort(),
                                 consent=ws.consent_gate("attack"))
        reply = wire.ask(SITE, request)
        assert isinstance(reply, ErrorReply), reply  # no sizes, sums or histograms came back
        assert reply.code in ("not-approved", "plaintext"), reply.message  # and a secure round needs peers
