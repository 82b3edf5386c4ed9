"""SOUP list and CycloneDX SBOM of the running environment (IEC 62304 §5.1.7, §7.1.3, §8.1.2)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from email.message import Message
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from fedprog.soup_cmd import sbom, soup
from traceability.installed import (
    Dist,
    applies,
    canonical,
    declared,
    dependency_graph,
    installed,
    licence_of,
    parse_requirement,
)
from traceability.sbom import HASH_BASIS, SchemaUnavailable, build_sbom, schema_errors
from traceability.soup import (
    SoupEntry,
    SoupItem,
    build_items,
    check_soup,
    load_soup,
    requirement_ids,
    soup_items,
    soup_problems,
)

SOUP = pytest.mark.req("SRS-SOUP-001")
SBOM = pytest.mark.req("SRS-SOUP-002")
WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def items() -> dict[str, SoupItem]:
    return {item.name: item for item in soup_items()}


@pytest.fixture(scope="module")
def bom_text() -> str:
    return build_sbom(WHEN)


@pytest.fixture(scope="module")
def bom(bom_text: str) -> dict[str, Any]:
    return json.loads(bom_text)


def _third_party() -> dict[str, str]:
    """canonical name → version of every installed distribution but fedprog (first on sys.path)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        found.setdefault(canonical(dist.metadata["Name"]), dist.version)
    found.pop("fedprog", None)
    return found


# --- SOUP list ----------------------------------------------------------------------------------

@SOUP
def test_soup_lists_every_installed_distribution_with_version_and_licence(items: dict[str, SoupItem]) -> None:
    assert {name: item.version for name, item in items.items()} == _third_party()
    for name in ("fastapi", "numpy", "cryptography", "fhir-resources"):
        assert items[name].version == metadata.version(name)
        assert items[name].licence not in ("", "UNKNOWN")
    assert items["numpy"].licence.startswith("BSD-3-Clause")  # License-Expression, verbatim
    assert items["cryptography"].licence == "Apache-2.0 OR BSD-3-Clause"
    assert "fedprog" not in items


@SOUP
def test_direct_dependencies_carry_purpose_risk_and_requirement_ids(items: dict[str, SoupItem]) -> None:
    direct = declared()
    assert {"numpy", "fastapi", "cryptography", "fhir-resources", "pytest"} <= set(direct)
    for name, (use, _) in direct.items():
        item = items[name]
        assert item.kind == use and item.purpose and item.risk, name
        assert item.requirements or use == "dev", f"{name}: a runtime SOUP item no requirement relies on"
    assert items["fastapi"].shipped and not items["pytest"].shipped
    ids = requirement_ids()
    if ids is None:
        pytest.skip("traceability/requirements/*.yaml not written yet: requirement ids not checked")
    for item in items.values():
        assert set(item.requirements) <= ids, f"{item.name}: {sorted(set(item.requirements) - ids)}"


@SOUP
def test_transitive_packages_say_who_requires_them(items: dict[str, SoupItem]) -> None:
    starlette = items["starlette"]
    assert starlette.kind == "transitive" and starlette.shipped
    assert "fastapi" in starlette.required_by and starlette.purpose.startswith("required by ")
    assert set(items["fastapi"].requirements) <= set(starlette.requirements)
    # uvicorn[standard] pulls in httptools only through the requested extra
    assert "uvicorn" in items["httptools"].required_by and items["httptools"].shipped
    assert items["pip"].kind == "environment" and not items["pip"].shipped


@SOUP
def test_check_soup_is_clean_for_this_environment() -> None:
    assert check_soup() == []


@SOUP
def test_soup_problems_are_reported() -> None:
    numpy = installed()["numpy"]
    dists = {"numpy": numpy,
             "mystery": Dist("mystery", "1.0", "UNKNOWN", False, (), numpy.dist),
             "devtool": Dist("devtool", "2.0", "UNKNOWN", False, (), numpy.dist)}
    entry: dict[str, Any] = {"purpose": "arrays", "risk": "checked by tests", "requirements": ["SRS-FED-001"]}
    entries = {"numpy": SoupEntry(use="test", **entry), "gone": SoupEntry(use="runtime", **entry)}
    deps: dict[str, Any] = {"numpy": ("runtime", frozenset()), "mystery": ("runtime", frozenset()),
                            "devtool": ("dev", frozenset())}
    items = build_items(dists, entries, deps)
    problems = soup_problems(items, entries, deps, known_ids={"SRS-SEC-001"})
    assert problems == [
        "devtool: a direct dependency with no entry in traceability/soup.yaml",
        "mystery: a direct dependency with no entry in traceability/soup.yaml",
        "gone: listed in traceability/soup.yaml but not installed",
        "gone: soup.yaml names requirement SRS-FED-001, which does not exist",
        "numpy: soup.yaml says test but pyproject.toml declares it runtime",
        "numpy: soup.yaml names requirement SRS-FED-001, which does not exist",
        "mystery 1.0: no licence in its metadata (a runtime package)",
    ]  # devtool's unknown licence is no problem: test tooling does not ship


