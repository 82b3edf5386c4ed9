"""Tests of the traceability tooling; small requirement folders and JUnit files built here."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import yaml

from traceability.schema import Item, fingerprint


def item(item_id: str, item_type: str, parents: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """A raw requirement item (as it would appear in YAML) with sensible defaults."""
    raw: dict[str, Any] = {"id": item_id, "type": item_type, "title": f"Title of {item_id}",
                           "text": f"The text that {item_id} states, at length.",
                           "parents": parents or [], "verification": "test"}
    if item_type == "hazard":
        raw |= {"severity": 4, "probability": 3}
    if item_type == "user-need":
        raw["verification"] = "inspection"
    raw.update(extra)
    return raw


def baseline() -> dict[str, list[dict[str, Any]]]:
    """A complete, gap-free requirement set by file name (reviewed fingerprints filled in)."""
    files = {
        "needs.yaml": [item("UN-DEMO-001", "user-need"),
                       item("SYS-DEMO-001", "system", ["UN-DEMO-001"])],
        "software.yaml": [item("SRS-DEMO-001", "software", ["SYS-DEMO-001"]),
                          item("SRS-DEMO-002", "software", ["SYS-DEMO-001"])],
        "risk.yaml": [item("HAZ-DEMO-001", "hazard", ["SRS-DEMO-001"]),
                      item("RC-DEMO-001", "risk-control", ["HAZ-DEMO-001", "SRS-DEMO-001"])],
    }
    return fill_reviewed(files)


def fill_reviewed(files: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Set every item's ``reviewed`` to its parents' current fingerprints."""
    by_id = {raw["id"]: Item.model_validate(raw) for raws in files.values() for raw in raws}
    for raws in files.values():
        for raw in raws:
            if raw["parents"]:
                raw["reviewed"] = {p: fingerprint(by_id[p]) for p in raw["parents"]}
    return files


def write_folder(folder: Path, files: dict[str, Any]) -> Path:
    """Write each file's content as YAML into ``folder`` (created); the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False,
                                                                       allow_unicode=True, width=100)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


#: the baseline's tests: node id → (outcome, requirement ids)
PASSING: dict[str, tuple[str, tuple[str, ...]]] = {
    "tests/test_demo.py::test_one": ("passed", ("SRS-DEMO-001", "SYS-DEMO-001")),
    "tests/test_demo.py::TestTwo::test_two[a]": ("passed", ("SRS-DEMO-002", "RC-DEMO-001")),
}


def sha_of(nodeid: str) -> str:
    """A stand-in source SHA-256 for a test function (what the plugin records)."""
    return hashlib.sha256(nodeid.split("[", 1)[0].encode()).hexdigest()


def junit_xml(path: Path, cases: dict[str, tuple[str, tuple[str, ...]]], commit: str = "abc123",
              shas: dict[str, str] | None = None) -> Path:
    """A JUnit file shaped like the plugin's (for tests that do not need a real pytest run); each
    test's ``test_sha256`` is ``shas[nodeid]`` or :func:`sha_of` its node id."""
    body = {"passed": "", "failed": '<failure message="boom">trace</failure>',
            "error": '<error message="boom">trace</error>', "skipped": '<skipped message="why" />'}
    rows = []
    for nodeid, (outcome, reqs) in cases.items():
        props = "".join(f'<property name="req" value="{r}" />' for r in reqs)
        sha = (shas or {}).get(nodeid, sha_of(nodeid))
        props = (f'<property name="nodeid" value={quoteattr(nodeid)} />{props}'
                 f'<property name="test_sha256" value="{sha}" />')
        rows.append(f'<testcase classname="x" name="y"><properties>{props}</properties>'
                    f'{body[outcome]}</testcase>')
    path.write_text('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
                    f'<properties><property name="commit" value="{commit}" />'
                    '<property name="date" value="2026-01-02T03:04:05+00:00" />'
                    '<property name="environment_sha256" value="e5" /></properties>'
                    + "".join(rows) + "</testsuite></testsuites>", encoding="utf-8")
    return path


def links_file(path: Path, folder: Path, cases: dict[str, tuple[str, tuple[str, ...]]],
               by: str = "A. Reviewer") -> Path:
    """A reviewed-links baseline at ``path`` covering every link in ``cases`` as it is now (the
    requirements read from ``folder``, the tests' SHA-256 from :func:`sha_of`)."""
    import datetime as dt

    from traceability.links import dump_links, review_links
    from traceability.load import load_requirements

    reqs = load_requirements(folder)
    current = {n.split("[", 1)[0]: (sha_of(n), r) for n, (_, r) in cases.items()}
    ids = sorted({r for _, rs in cases.values() for r in rs if r in reqs})
    baseline, _ = review_links({}, reqs, ids, current, by, dt.date(2026, 1, 2))
    path.write_text(dump_links(baseline), encoding="utf-8")
    return path
