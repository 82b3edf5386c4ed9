"""Reviewed test → requirement links (``traceability/links.yaml``): a test counts for a
requirement only as the test and the requirement were when someone reviewed the link.

IEC 62304 §5.1.1 c) asks for traceability between requirements and the tests verifying them,
§5.7.4/§5.7.5 for verification that is still valid after a change (§6.2.3, §7.4.1). A marker
``@pytest.mark.req`` alone can be moved, or the test under it rewritten, and the old verdict
would still count; so the plugin records each test function's source SHA-256
(:func:`source_sha256`, the ``test_sha256`` JUnit property) and this baseline records, per
(requirement id, test function id), the test's SHA-256 and the requirement's
:func:`~traceability.schema.fingerprint` at review, the reviewer and the UTC date. A link in a
run that is not in the baseline, or whose test or requirement changed since, is *suspect*
(:mod:`traceability.check`) until ``fedprog trace review ID --by NAME`` records it again.

The file is a YAML list, one mapping per link, sorted by requirement then test, with a fixed key
order: deterministic and diff-friendly. A test function id is the pytest node id without its
``[parameters]`` (parametrized instances share one function and one source).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .load import Requirements, RequirementsError, read_items
from .results import TestRun
from .schema import fingerprint

#: the repository's baseline, beside the requirements folder
DEFAULT_LINKS = Path(__file__).parent / "links.yaml"
#: the repository root (where ``tests/`` and the evidence files live)
REPO_ROOT = Path(__file__).resolve().parent.parent
_SHA = r"^[0-9a-f]{64}$"


class LinksError(RequirementsError):
    """The baseline file, or the collection of current links, is unusable (one line)."""


class Link(BaseModel):
    """One reviewed link: requirement, test function, both fingerprints at review, who, when."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    req: str = Field(min_length=1)
    test: str = Field(min_length=1)
    test_sha256: str = Field(pattern=_SHA)
    req_fingerprint: str = Field(pattern=_SHA)
    reviewed_by: str = Field(min_length=3)
    reviewed_at: dt.date


#: (requirement id, test function id) → its reviewed link
Baseline = dict[tuple[str, str], Link]
#: test function id → (source SHA-256, the requirement ids it carries)
Current = dict[str, tuple[str, tuple[str, ...]]]


def function_id(nodeid: str) -> str:
    """``tests/a.py::TestX::test_y[p-1]`` → ``tests/a.py::TestX::test_y`` (parameters may hold
    ``::`` or ``[``; the first ``[`` of a node id ending in ``]`` opens them)."""
    start = nodeid.find("[")
    return nodeid[:start] if start != -1 and nodeid.endswith("]") else nodeid


def source_sha256(func: Callable[..., Any]) -> str | None:
    """SHA-256 of the source of ``func`` (unwrapped), decorator lines included; None if the
    source cannot be read."""
    try:
        text = inspect.getsource(inspect.unwrap(func))
    except (OSError, TypeError):
        return None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_links(path: Path) -> Baseline:
    """The baseline at ``path`` (an absent file is an empty baseline); :class:`LinksError`
    (one line) if it is malformed or names a link twice."""
    if not path.exists():
        return {}
    try:
        data = read_items(path)
    except RequirementsError as exc:
        if "empty file" in str(exc):
            return {}
        raise LinksError(str(exc)) from None
    out: Baseline = {}
    for index, raw in enumerate(data):
        try:
            link = Link.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "rule"
            raise LinksError(f"{path}: link #{index}: {where}: {err['msg']}") from None
        if (link.req, link.test) in out:
            raise LinksError(f"{path}: link #{index}: {link.req} → {link.test} given twice")
        out[(link.req, link.test)] = link
    return out


def dump_links(baseline: Mapping[tuple[str, str], Link]) -> str:
    """The baseline as YAML text, sorted by (requirement, test), keys in field order."""
    rows = [baseline[k].model_dump(mode="json") for k in sorted(baseline)]
    return yaml.safe_dump(rows, sort_keys=False, allow_unicode=True, width=200) if rows else "[]\n"


def run_links(run: TestRun) -> Current:
    """The current links as a JUnit run records them (every test with a requirement id)."""
    out: Current = {}
    for test in run.tests:
        if test.reqs:
            fid = function_id(test.nodeid)
            _, old = out.get(fid, ("", ()))
            out[fid] = (test.test_sha256, tuple(dict.fromkeys(old + test.reqs)))
    return out


def read_collected(path: Path) -> Current:
    """The links a ``pytest --collect-only --trace-links-out FILE`` run wrote."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {fid: (v["test_sha256"], tuple(v["reqs"])) for fid, v in data.items()}


def write_collected(path: Path, links: Mapping[str, tuple[str, Iterable[str]]]) -> None:
    """Write collected links as sorted JSON (the plugin's ``--trace-links-out``)."""
    data = {fid: {"test_sha256": sha, "reqs": list(reqs)} for fid, (sha, reqs) in sorted(links.items())}
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def collect_links(requirements: Path | None = None, root: Path = REPO_ROOT) -> Current:
    """Collect the test suite (no test runs, about a minute) and return its current links."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "links.json"
        cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
               "-p", "traceability.pytest_plugin", f"--trace-links-out={out}", "tests"]
        if requirements is not None:
            cmd.append(f"--requirements={requirements.resolve()}")
        res = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
        if res.returncode != 0 or not out.exists():
            lines = [*res.stderr.strip().splitlines(), *res.stdout.strip().splitlines()]
            why = next((x for x in lines if x.startswith(("ERROR", "E "))), lines[-1] if lines else "?")
            raise LinksError(f"collecting the tests failed (exit {res.returncode}): {why.strip()}; "
                             "fix collection or pass --junit")
        return read_collected(out)


def review_links(baseline: Mapping[tuple[str, str], Link], reqs: Requirements, ids: Iterable[str],
                 current: Current, by: str, at: dt.date) -> tuple[Baseline, dict[str, list[str]]]:
    """A new baseline in which each requirement of ``ids`` is linked exactly to the tests that
    carry it in ``current``, fingerprinted as they are now and reviewed by ``by`` on ``at``;
    links of other requirements are kept. Also returns requirement id → its test function ids."""
    wanted = set(ids)
    out: Baseline = {k: v for k, v in baseline.items() if k[0] not in wanted}
    tests: dict[str, list[str]] = {i: [] for i in sorted(wanted)}
    for fid, (sha, carried) in sorted(current.items()):
        for req in wanted.intersection(carried):
            if not sha:
                raise LinksError(f"{fid}: no source fingerprint recorded (its source cannot be read)")
            out[(req, fid)] = Link(req=req, test=fid, test_sha256=sha,
                                   req_fingerprint=fingerprint(reqs.get(req)), reviewed_by=by,
                                   reviewed_at=at)
            tests[req].append(fid)
    return out, tests


__all__ = ["DEFAULT_LINKS", "REPO_ROOT", "Baseline", "Current", "Link", "LinksError", "collect_links",
           "dump_links", "load_links", "read_collected", "review_links", "run_links", "source_sha256",
           "function_id", "write_collected"]