@SOUP
def test_soup_yaml_is_validated_with_one_line_errors() -> None:
    with pytest.raises(ValueError, match=r"^soup.yaml: numpy: purpose: Field required$"):
        load_soup("numpy: {use: runtime, risk: none known}")
    with pytest.raises(ValueError, match="listed twice"):
        load_soup("fhir.resources: {use: runtime, purpose: abc, risk: abc}\n"
                  "fhir_resources: {use: runtime, purpose: abc, risk: abc}")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_soup("numpy: [")


def _meta(**fields: str | list[str]) -> Message:
    msg = Message()
    for key, value in fields.items():
        for v in [value] if isinstance(value, str) else value:
            msg[key.replace("_", "-")] = v
    return msg


@SOUP
@pytest.mark.parametrize(("fields", "expected"), [
    ({"License_Expression": "MIT OR Apache-2.0", "License": "ignored"}, ("MIT OR Apache-2.0", True)),
    ({"License": "BSD-3-Clause", "Classifier": ["License :: OSI Approved :: MIT License"]},
     ("BSD-3-Clause", False)),
    ({"License": "Copyright (c) 2001\n\nlong text", "Classifier": ["License :: OSI Approved :: BSD License"]},
     ("BSD License", False)),
    ({"License": "=====\nThe Kiwi licensing terms\n" + "x" * 200}, ("The Kiwi licensing terms", False)),
    ({"License": "y" * 100}, ("y" * 59 + "…", False)),
    ({"License": "UNKNOWN"}, ("UNKNOWN", False)),
    ({}, ("UNKNOWN", False)),
])
def test_licence_comes_from_expression_field_or_classifiers(fields: dict[str, Any],
                                                           expected: tuple[str, bool]) -> None:
    assert licence_of(_meta(**fields)) == expected  # type: ignore[arg-type]


@SOUP
def test_requirement_markers_and_requested_extras() -> None:
    req = parse_requirement('PyYAML>=5.1; extra == "standard"')
    assert (req.name, req.extras) == ("pyyaml", frozenset())
    assert not applies(req) and applies(req, {"standard"})
    assert applies(parse_requirement('typing_extensions>=4; python_version >= "3.8"'))
    assert not applies(parse_requirement('tomli; python_version < "3.0"'))
    assert parse_requirement("uvicorn[standard]>=0.29").extras == {"standard"}
    numpy = installed()["numpy"].dist
    dists = {"a": Dist("a", "1", "MIT", True, (parse_requirement("b[x]>=1"),), numpy),
             "b": Dist("b", "1", "MIT", True, (parse_requirement("c; extra == 'x'"),
                                               parse_requirement("d; extra == 'y'")), numpy),
             "c": Dist("c", "1", "MIT", True, (), numpy), "d": Dist("d", "1", "MIT", True, (), numpy)}
    assert dependency_graph(dists, {"a": frozenset()}) == {"a": ["b"], "b": ["c"], "c": [], "d": []}


# --- SBOM ---------------------------------------------------------------------------------------

@SBOM
def test_sbom_has_a_component_with_purl_and_sha256_per_installed_distribution(bom: dict[str, Any]) -> None:
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    assert bom["serialNumber"].startswith("urn:uuid:")
    assert bom["metadata"]["timestamp"].startswith("2025-01-02T03:04:05")
    root = bom["metadata"]["component"]
    assert (root["name"], root["version"]) == ("fedprog", metadata.version("fedprog"))
    components = {c["name"]: c for c in bom["components"]}
    assert {name: c["version"] for name, c in components.items()} == _third_party()
    for name, c in components.items():
        assert c["purl"] == c["bom-ref"] == f"pkg:pypi/{name}@{c['version']}"
        (digest,) = c["hashes"]
        assert digest["alg"] == "SHA-256" and len(digest["content"]) == 64
        assert any(p["name"] == HASH_BASIS for p in c["properties"])
    assert components["fastapi"]["scope"] == "required" and components["pytest"]["scope"] == "excluded"
    assert components["cryptography"]["licenses"] == [{"expression": "Apache-2.0 OR BSD-3-Clause"}]


@SBOM
def test_sbom_hash_is_that_of_the_installed_record(bom: dict[str, Any]) -> None:
    dist = metadata.distribution("numpy")
    record = next(f for f in dist.files or () if f.name == "RECORD" and f.parent.name.endswith(".dist-info"))
    numpy = next(c for c in bom["components"] if c["name"] == "numpy")
    assert numpy["hashes"][0]["content"] == hashlib.sha256(Path(record.locate()).read_bytes()).hexdigest()
    basis = {p["name"]: p["value"] for p in numpy["properties"]}[HASH_BASIS]
    assert basis.startswith("sha256 of the installed RECORD")


