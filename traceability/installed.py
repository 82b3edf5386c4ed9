"""The locked and the installed Python distributions: the raw material of the SOUP list and the
SBOM (IEC 62304 §8.1.2 identification of SOUP items, §5.3.3 the SOUP's requirements).

The record is the lock (``requirements/runtime.lock`` for the device, ``requirements/dev.lock`` for
runtime + tools, written by ``make lock`` with pip-compile): each pin ``name==version`` with the
SHA-256 of every file pip may install and, in its ``# via`` comments, what requires it
(``fedprog (pyproject.toml)`` for a direct dependency). The installed metadata gives only what a lock
does not hold: each distribution's licence. Names are PEP 503 canonical (``fhir.resources`` →
``fhir-resources``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

try:
    from packaging.requirements import Requirement
except ImportError:  # pragma: no cover - packaging is locked (via several runtime packages)
    Requirement = None  # type: ignore[assignment,misc]

PROJECT = "fedprog"
ROOT = Path(__file__).resolve().parents[1]
LOCK_DIR = ROOT / "requirements"
RUNTIME_LOCK = LOCK_DIR / "runtime.lock"
DEV_LOCK = LOCK_DIR / "dev.lock"
#: runtime: the device (its dependencies and the product's own extras such as flower); qms: the quality
#: management tools (traceability, SBOM, validation figures, dossier); dev: development and test tools
Use = Literal["runtime", "qms", "dev"]
#: optional-dependency groups that are tools, not part of the device
TOOL_GROUPS: dict[str, Use] = {"qms": "qms", "dev": "dev"}
_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[([^\]]*)\])?")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})\b")
_LICENCE_MAX = 60


def canonical(name: str) -> str:
    """PEP 503 normalised name."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Req:
    """One parsed requirement: its canonical name and requested extras."""

    name: str
    extras: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Dist:
    """One installed distribution (what its metadata says)."""

    name: str
    version: str
    licence: str
    licence_is_spdx: bool


@dataclass(frozen=True)
class Pin:
    """One pin of a lock file: ``name==version``, the SHA-256 of each file pip may install, and the
    packages that require it (``direct``: fedprog's pyproject.toml names it)."""

    name: str
    version: str
    hashes: tuple[str, ...]
    required_by: tuple[str, ...] = ()
    direct: bool = False


def parse_requirement(spec: str) -> Req:
    """Name and extras of a requirement string (``packaging`` if present, else a regex)."""
    if Requirement is not None:
        try:
            req = Requirement(spec)
        except Exception:  # packaging's InvalidRequirement: fall through to the plain parse
            pass
        else:
            return Req(canonical(req.name), frozenset(canonical(e) for e in req.extras))
    match = _NAME.match(spec.partition(";")[0])
    if match is None:
        raise ValueError(f"cannot parse requirement {spec!r}")
    return Req(canonical(match.group(1)), frozenset(canonical(e) for e in (match.group(2) or "").split(",")
                                                    if e.strip()))


def _via(comment: str, project: str) -> tuple[str | None, bool]:
    """(the requiring package, is the project's own pyproject) of one ``# via`` name."""
    text = comment.strip()
    if not text or text.startswith("-"):  # "-c requirements/runtime.lock", "-r …"
        return None, False
    if text.startswith(f"{project} (") or canonical(text) == canonical(project):
        return None, True
    return canonical(text.split()[0]), False


