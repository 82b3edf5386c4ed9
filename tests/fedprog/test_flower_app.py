"""The Flower App's settings and jobs (``fedprog.flower_app``) and the ``fedprog deploy`` command
line (``fedprog.deploy_cmd``): a workspace run whose consent checkpoint the sites' witnesses
cosign over Flower messages, the validation job, config parsing and the refusal of plaintext
off loopback. The ServerApp's ``run`` drives the real ClientApp over Flower messages in memory
(:class:`tests.federated.protocol.flower_grid.LoopbackGrid`); the real processes are in test_deploy.py."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pandas as pd
import pytest
from flwr.common.config import parse_config_args

from federated.analyses.runner import train
from federated.demo_study import write_demo_study
from federated.disclosure.rules import SiteFloors
from federated.exceptions import FederatedError
from federated.protocol.flower_transport import FlowerTransport, discover
from federated.protocol.secagg import KeyPair
from federated.site.handler import Site
from federated.site.tables import TableFormat
from federated.study import StudySpec, load_study
from fedprog.deploy_cmd import config_string
from fedprog.flower_app import NodeSettings, RunSettings, approved_protocol, as_registered, client, run
from fedprog.workspace import Workspace
from ledger.checkpoint import parse_note
from tests.conftest import copy_workspace
from tests.federated.protocol.flower_grid import LoopbackGrid, approved_nodes
from tests.fedprog.test_cli import run as fedprog


def grid_for(ws: Path) -> LoopbackGrid:
    w = Workspace(ws)
    return LoopbackGrid(client, {10 + i: {"site": s, "data-path": w.manifest["sites"][s]["data"],
                                          "workspace": str(ws)} for i, s in enumerate(w.sites)})


def next_study(ws: Path, folder: Path) -> Path:
    """The released demo model's study as version 2, as the coordinator would submit it."""
    w = Workspace(ws)
    (entry,) = [e for e in w.models.list() if e.lifecycle == "released"]
    study = StudySpec.model_validate(w.models.study_of(entry)).model_copy(update={"version": "2"})
    path = folder / "study.json"
    path.write_text(study.model_dump_json(exclude={"sites"}), encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.req("SRS-DEP-005", "SRS-DEP-001")
def test_a_workspace_run_is_witnessed_by_the_sites_and_registered(demo_workspace: Path,
                                                                   tmp_path: Path) -> None:
    ws = copy_workspace(demo_workspace, tmp_path / "ws")
    twin = copy_workspace(demo_workspace, tmp_path / "twin")
    study = next_study(ws, tmp_path)
    grid = grid_for(ws)
    settings = RunSettings.of({"study": str(study), "out": str(tmp_path / "out"), "jobs": "cox,validate",
                               "workspace": str(ws), "n-boot": 1000})  # as the demo validates
    summary = run(grid, settings)

    # the same consent state gives the same patients, hence the same model as `fedprog train
    # --workspace`, registered the same way: the same version, successor of the released one
    trained = fedprog("train", "--workspace", twin, "--study", study, "--json")
    assert trained.returncode == 0, trained.stderr
    embedded = json.loads(trained.stdout)
    artifact = json.loads((tmp_path / "out" / "cox.json").read_text())
    assert artifact["sha256"] == embedded["sha256"] == summary["jobs"]["cox"]["sha256"]
    w = Workspace(ws)
    entry = w.models.get("gbsg2-recurrence@2")
    assert entry.sha256 == artifact["sha256"] and entry.lifecycle == "validated"
    registered = Workspace(twin).models.get("gbsg2-recurrence@2")
    assert (entry.job, entry.predecessor, registered.lifecycle) == (registered.job, "gbsg2-recurrence@1",
                                                                     "candidate")
    assert registered.predecessor == entry.predecessor
    assert summary["jobs"]["validate"]["recorded"] is True

    # every site's witness cosigned, in its own ClientApp, the checkpoint the ledger keeps
    cosigns = [m for m in grid.pushed if m.metadata.message_type == "query.fedprog_cosign"]
    assert {m.metadata.dst_node_id for m in cosigns} == set(grid.contexts)
    latest = w.ledger.latest_checkpoint()
    assert latest is not None and latest[0] == w.ledger.size
    _, signatures = parse_note(latest[1])
    witnesses = {s.name for s in signatures} - {w.ledger.verifier.name}
    assert witnesses == {f"{s}.witness.fedprog" for s in w.sites}
    for site in w.sites:
        assert w.witness(site).state.size == w.ledger.size
    report = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert set(report["sites"]) == set(w.sites)
    (c_index,) = [m for m in report["pooled"]["metrics"] if m["metric"] == "harrell_c"]
    assert c_index["sites"] == w.sites and 0.5 < c_index["estimate"] < 1
    assert summary["jobs"]["validate"]["passed"] is report["passed"]


@pytest.mark.req("SRS-DEP-005")
def test_a_workspace_run_registers_as_train_does_and_refuses_a_model_that_could_not_be_served(
        demo_workspace: Path, tmp_path: Path) -> None:
    ws = Workspace(demo_workspace)
    study = load_study(next_study(demo_workspace, tmp_path))
    # the successor of the newest version of the model, as `fedprog train --workspace` registers it
    spec, predecessor = as_registered(ws, study)
    assert spec.version == "1" and predecessor is not None and predecessor.ref == "gbsg2-recurrence@1"
    fresh, none = as_registered(ws, study.model_copy(update={"model_id": "other-model", "version": "7"}))
    assert fresh.version == "7" and none is None
    # a covariate without its declared input: refused before any site is asked, nothing registered
    size = ws.ledger.size
    bare = tmp_path / "bare.json"
    inputs = {k: v for k, v in study.inputs.items() if k != "tsize"}
    bare.write_text(study.model_copy(update={"inputs": inputs}).model_dump_json(exclude={"sites"}),
                    encoding="utf-8")
    settings = RunSettings.of({"study": str(bare), "out": str(tmp_path / "out"),
                               "workspace": str(demo_workspace), "connect-timeout": 1})
    with pytest.raises(ValueError, match=r"^study: covariate 'tsize' has no declared input"):
        run(LoopbackGrid(client, {}), settings)
    assert Workspace(demo_workspace).ledger.size == size


@pytest.mark.req("SRS-DEP-005")
def test_a_witness_that_refuses_stops_the_run_with_its_reason(demo_workspace: Path, tmp_path: Path) -> None:
    ws = copy_workspace(demo_workspace, tmp_path / "ws")
    grid = grid_for(ws)
    node = next(n for n, c in grid.contexts.items() if c.node_config["site"] == "hospital-b")
    grid.contexts[node].node_config.pop("workspace")
    settings = RunSettings.of({"study": str(next_study(ws, tmp_path)), "out": str(tmp_path / "out"),
                               "workspace": str(ws)})
    with pytest.raises(Exception, match="site 'hospital-b': witness refused to cosign: .*no workspace"):
        run(grid, settings)


@pytest.mark.req("SRS-DEP-003")
def test_node_and_run_configs_are_checked_with_one_line_errors(tmp_path: Path) -> None:
    node = NodeSettings.of({"site": "hospital-a", "data-path": "/x.csv", "workspace": "/w"})
    assert node.site == "hospital-a" and node.data_path == Path("/x.csv")
    for bad, why in (({"site": "a"}, "data-path"), ({"site": "", "data-path": "/x"}, "site"),
                     ({"site": "a", "data-path": "/x", "sitename": "b"}, "sitename")):
        with pytest.raises(ValueError, match=f"^node config: .*{why}") as err:
            NodeSettings.of(bad)
        assert "\n" not in str(err.value)
    settings = RunSettings.of({"study": "/s.toml", "out": "/o", "jobs": "cox, km", "sites": "a,b,c",
                               "round-timeout": "", "n-boot": 50})
    assert settings.jobs == ["cox", "km"] and settings.sites == ["a", "b", "c"]
    assert settings.round_timeout is None and settings.n_boot == 50
    with pytest.raises(ValueError, match="^run config: .*jobs"):
        RunSettings.of({"study": "/s", "out": "/o", "jobs": "cox,train"})
    assert RunSettings.of({"study": "/s", "out": "/o", "protocol": "/p.json"}).protocol == Path("/p.json")
    assert RunSettings.of({"study": "/s", "out": "/o", "protocol": ""}).protocol is None


@pytest.mark.req("SRS-PRIV-010", "SRS-DEP-003")
def test_a_node_holds_its_identity_key_approved_studies_and_floors(demo_workspace: Path,
                                                                   tmp_path: Path) -> None:
    ws = Workspace(demo_workspace)
    site = "hospital-a"
    data = ws.manifest["sites"][site]["data"]
    # with a workspace: the site's own identity key and the studies its operator approved there
    node = NodeSettings.of({"site": site, "data-path": data, "workspace": str(demo_workspace)})
    identity = node.identity()
    assert identity is not None and identity.public == ws.identity(site).public
    assert node.approvals() == ws.approvals(site) and len(node.approvals()) == 1
    node.check()
    # explicit files win: one approved study, or a folder of them; the operator's floors
    (protocol,) = ws.approvals(site)
    (tmp_path / "approved").mkdir()
    one = tmp_path / "approved" / "study.json"
    one.write_text(json.dumps(protocol.model_dump(mode="json")), encoding="utf-8")
    floors = tmp_path / "floors.json"
    floors.write_text(SiteFloors(min_sites=4, min_cell_count=10).model_dump_json(), encoding="utf-8")
    for approved in (one, one.parent):
        node = NodeSettings.of({"site": site, "data-path": data, "approved": str(approved),
                                "identity-key": str(demo_workspace / "sites" / site / "identity.key"),
                                "floors": str(floors)})
        node.check()
        assert node.approvals() == [protocol]
        assert node.site_floors() == SiteFloors(min_sites=4, min_cell_count=10)
        made = node.site_factory()(lambda s, r: KeyPair.generate(), False)
        assert made.identity.public == protocol.peers[site] and made.floors.min_sites == 4
    # no workspace, no approved study: a node that refuses every request (SRS-PRIV-010)
    bare = NodeSettings.of({"site": site, "data-path": data})
    assert bare.identity() is None and bare.approvals() == [] and bare.site_floors() is None
    bare.check()
    # a new node's identity key is created on first use (0600); a study pinning another key for
    # the site, an unreadable approval or floors file are one-line config errors
    fresh = NodeSettings.of({"site": site, "data-path": data, "identity-key": str(tmp_path / "new.key"),
                             "approved": str(one)})
    with pytest.raises(ValueError, match=f"^node config: approved study 'gbsg2-recurrence' "
                       f"\\({protocol.sha256[:12]}\\) pins another identity key for site 'hospital-a'$"):
        fresh.check()
    assert (tmp_path / "new.key").stat().st_mode & 0o777 == 0o600
    created = fresh.identity()
    assert created is not None and created.public != protocol.peers[site]
    (tmp_path / "bad.json").write_text('{"study_id": "x"}', encoding="utf-8")
    for key in ("approved", "floors"):
        with pytest.raises(ValueError, match=f"^node config: {key} .*bad.json: ") as err:
            NodeSettings.of({"site": site, "data-path": data, key: str(tmp_path / "bad.json")}).check()
        assert "\n" not in str(err.value)


@pytest.mark.req("SRS-PRIV-010", "SRS-DEP-003")
def test_the_server_app_runs_under_the_approved_protocol(demo_workspace: Path, tmp_path: Path) -> None:
    ws = Workspace(demo_workspace)
    study = load_study(next_study(demo_workspace, tmp_path))
    expected = ws.protocol(study)
    assert expected in ws.approvals("hospital-a")  # the demo's operators approved it (version aside)
    out = tmp_path / "out"
    # with a workspace: the workspace's protocol of the study; a protocol file must be the same
    settings = RunSettings.of({"study": str(tmp_path / "study.json"), "out": str(out),
                               "workspace": str(demo_workspace)})
    assert approved_protocol(settings, study, ws) == expected
    path = tmp_path / "protocol.json"
    path.write_text(expected.model_dump_json(), encoding="utf-8")
    assert approved_protocol(settings.model_copy(update={"protocol": path}), study, ws) == expected
    other = expected.model_copy(update={"max_rounds": 10})
    path.write_text(other.model_dump_json(), encoding="utf-8")
    with pytest.raises(ValueError, match="^run config: protocol .* is not the workspace's protocol"):
        approved_protocol(settings.model_copy(update={"protocol": path}), study, ws)
    # without a workspace: the protocol file, which a run cannot do without
    alone = RunSettings.of({"study": str(tmp_path / "study.json"), "out": str(out), "protocol": str(path)})
    assert approved_protocol(alone, study, None) == other
    with pytest.raises(ValueError, match=r"^run config: `protocol` .* is needed without a workspace$"):
        run(LoopbackGrid(client, {}), alone.model_copy(update={"protocol": None}))
    assert not out.exists()


@pytest.mark.req("SRS-DEP-004")
def test_config_values_are_quoted_as_flower_parses_them() -> None:
    values = {"site": "hospital-a", "data-path": '/data/with space/"quoted".csv', "n-boot": 200,
              "connect-timeout": 2.5, "skipped": None}
    text = config_string(values)
    assert parse_config_args([text]) == {k: v for k, v in values.items() if v is not None}
    plain = {"workspace": "C:\\fedprog\\ws", "name": "Hôpital d'Ouest"}
    assert parse_config_args([config_string(plain)]) == plain


@pytest.mark.req("SRS-DEP-004", "SYS-OPS-001")
def test_plaintext_is_refused_off_loopback_and_tls_is_required(tmp_path: Path) -> None:
    data = tmp_path / "site.csv"
    data.write_text("time,event\n1,1\n")
    off = fedprog("deploy", "supernode", "--superlink", "10.0.0.5:9093", "--site", "a", "--data", data,
                  "--port", "9100", "--insecure", "--dry-run")
    assert off.returncode == 2
    assert off.stderr.strip() == ("fedprog: error: --insecure is only for loopback; 10.0.0.5:9093 is not: "
                                  "give TLS certificates")
    bare = fedprog("deploy", "superlink", "--host", "0.0.0.0", "--dry-run")
    assert bare.returncode == 2 and "TLS certificates are required" in bare.stderr
    tls = fedprog("deploy", "superlink", "--host", "0.0.0.0", "--ssl-certfile", "c.pem", "--ssl-keyfile",
                  "k.pem", "--ssl-ca-certfile", "ca.pem", "--node-auth", "--dry-run")
    assert tls.returncode == 0, tls.stderr
    assert tls.stdout.strip() == (
        "flower-superlink --ssl-certfile c.pem --ssl-keyfile k.pem --ssl-ca-certfile ca.pem --host 0.0.0.0 "
        "--port 9093 --disable-runtime-dependency-installation --enable-supernode-auth")
    node = fedprog("deploy", "supernode", "--superlink", "link.hospital.example:9093", "--site",
                   "hospital-a", "--data", data, "--port", "9100", "--root-certificates", "ca.pem",
                   "--auth-key", "node.key", "--dry-run")
    assert node.returncode == 0, node.stderr
    assert node.stdout.strip() == (
        "flower-supernode --root-certificates ca.pem --superlink link.hospital.example:9093 --port 9100 "
        f"--node-config 'site=\"hospital-a\" data-path=\"{data.resolve()}\" patient-column=\"patient_id\"' "
        "--auth-supernode-private-key node.key")
    missing = fedprog("deploy", "supernode", "--superlink", "127.0.0.1:1", "--site", "a", "--data",
                      tmp_path / "nope.csv", "--port", "9100", "--insecure", "--dry-run")
    assert missing.returncode == 2 and "no such file" in missing.stderr


@pytest.mark.req("SRS-DEP-004", "SRS-PRIV-010")
def test_deploy_passes_the_sites_rules_and_the_approved_protocol_to_flower(tmp_path: Path) -> None:
    data, key, approved, floors, protocol = (tmp_path / n for n in ("site.csv", "id.key", "approved",
                                                                  "floors.json", "protocol.json"))
    data.write_text("time,event\n1,1\n")
    approved.mkdir()
    floors.write_text("{}")
    protocol.write_text("{}")
    node = fedprog("deploy", "supernode", "--superlink", "127.0.0.1:9093", "--site", "hospital-a", "--data",
                   data, "--port", "9100", "--identity-key", key, "--approved", approved, "--floors", floors,
                   "--insecure", "--dry-run")
    assert node.returncode == 0, node.stderr
    argv = shlex.split(node.stdout.strip())
    assert argv[:7] == ["flower-supernode", "--insecure", "--superlink", "127.0.0.1:9093", "--port", "9100",
                        "--node-config"]
    assert parse_config_args([argv[7]]) == {
        "site": "hospital-a", "data-path": str(data.resolve()), "patient-column": "patient_id",
        "identity-key": str(key.resolve()), "approved": str(approved.resolve()),
        "floors": str(floors.resolve())}
    assert NodeSettings.of(parse_config_args([argv[7]])).approved == approved.resolve()
    gone = fedprog("deploy", "supernode", "--superlink", "127.0.0.1:9093", "--site", "a", "--data", data,
                   "--port", "9100", "--approved", tmp_path / "nope", "--insecure", "--dry-run")
    assert gone.returncode == 2 and "--approved" in gone.stderr and "no such file" in gone.stderr

    submitted = fedprog("deploy", "run", tmp_path / "app", "--superlink", "127.0.0.1:9093", "--study",
                        tmp_path / "study.json", "--protocol", protocol, "--out", tmp_path / "out",
                        "--insecure", "--dry-run")
    assert submitted.returncode == 0, submitted.stderr
    home, *command = shlex.split(submitted.stderr.strip().splitlines()[-1])
    assert home.startswith("FLWR_HOME=")
    assert command[:5] == ["flwr", "run", str(tmp_path / "app"), "fedprog", "--stream"]
    assert command[5] == "--run-config"
    config = parse_config_args([command[6]])
    assert config["protocol"] == str(protocol.resolve()) and config["study"] == str(tmp_path / "study.json")
    settings = RunSettings.of(config)
    assert settings.protocol == protocol.resolve()
    nothing = fedprog("deploy", "run", tmp_path / "app", "--superlink", "127.0.0.1:9093", "--study",
                      tmp_path / "study.json", "--protocol", tmp_path / "nope.json", "--out",
                      tmp_path / "out", "--insecure", "--dry-run")
    assert nothing.returncode == 2 and "--protocol" in nothing.stderr and "no such file" in nothing.stderr


@pytest.mark.req("SRS-DEP-001")
def test_the_app_folder_names_the_fedprog_components(tmp_path: Path) -> None:
    import tomllib

    from flwr.common.config import validate_config

    res = fedprog("deploy", "app", tmp_path / "app")
    assert res.returncode == 0, res.stderr
    config = tomllib.loads((tmp_path / "app" / "pyproject.toml").read_text())
    ok, errors, _ = validate_config(config, check_module=True, project_dir=tmp_path / "app")
    assert ok, errors
    assert config["tool"]["flwr"]["app"]["components"] == {"serverapp": "fedprog.flower_app:server",
                                                          "clientapp": "fedprog.flower_app:client"}


@pytest.mark.req("SRS-DEP-007", "SRS-DEP-001")
def test_a_node_reads_its_table_as_its_hospital_exported_it(tmp_path: Path) -> None:
    spec = write_demo_study(tmp_path)
    sites = ("hospital-a", "hospital-b", "hospital-c")
    study = spec.model_copy(update={"sites": [s for s in spec.sites if s.name in sites],
                                    "policy": spec.policy.model_copy(update={"min_sites": 2})})
    floors = SiteFloors(min_sites=2)
    protocol, _, configs = approved_nodes(study, tmp_path / "rules", floors)
    # hospital-b's table as German Excel writes it: ';' between fields, decimal commas, Windows-1252
    # (a note column in it), and its operator says so on the command line
    plain = study.sites[1].path
    excel = tmp_path / "hospital-b-excel.csv"
    pd.read_csv(plain).assign(note="Größe geprüft").to_csv(excel, sep=";", decimal=",", index=False,
                                                           encoding="cp1252")
    res = fedprog("deploy", "supernode", "--superlink", "127.0.0.1:9093", "--site", "hospital-b", "--data",
                  excel, "--port", "9100", "--delimiter", ";", "--decimal", ",", "--encoding", "windows-1252",
                  "--insecure", "--dry-run")
    assert res.returncode == 0, res.stderr
    node = parse_config_args([shlex.split(res.stdout)[-1]])
    assert (node["delimiter"], node["decimal"], node["encoding"]) == (";", ",", "cp1252")
    assert NodeSettings.of(node).table_format() == TableFormat(delimiter=";", decimal=",", encoding="cp1252")

    def fit(config_b: dict[str, str]) -> dict[str, object]:
        grid = LoopbackGrid(client, {10 + i: {**configs[s], **(config_b if s == "hospital-b" else {})}
                                     for i, s in enumerate(sites)})
        found = discover(grid, list(sites), timeout=5)
        transport = FlowerTransport(grid, {site: n.node_id for site, n in found.items()})
        return train(study, sites=transport, protocol=protocol)[1]

    # the Flower site reads it under that format: the same model, bit for bit, as from the plain table
    _, reference = train(study, sites=[Site(s.name, s.path, floors=floors) for s in study.sites])
    assert fit({k: node[k] for k in ("data-path", "delimiter", "decimal", "encoding")})["sha256"] \
        == reference["sha256"]
    # without the format the node cannot read it, and says so: the fit stops
    with pytest.raises(FederatedError, match="^site 'hospital-b': the site's table: not UTF-.* --encoding"):
        fit({"data-path": node["data-path"]})
    bad = fedprog("deploy", "supernode", "--superlink", "127.0.0.1:9093", "--site", "hospital-b", "--data",
                  excel, "--port", "9100", "--delimiter", ",", "--decimal", ",", "--insecure", "--dry-run")
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("fedprog: error: --delimiter/--decimal: delimiter and decimal mark are "
                                  "both ',': ambiguous (a table with decimal commas is usually "
                                  "';'-separated)")
    with pytest.raises(ValueError, match=r"^node config: encoding: .*unknown text encoding 'klingon'"):
        NodeSettings.of({**node, "encoding": "klingon"})