@SBOM
def test_sbom_dependency_graph_follows_requires_dist(bom: dict[str, Any]) -> None:
    graph = {d["ref"]: set(d.get("dependsOn", [])) for d in bom["dependencies"]}
    purl = {c["name"]: c["purl"] for c in bom["components"]}
    root = graph[bom["metadata"]["component"]["bom-ref"]]
    assert {purl["fastapi"], purl["numpy"], purl["pytest"]} <= root
    assert purl["starlette"] in graph[purl["fastapi"]]
    assert purl["httptools"] in graph[purl["uvicorn"]]  # via the requested [standard] extra
    assert set(graph) == set(purl.values()) | {bom["metadata"]["component"]["bom-ref"]}


def _jsonschema_rs_errors(text: str) -> list[str]:
    """Fallback: the schema files cyclonedx-python-lib ships, checked with jsonschema-rs (offline)."""
    jsonschema_rs = pytest.importorskip("jsonschema_rs", reason="no JSON schema validator installed")
    import cyclonedx.schema

    folder = Path(cyclonedx.schema.__file__).parent / "_res"
    if not (folder / "bom-1.6.SNAPSHOT.schema.json").is_file():
        pytest.skip("cyclonedx-python-lib ships no CycloneDX 1.6 JSON schema where expected")
    schemas = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("*.schema.json")}
    validator = jsonschema_rs.validator_for(schemas["bom-1.6.SNAPSHOT.schema.json"],
                                            retriever=lambda uri: schemas[uri.rsplit("/", 1)[-1]])
    return [e.message for e in validator.iter_errors(json.loads(text))]


@SBOM
def test_sbom_validates_against_the_cyclonedx_schema(bom_text: str) -> None:
    try:
        errors = schema_errors(bom_text)
    except SchemaUnavailable:  # no json-validation extra: same shipped schema, another validator
        errors = _jsonschema_rs_errors(bom_text)
    assert errors == []
    broken = json.loads(bom_text)
    broken["components"][0]["hashes"][0]["alg"] = "SHA-999"
    try:
        assert schema_errors(json.dumps(broken))
    except SchemaUnavailable:
        assert _jsonschema_rs_errors(json.dumps(broken))


@SBOM
def test_sbom_is_byte_identical_for_the_same_environment_and_timestamp(
        bom_text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_sbom(WHEN) == bom_text
    later = json.loads(build_sbom(datetime(2026, 1, 1, tzinfo=UTC)))
    assert later["serialNumber"] != json.loads(bom_text)["serialNumber"]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(WHEN.timestamp())))
    assert build_sbom() == bom_text


# --- commands -----------------------------------------------------------------------------------

def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("soup")(soup)
    app.command("sbom")(sbom)
    return app


@SOUP
def test_soup_command_table_json_and_check(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    result = runner.invoke(_app(), ["soup", "--json"])
    assert result.exit_code == 0, result.output
    packages = {p["name"]: p for p in json.loads(result.stdout)["packages"]}
    assert {"name", "version", "licence", "purpose", "requirements", "kind"} <= set(packages["fastapi"])
    assert packages["fastapi"]["kind"] == "runtime" and packages["fastapi"]["requirements"]
    table = runner.invoke(_app(), ["soup"])
    assert table.exit_code == 0 and "fastapi" in table.stdout and "SOUP:" in table.stdout
    ok = runner.invoke(_app(), ["soup", "--check"])
    assert (ok.exit_code, ok.stdout.strip()) == (0, "SOUP record complete")
    monkeypatch.setattr("traceability.soup.check_soup", lambda: ["numpy: something is off"])
    bad = runner.invoke(_app(), ["soup", "--check", "--json"])
    assert bad.exit_code == 1 and json.loads(bad.stdout) == {"problems": ["numpy: something is off"]}


@SBOM
def test_sbom_command_writes_atomically_and_reports(tmp_path: Path, bom_text: str) -> None:
    runner = CliRunner()
    out = tmp_path / "sbom.cdx.json"
    result = runner.invoke(_app(), ["sbom", "--out", str(out), "--timestamp", "2025-01-02T03:04:05Z"])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == bom_text
    assert [p.name for p in tmp_path.iterdir()] == ["sbom.cdx.json"]  # no temporary file left
    assert result.stdout.startswith(f"{out}: CycloneDX 1.6 SBOM, {len(json.loads(bom_text)['components'])} ")
    as_json = runner.invoke(_app(), ["sbom", "--out", str(out), "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["path"] == str(out)


@SBOM
@pytest.mark.parametrize(("args", "env", "message"), [
    (["--out", "{tmp}/no/such/dir/sbom.json"], {}, "No such file or directory"),
    (["--out", "{tmp}/sbom.json", "--timestamp", "yesterday"], {}, "--timestamp: not an ISO 8601 date-time"),
    (["--out", "{tmp}/sbom.json"], {"SOURCE_DATE_EPOCH": "soon"}, "SOURCE_DATE_EPOCH: not a whole number"),
])
def test_sbom_command_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], env: dict[str, str],
                                                   message: str) -> None:
    result = CliRunner().invoke(_app(), ["sbom", *(a.format(tmp=tmp_path) for a in args)], env=env)
    assert result.exit_code == 2
    assert result.stderr.startswith("fedprog: error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "sbom.json").exists()
