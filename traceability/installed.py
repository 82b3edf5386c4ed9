"""The installed Python distributions, read from their metadata: the raw material of the SOUP list
and the SBOM (IEC 62304 §8.1.2 identification of SOUP items, §5.3.3 the SOUP's requirements).

Names are PEP 503 canonical (``fhir.resources`` → ``fhir-resources``). Requirement markers are
evaluated with ``packaging`` when it is installed; without it a requirement counts unless its
marker names an ``extra`` that was not requested (other markers are assumed to hold).
The dependency graph follows Requires-Dist from the project's declared dependencies, carrying
requested extras (``uvicorn[standard]``) down the graph until nothing changes.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Literal

try:
    from packaging.markers import Marker
    from packaging.requirements import Requirement
except ImportError:  # pragma: no cover - packaging comes with pytest, pip's environments, matplotlib
    Marker = Requirement = None  # type: ignore[assignment,misc]

PROJECT = "fedprog"
Use = Literal["runtime", "dev"]
_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[([^\]]*)\])?")
_EXTRA = re.compile(r"""extra\s*==\s*['"]([^'"]+)['"]""")
_LICENCE_MAX = 60


def canonical(name: str) -> str:
    """PEP 503 normalised name."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Req:
    """One parsed Requires-Dist line."""

    name: str
    extras: frozenset[str] = frozenset()
    marker: str = ""


@dataclass(frozen=True)
class Dist:
    """One installed distribution."""

    name: str
    version: str
    licence: str
    licence_is_spdx: bool
    requires: tuple[Req, ...]
    dist: metadata.Distribution = field(compare=False, repr=False)


def parse_requirement(spec: str) -> Req:
    """Name, extras and marker of a requirement string (``packaging`` if present, else a regex)."""
    if Requirement is not None:
        try:
            req = Requirement(spec)
        except Exception:  # packaging's InvalidRequirement: fall through to the plain parse
            pass
        else:
            return Req(canonical(req.name), frozenset(canonical(e) for e in req.extras),
                       str(req.marker or ""))
    head, _, marker = spec.partition(";")
    match = _NAME.match(head)
    if match is None:
        raise ValueError(f"cannot parse requirement {spec!r}")
    extras = frozenset(canonical(e) for e in (match.group(2) or "").split(",") if e.strip())
    return Req(canonical(match.group(1)), extras, marker.strip())


@lru_cache(maxsize=4096)
def _marker_holds(marker: str, extras: frozenset[str]) -> bool:
    if Marker is not None:
        try:
            parsed = Marker(marker)
            return any(parsed.evaluate({"extra": extra}) for extra in ("", *sorted(extras)))
        except Exception:  # an unparsable or undefined marker: the plain rule below
            pass
    wanted = {canonical(x) for x in _EXTRA.findall(marker)}
    return not wanted or bool(wanted & extras)


def applies(req: Req, extras: Iterable[str] = ()) -> bool:
    """Whether ``req`` holds here when its owner was installed with ``extras``."""
    return not req.marker or _marker_holds(req.marker, frozenset(extras))


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
        reqs = tuple(parse_requirement(r) for r in dist.requires or ())
        found[name] = Dist(name, dist.version, licence, spdx, reqs, dist)
    return dict(sorted(found.items()))


#: optional-dependency groups that are verification tooling, not part of the device
DEV_GROUPS = ("dev",)


def declared(project: str = PROJECT) -> dict[str, tuple[Use, frozenset[str]]]:
    """The project's direct dependencies: name → (runtime or dev, requested extras).

    From ``pyproject.toml`` in a source checkout (the design record: ``dependencies`` and every
    optional-dependencies group but ``dev`` — the product's own extras, such as the Flower
    deployment — are runtime; ``dev`` is verification tooling), else from the installed project's
    metadata (an installed device has no pyproject.toml). A group naming the project itself
    (``fedprog[flower]``) only pulls in that group.
    """
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    specs: list[tuple[Use, str]] = []
    data = tomllib.loads(pyproject.read_text(encoding="utf-8")) if pyproject.is_file() else {}
    if data.get("project", {}).get("name") == project:
        specs += [("runtime", s) for s in data["project"].get("dependencies", [])]
        for name, group in data["project"].get("optional-dependencies", {}).items():
            specs += [("dev" if name in DEV_GROUPS else "runtime", s) for s in group]
    else:
        try:
            requires = metadata.requires(project) or []
        except metadata.PackageNotFoundError:
            requires = []
        for spec in requires:
            marker = spec.partition(";")[2]
            dev = any(f"extra == {q}{g}{q}" in marker for g in DEV_GROUPS for q in "\"'")
            specs.append(("dev" if dev else "runtime", spec))
    out: dict[str, tuple[Use, frozenset[str]]] = {}
    for use, spec in specs:
        req = parse_requirement(spec)
        if req.name == canonical(project):
            continue
        old_use, old_extras = out.get(req.name, (use, frozenset()))
        out[req.name] = ("runtime" if "runtime" in (use, old_use) else "dev", old_extras | req.extras)
    return out


def dependency_graph(dists: Mapping[str, Dist], roots: Mapping[str, frozenset[str]]) -> dict[str, list[str]]:
    """name → the installed distributions it requires, with the extras ``roots`` request (and those
    requested further down) taken into account."""
    extras: dict[str, frozenset[str]] = {name: frozenset(x) for name, x in roots.items()}
    while True:
        graph: dict[str, list[str]] = {}
        wanted: dict[str, frozenset[str]] = dict(extras)
        for name, dist in dists.items():
            live = [r for r in dist.requires if r.name in dists and applies(r, extras.get(name, ()))]
            graph[name] = sorted({r.name for r in live})
            for r in live:
                wanted[r.name] = wanted.get(r.name, frozenset()) | r.extras
        if wanted == extras:
            return graph
        extras = wanted


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
