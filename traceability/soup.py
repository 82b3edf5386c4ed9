"""The SOUP list: every third-party package in the running environment (IEC 62304 §5.1.7, §8.1.2).

Each installed distribution (the project itself aside) becomes a :class:`SoupItem` with its
version and licence from its metadata. Direct dependencies (pyproject.toml) take their purpose,
the requirements relying on them (§5.3.3) and their risk note (§7.1.3) from the curated
``traceability/soup.yaml``; transitive ones say which packages require them and inherit the
requirement ids of the direct dependencies that pull them in. ``shipped`` marks the packages
reachable from a runtime dependency, i.e. part of the device software rather than test tooling.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .installed import Dist, Use, canonical, declared, dependency_graph, installed, reachable

Kind = Literal["runtime", "dev", "transitive", "environment"]
REQUIREMENTS_DIR = Path(__file__).with_name("requirements")
_STRICT = ConfigDict(extra="forbid", frozen=True)


class SoupEntry(BaseModel):
    """One curated entry of ``soup.yaml`` (a direct dependency)."""

    model_config = _STRICT
    use: Literal["runtime", "test"]
    purpose: str = Field(min_length=3)
    requirements: list[str] = Field(default_factory=list)
    risk: str = Field(min_length=3)


class SoupItem(BaseModel):
    """One SOUP item as listed by ``fedprog trace soup``."""

    model_config = _STRICT
    name: str
    version: str
    licence: str
    purpose: str
    requirements: list[str]
    #: runtime/dev: a direct dependency; transitive: required by one (directly or not);
    #: environment: installed but required by nothing fedprog depends on (pip, setuptools…)
    kind: Kind
    required_by: list[str] = Field(default_factory=list)
    #: reachable from a runtime dependency: part of the device software
    shipped: bool
    risk: str | None = None


def load_soup(text: str | None = None) -> dict[str, SoupEntry]:
    """The curated entries by canonical name (``soup.yaml`` shipped in this package by default)."""
    import yaml

    if text is None:
        text = resources.files(__package__ or "traceability").joinpath("soup.yaml").read_text("utf-8")
    try:
        raw: Any = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"soup.yaml: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise ValueError("soup.yaml: expected a mapping of package name → entry")
    entries: dict[str, SoupEntry] = {}
    for name, body in raw.items():
        key = canonical(str(name))
        if key in entries:
            raise ValueError(f"soup.yaml: {name} is listed twice")
        try:
            entries[key] = SoupEntry.model_validate(body)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "entry"
            raise ValueError(f"soup.yaml: {name}: {where}: {err['msg']}") from None
    return entries


def requirement_ids(folder: Path = REQUIREMENTS_DIR) -> set[str] | None:
    """Ids of the items in ``requirements/*.yaml`` (each a YAML list), or None when there are none."""
    import yaml

    files = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    if not files:
        return None
    ids: set[str] = set()
    for path in files:
        for item in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            if isinstance(item, dict) and "id" in item:
                ids.add(str(item["id"]))
    return ids


def direct_dependencies(entries: Mapping[str, SoupEntry], deps: Mapping[str, tuple[Use, frozenset[str]]]
                        ) -> dict[str, tuple[Use, frozenset[str]]]:
    """Declared dependencies, plus curated entries not (yet) declared, with their use."""
    out: dict[str, tuple[Use, frozenset[str]]] = {}
    for name, entry in entries.items():
        out[name] = ("runtime" if entry.use == "runtime" else "dev", frozenset())
    out.update(deps)
    return out


def build_items(dists: Mapping[str, Dist], entries: Mapping[str, SoupEntry],
                deps: Mapping[str, tuple[Use, frozenset[str]]]) -> list[SoupItem]:
    """The SOUP items of ``dists`` (pure: no I/O), sorted by name."""
    direct = direct_dependencies(entries, deps)
    graph = dependency_graph(dists, {n: x for n, (_, x) in direct.items()})
    runtime_roots = {n: x for n, (use, x) in direct.items() if use == "runtime"}
    shipped = reachable(dependency_graph(dists, runtime_roots), runtime_roots)
    parents: dict[str, set[str]] = {name: set() for name in dists}
    for name, children in graph.items():
        for child in children:
            parents[child].add(name)
    inherited: dict[str, set[str]] = {name: set() for name in dists}
    for root in direct:
        for node in reachable(graph, [root]) - {root}:
            inherited[node].update(entries[root].requirements if root in entries else ())
    in_closure = reachable(graph, direct)
    items = []
    for name, dist in dists.items():
        entry, by = entries.get(name), sorted(parents[name])
        kind: Kind = ("runtime" if direct[name][0] == "runtime" else "dev") if name in direct else (
            "transitive" if name in in_closure else "environment")
        if entry is not None:
            purpose, reqs = entry.purpose, sorted(entry.requirements)
        else:
            purpose = ("a direct dependency with no entry in traceability/soup.yaml" if name in direct
                       else f"required by {', '.join(by)}" if by
                       else "not required by fedprog or its dependencies (installed in the environment)")
            reqs = sorted(inherited[name])
        items.append(SoupItem(name=name, version=dist.version, licence=dist.licence, purpose=purpose,
                              requirements=reqs, kind=kind, required_by=by, shipped=name in shipped,
                              risk=entry.risk if entry else None))
    return items


def soup_items() -> list[SoupItem]:
    """Every third-party distribution in the running environment, as SOUP items."""
    return build_items(installed(), load_soup(), declared())


def soup_problems(items: Collection[SoupItem], entries: Mapping[str, SoupEntry],
                  deps: Mapping[str, tuple[Use, frozenset[str]]],
                  known_ids: Collection[str] | None = None) -> list[str]:
    """What is wrong with the SOUP record (pure): see :func:`check_soup`."""
    by_name = {item.name: item for item in items}
    problems = [f"{name}: a direct dependency with no entry in traceability/soup.yaml"
                for name in sorted(set(deps) - set(entries))]
    problems += [f"{name}: listed in traceability/soup.yaml but not installed"
                 for name in sorted(set(entries) - set(by_name))]
    for name, entry in sorted(entries.items()):
        if name in deps and (entry.use == "runtime") != (deps[name][0] == "runtime"):
            problems.append(f"{name}: soup.yaml says {entry.use} but pyproject.toml declares it "
                            f"{'runtime' if deps[name][0] == 'runtime' else 'dev-only'}")
        unknown = sorted(set(entry.requirements) - set(known_ids)) if known_ids is not None else []
        problems += [f"{name}: soup.yaml names requirement {rid}, which does not exist" for rid in unknown]
    problems += [f"{item.name} {item.version}: no licence in its metadata (a runtime package)"
                 for item in items if item.shipped and item.licence == "UNKNOWN"]
    return problems


def check_soup() -> list[str]:
    """Problems of the SOUP record in this environment (IEC 62304 §8.1.2): a direct dependency
    missing from soup.yaml, an entry not installed or declared with another use, a requirement id
    that does not exist (once requirements/*.yaml are there), a runtime package of unknown licence."""
    entries, deps = load_soup(), declared()
    return soup_problems(build_items(installed(), entries, deps), entries, deps, requirement_ids())