def _blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """(line number, pin line, its indented continuation and comment lines) for each pin of a lock."""
    blocks: list[tuple[int, str, list[str]]] = []
    current: list[str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw[:1] in (" ", "\t"):
            if current is not None:
                current.append(raw.strip())
        elif raw.strip() and not raw.startswith(("#", "-")):
            current = []
            blocks.append((number, raw.strip(), current))
        else:  # a blank line, a top-level comment or an option ends a pin's block
            current = None
    return blocks


def _pin(line: str, rest: list[str], where: str, project: str) -> Pin:
    match = _PIN.match(line)
    if match is None:
        raise ValueError(f"{where}: not an ==-pinned requirement: {line[:60]!r}")
    name = canonical(match.group(1))
    hashes = _HASH.findall(" ".join([line, *rest]))
    if not hashes:
        raise ValueError(f"{where}: {name} has no --hash=sha256: (the lock holds every file's hash)")
    via: set[str] = set()
    direct = False
    for item in (r.lstrip("#").strip() for r in rest if r.startswith("#")):
        who, own = _via(item[3:] if item.startswith("via") else item, project)
        direct = direct or own
        via |= {who} if who else set()
    return Pin(name, match.group(2), tuple(sorted(set(hashes))), tuple(sorted(via)), direct)


def parse_lock(text: str, source: str = "lock", project: str = PROJECT) -> dict[str, Pin]:
    """The pins of a pip-compile lock (pure), by canonical name; ValueError naming ``source`` and the
    line for a requirement that is not ``==``-pinned with at least one ``--hash=sha256:``."""
    pins: dict[str, Pin] = {}
    for number, line, rest in _blocks(text):
        pin = _pin(line, rest, f"{source}:{number}", project)
        if pin.name in pins:
            raise ValueError(f"{source}:{number}: {pin.name} is pinned twice")
        pins[pin.name] = pin
    return dict(sorted(pins.items()))


def read_lock(path: Path = RUNTIME_LOCK) -> dict[str, Pin]:
    """The pins of the lock file at ``path``; ValueError (one line) when it is missing or malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc} (the lock is written by `make lock` in a source "
                         "checkout)") from None
    return parse_lock(text, source=str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path))


def lock_graph(pins: Mapping[str, Pin]) -> dict[str, list[str]]:
    """name → the pins it requires, from the lock's ``# via`` comments (inverted)."""
    graph: dict[str, set[str]] = {name: set() for name in pins}
    for name, pin in pins.items():
        for parent in pin.required_by:
            if parent in graph:
                graph[parent].add(name)
    return {name: sorted(children) for name, children in graph.items()}


def _field(meta: metadata.PackageMetadata, key: str) -> str:
    return str((meta.get_all(key) or [""])[0] or "").strip()


def licence_of(meta: metadata.PackageMetadata) -> tuple[str, bool]:
    """(licence, is an SPDX expression): License-Expression; else a one-line License field; else
    the ``License ::`` classifiers (preferred to a full licence text pasted into License); else
    the License text's first line, truncated; else ``UNKNOWN``."""
    expression = _field(meta, "License-Expression")
    if expression:
        return expression, True
    text = _field(meta, "License")
    text = "" if text.upper() == "UNKNOWN" else text
    troves = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or []
              if c.startswith("License ::") and c.count("::") > 1]
    if text and ("\n" not in text or not troves):
        line = next((ln.strip() for ln in text.splitlines() if re.search(r"\w", ln)), text.splitlines()[0])
        return (line if len(line) <= _LICENCE_MAX else line[:_LICENCE_MAX - 1].rstrip() + "…"), False
    if troves:
        return " / ".join(dict.fromkeys(troves)), False
    return "UNKNOWN", False


def installed(project: str = PROJECT) -> dict[str, Dist]:
    """Every installed distribution but ``project``, by canonical name, first on ``sys.path`` wins."""
    found: dict[str, Dist] = {}
    for dist in metadata.distributions():
        name = canonical(_field(dist.metadata, "Name"))
        if not name or name == canonical(project) or name in found:
            continue
        licence, spdx = licence_of(dist.metadata)
        found[name] = Dist(name, dist.version, licence, spdx)
    return dict(sorted(found.items()))


_RANK: dict[Use, int] = {"runtime": 0, "qms": 1, "dev": 2}


def declared(project: str = PROJECT) -> dict[str, tuple[Use, frozenset[str]]]:
    """The project's direct dependencies: name → (runtime, qms or dev, requested extras).

    From ``pyproject.toml`` in a source checkout (the design record: ``dependencies`` and every
    optional-dependencies group but those of :data:`TOOL_GROUPS` — the product's own extras, such as the
    Flower deployment — are runtime), else from the installed project's metadata (an installed device
    has no pyproject.toml). A package in several groups takes the one nearest the device; a group naming
    the project itself (``fedprog[flower,qms]``) only pulls in those groups.
    """
    pyproject = ROOT / "pyproject.toml"
    specs: list[tuple[Use, str]] = []
    data = tomllib.loads(pyproject.read_text(encoding="utf-8")) if pyproject.is_file() else {}
    if data.get("project", {}).get("name") == project:
        specs += [("runtime", s) for s in data["project"].get("dependencies", [])]
        for name, group in data["project"].get("optional-dependencies", {}).items():
            specs += [(TOOL_GROUPS.get(name, "runtime"), s) for s in group]
    else:
        try:
            requires = metadata.requires(project) or []
        except metadata.PackageNotFoundError:
            requires = []
        for spec in requires:
            marker = spec.partition(";")[2]
            group = next((use for g, use in TOOL_GROUPS.items() for q in "\"'"
                          if f"extra == {q}{g}{q}" in marker), None)
            specs.append((group or "runtime", spec))
    out: dict[str, tuple[Use, frozenset[str]]] = {}
    for use, spec in specs:
        req = parse_requirement(spec)
        if req.name == canonical(project):
            continue
        old_use, old_extras = out.get(req.name, (use, frozenset()))
        out[req.name] = (min(use, old_use, key=_RANK.__getitem__), old_extras | req.extras)
    return out


def reachable(graph: Mapping[str, Iterable[str]], starts: Iterable[str]) -> set[str]:
    """Every node reachable from ``starts`` (the starts included)."""
    seen: set[str] = set()
    todo = [s for s in starts if s in graph]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return seen
