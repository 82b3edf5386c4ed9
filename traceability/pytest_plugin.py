"""pytest plugin linking tests to requirements: ``@pytest.mark.req("SRS-…")``.

PYTEST_DONT_REWRITE: the plugin has no asserts, so pytest need not rewrite it (and never warns
that it was imported before it could be).

Loaded by the project with ``-p traceability.pytest_plugin`` (pyproject ``addopts``). It makes
the test run the verification record IEC 62304 §5.1.1 c) and §5.7 ask for:

* every id in a ``req`` marker (module ``pytestmark``, class and function marks all count) must
  exist in the requirements (``--requirements DIR``, default the package's folder); an unknown
  id, a ``req`` marker without ids, or a requirements folder that does not load stops the run
  with a :class:`pytest.UsageError` (exit code 4) before any test runs;
* each test's JUnit ``<testcase>`` (``--junitxml``) carries ``<property name="req" .../>`` per
  id, ``<property name="nodeid" .../>`` with its exact node id and ``<property
  name="test_sha256" .../>`` with the SHA-256 of its function's source, decorators included
  (:func:`traceability.links.source_sha256`; parametrized instances share it); the outcome is
  JUnit's own (failure/error/skipped elements, see :mod:`traceability.results`);
* ``--trace-links-out FILE`` writes every collected test function that carries a requirement id,
  with its source SHA-256, as JSON (works with ``--collect-only``: ``fedprog trace review`` uses
  it to re-review links without running the suite);
* the ``<testsuite>`` carries ``commit`` (``git rev-parse HEAD`` plus ``-dirty`` when
  ``git status --porcelain`` lists anything; ``unknown`` outside git), ``date`` (UTC, ISO 8601,
  when the session started), ``python``, ``platform`` and ``environment_sha256``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _pytest.junitxml import xml_key  # the stash key record_testsuite_property uses too

MARKER = "req"
_REQ_FOLDER = pytest.StashKey[Path | None]()
_LINKS_OUT = pytest.StashKey[Path | None]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--requirements DIR``: the requirement folder the marker ids are checked against."""
    parser.getgroup("traceability").addoption(
        "--requirements", dest="requirements_folder", default=None, metavar="DIR",
        help="requirements folder for @pytest.mark.req ids (default: traceability/requirements)")
    parser.getgroup("traceability").addoption(
        "--trace-links-out", dest="trace_links_out", default=None, metavar="FILE",
        help="write the collected test -> requirement links with their source SHA-256 (JSON)")


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker (so ``--strict-markers`` accepts it anywhere) and add the run's
    provenance to the JUnit test suite."""
    config.addinivalue_line("markers", "req(*ids): the requirement(s) this test verifies")
    folder = config.getoption("requirements_folder")
    config.stash[_REQ_FOLDER] = Path(folder) if folder else None
    out = config.getoption("trace_links_out")
    config.stash[_LINKS_OUT] = Path(out) if out else None


def pytest_sessionstart(session: pytest.Session) -> None:
    """Suite-level properties: commit, date, python, platform, environment_sha256."""
    xml = session.config.stash.get(xml_key, None)
    if xml is None:
        return
    for name, value in run_properties(session.config.rootpath).items():
        xml.add_global_property(name, value)


def run_properties(repo: Path) -> dict[str, str]:
    """Where and when this run happens (the JUnit suite properties)."""
    return {
        "commit": git_commit(repo),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "environment_sha256": environment_sha256(),
    }


def _git(repo: Path, *args: str) -> str | None:
    try:
        res = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=30,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def git_commit(repo: Path) -> str:
    """``HEAD``'s hash, ``-dirty`` appended if the work tree has changes; ``unknown`` outside git."""
    head = _git(repo, "rev-parse", "HEAD")
    if not head:
        return "unknown"
    status = _git(repo, "status", "--porcelain")
    return f"{head}-dirty" if status is None or status else head


def environment_sha256() -> str:
    """SHA-256 of the installed distributions as sorted, de-duplicated ``name==version`` lines
    (names lower-cased, ``_``/``.`` as ``-``), joined by ``\\n``."""
    pins = set()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            canon = name.lower().replace("_", "-").replace(".", "-")
            pins.add(f"{canon}=={dist.version}")
    return hashlib.sha256("\n".join(sorted(pins)).encode()).hexdigest()


def marker_ids(item: pytest.Item) -> list[str]:
    """The requirement ids on ``item`` (all ``req`` markers, closest first, de-duplicated)."""
    ids: list[str] = []
    for mark in item.iter_markers(MARKER):
        if not mark.args or mark.kwargs:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.req takes one or more requirement ids "
                                    "as positional arguments")
        for arg in mark.args:
            if not isinstance(arg, str):
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.req id {arg!r} is not a string")
            if arg not in ids:
                ids.append(arg)
    return ids


def item_sha256(item: pytest.Item) -> str | None:
    """SHA-256 of the source of the test function behind ``item`` (None if it has none)."""
    from .links import source_sha256

    func = getattr(item, "function", None)
    return source_sha256(func) if callable(func) else None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Record the ids on every collected test (before ``-k``/``-m`` deselect any) and refuse
    unknown ones."""
    from .links import function_id, write_collected
    from .load import RequirementsError, load_requirements

    marked = [(item, marker_ids(item)) for item in items]
    collected: dict[str, tuple[str, list[str]]] = {}
    for item, ids in marked:
        item.user_properties.append(("nodeid", item.nodeid))
        item.user_properties.extend((MARKER, i) for i in ids)
        sha = item_sha256(item)
        if sha:
            item.user_properties.append(("test_sha256", sha))
        if ids:
            fid = function_id(item.nodeid)
            old = collected.get(fid, ("", []))[1]
            collected[fid] = (sha or "", old + [i for i in ids if i not in old])
    out = config.stash.get(_LINKS_OUT, None)
    if out is not None:
        write_collected(out, collected)
    if not any(ids for _, ids in marked):
        return
    try:
        known = load_requirements(config.stash[_REQ_FOLDER]).items
    except RequirementsError as exc:
        raise pytest.UsageError(f"requirements do not load: {exc}") from None
    unknown = [f"{item.nodeid}: unknown requirement id {i!r}" for item, ids in marked for i in ids
               if i not in known]
    if unknown:
        raise pytest.UsageError("@pytest.mark.req names requirements that do not exist:\n  "
                                + "\n  ".join(unknown))
