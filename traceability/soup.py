"""The SOUP record, derived from the lock (IEC 62304 §5.3.3, §5.3.4, §7.1.2, §8.1.2).

The device's SOUP items are exactly the pins of ``requirements/runtime.lock``: name, version and
the files' SHA-256 from the lock, licence from the installed metadata. Direct dependencies take their
purpose, the requirements relying on them (§5.3.3) and their risk note (§7.1.3) from the curated
``traceability/soup.yaml``; transitive ones say which pins require them (the lock's ``# via``) and
inherit the requirement ids of the direct dependencies that pull them in. Every runtime pin has a
review of its published anomalies for exactly the locked version in ``traceability/soup_review.yaml``
(§7.1.2): version, sources consulted, date, result, reviewer.

The tools — the quality-management tools (``qms``: traceability, SBOM, validation figures, dossier)
and the development and test tools (``dev``) — are the pins of ``requirements/dev.lock`` that are not
in the runtime lock. They are listed apart: they are not SOUP of the device.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .installed import (
    DEV_LOCK,
    RUNTIME_LOCK,
    Dist,
    Pin,
    Use,
    canonical,
    declared,
    installed,
    lock_graph,
    reachable,
    read_lock,
)

#: runtime: a direct dependency of the device; transitive: required by one; qms and dev: tools
Kind = Literal["runtime", "transitive", "qms", "dev"]
ReviewStatus = Literal["none relevant found", "anomalies found", "open"]
REQUIREMENTS_DIR = Path(__file__).with_name("requirements")
_STRICT = ConfigDict(extra="forbid", frozen=True)
_USE: dict[str, Use] = {"runtime": "runtime", "qms": "qms", "test": "dev"}
T = TypeVar("T", bound=BaseModel)


class SoupEntry(BaseModel):
    """One curated entry of ``soup.yaml`` (a direct dependency)."""

    model_config = _STRICT
    use: Literal["runtime", "qms", "test"]
    purpose: str = Field(min_length=3)
    requirements: list[str] = Field(default_factory=list)
    risk: str = Field(min_length=3)


class Review(BaseModel):
    """One entry of ``soup_review.yaml``: the anomaly review of one locked runtime pin (§7.1.2)."""

    model_config = _STRICT
    version: str = Field(min_length=1)
    date: date
    reviewer: str = Field(min_length=3)
    #: what was consulted, named (issue tracker, changelog, advisories; never a registry)
    sources: list[str] = Field(min_length=1)
    status: ReviewStatus
    #: what was searched and found: the anomalies relevant to fedprog's use, or why none are
    result: str = Field(min_length=10)


class SoupItem(BaseModel):
    """One locked package as listed by ``fedprog trace soup``: a SOUP item or a tool."""

    model_config = _STRICT
    name: str
    version: str
    licence: str
    purpose: str
    requirements: list[str]
    kind: Kind
    required_by: list[str] = Field(default_factory=list)
    #: in requirements/runtime.lock: SOUP of the device (else a tool, listed apart)
    shipped: bool
    #: the number of files (wheels, sdist) whose SHA-256 the lock admits
    hashes: int = 0
    risk: str | None = None
    review: Review | None = None


def _yaml_mapping(text: str, label: str) -> dict[Any, Any]:
    import yaml

    try:
        raw: Any = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{label}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{label}: expected a mapping of package name → entry")
    return raw


def _load(text: str | None, file: str, model: type[T]) -> dict[str, T]:
    if text is None:
        text = resources.files(__package__ or "traceability").joinpath(file).read_text("utf-8")
    entries: dict[str, T] = {}
    for name, body in _yaml_mapping(text, file).items():
        key = canonical(str(name))
        if key in entries:
            raise ValueError(f"{file}: {name} is listed twice")
        try:
            entries[key] = model.model_validate(body)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "entry"
            raise ValueError(f"{file}: {name}: {where}: {err['msg']}") from None
    return entries


def load_soup(text: str | None = None) -> dict[str, SoupEntry]:
    """The curated entries by canonical name (``soup.yaml`` shipped in this package by default)."""
    return _load(text, "soup.yaml", SoupEntry)


def load_reviews(text: str | None = None) -> dict[str, Review]:
    """The anomaly reviews by canonical name (``soup_review.yaml`` shipped in this package by default)."""
    return _load(text, "soup_review.yaml", Review)


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


def _licence(pin: Pin, dists: Mapping[str, Dist]) -> str:
    dist = dists.get(pin.name)
    return dist.licence if dist is not None and dist.version == pin.version else "UNKNOWN"


def _runtime_items(runtime: Mapping[str, Pin], dists: Mapping[str, Dist], entries: Mapping[str, SoupEntry],
                   reviews: Mapping[str, Review]) -> list[SoupItem]:
    graph = lock_graph(runtime)
    direct = [n for n, pin in runtime.items() if pin.direct]
    inherited: dict[str, set[str]] = {name: set() for name in runtime}
    for root in direct:
        for node in reachable(graph, [root]) - {root}:
            inherited[node].update(entries[root].requirements if root in entries else ())
    items = []
    for name, pin in runtime.items():
        entry = entries.get(name) if name in direct else None
        by = ", ".join(pin.required_by)
        purpose = entry.purpose if entry else (
            f"required by {by}" if by else "a direct dependency with no entry in traceability/soup.yaml")
        items.append(SoupItem(
            name=name, version=pin.version, licence=_licence(pin, dists), purpose=purpose,
            requirements=sorted(entry.requirements if entry else inherited[name]),
            kind="runtime" if name in direct else "transitive", required_by=list(pin.required_by),
            shipped=True, hashes=len(pin.hashes), risk=entry.risk if entry else None,
            review=reviews.get(name)))
    return items


def _tool_items(runtime: Mapping[str, Pin], dev: Mapping[str, Pin], dists: Mapping[str, Dist],
                entries: Mapping[str, SoupEntry], deps: Mapping[str, tuple[Use, frozenset[str]]]
                ) -> list[SoupItem]:
    graph = lock_graph(dev)
    qms = reachable(graph, [n for n, (use, _) in deps.items() if use == "qms" and n in dev])
    items = []
    for name, pin in dev.items():
        if name in runtime:
            continue
        entry = entries.get(name) if pin.direct else None
        by = ", ".join(pin.required_by) or "nothing locked"
        items.append(SoupItem(
            name=name, version=pin.version, licence=_licence(pin, dists),
            purpose=entry.purpose if entry else f"required by {by}",
            requirements=sorted(entry.requirements) if entry else [], kind="qms" if name in qms else "dev",
            required_by=list(pin.required_by), shipped=False, hashes=len(pin.hashes),
            risk=entry.risk if entry else None))
    return items


def build_items(runtime: Mapping[str, Pin], dev: Mapping[str, Pin], dists: Mapping[str, Dist],
                entries: Mapping[str, SoupEntry], reviews: Mapping[str, Review],
                deps: Mapping[str, tuple[Use, frozenset[str]]]) -> list[SoupItem]:
    """The SOUP items (the runtime pins), then the tools (the other pins of the dev lock); pure."""
    return [*_runtime_items(runtime, dists, entries, reviews),
            *_tool_items(runtime, dev, dists, entries, deps)]


def soup_items() -> list[SoupItem]:
    """The device's SOUP items from ``requirements/runtime.lock``, then the tools from the dev lock."""
    return build_items(read_lock(RUNTIME_LOCK), read_lock(DEV_LOCK), installed(), load_soup(), load_reviews(),
                       declared())


def review_problems(runtime: Mapping[str, Pin], reviews: Mapping[str, Review]) -> list[str]:
    """A locked runtime pin without a review of exactly its version, or a review of no locked pin (pure)."""
    problems = [f"{name} {pin.version}: locked in requirements/runtime.lock but not reviewed in "
                "traceability/soup_review.yaml" for name, pin in runtime.items() if name not in reviews]
    problems += [f"{name}: soup_review.yaml reviewed {reviews[name].version} but {pin.version} is locked"
                 for name, pin in runtime.items() if name in reviews and reviews[name].version != pin.version]
    problems += [f"{name}: reviewed in soup_review.yaml but not in requirements/runtime.lock"
                 for name in sorted(set(reviews) - set(runtime))]
    return problems


def lock_problems(runtime: Mapping[str, Pin], dev: Mapping[str, Pin], dists: Mapping[str, Dist],
                  deps: Mapping[str, tuple[Use, frozenset[str]]]) -> list[str]:
    """A declared dependency missing from its lock (stale: `make lock`), the two locks disagreeing, an
    installed version other than the locked one (`make install`), a runtime pin without licence (pure)."""
    problems = [f"{name}: declared {use} in pyproject.toml but not in requirements/"
                f"{'runtime' if use == 'runtime' else 'dev'}.lock (run `make lock`)"
                for name, (use, _) in sorted(deps.items())
                if name not in (runtime if use == "runtime" else dev)]
    problems += [f"{name}: requirements/dev.lock pins {dev[name].version}, runtime.lock {pin.version}"
                 for name, pin in runtime.items() if name in dev and dev[name].version != pin.version]
    for name, pin in sorted({**dev, **runtime}.items()):
        dist = dists.get(name)
        if dist is None or dist.version != pin.version:
            problems.append(f"{name}: {'not installed' if dist is None else f'{dist.version} installed'}, "
                            f"{pin.version} locked (run `make install`)")
        elif name in runtime and dist.licence == "UNKNOWN":
            problems.append(f"{name} {pin.version}: no licence in its metadata (a runtime package)")
    return problems


def soup_problems(items: Collection[SoupItem], entries: Mapping[str, SoupEntry],
                  deps: Mapping[str, tuple[Use, frozenset[str]]],
                  known_ids: Collection[str] | None = None) -> list[str]:
    """What is wrong with ``soup.yaml`` against pyproject.toml and the locks (pure)."""
    locked = {item.name for item in items}
    problems = [f"{name}: a direct dependency with no entry in traceability/soup.yaml"
                for name in sorted(set(deps) - set(entries))]
    problems += [f"{name}: listed in traceability/soup.yaml but not locked"
                 for name in sorted(set(entries) - locked)]
    for name, entry in sorted(entries.items()):
        if name in deps and _USE[entry.use] != deps[name][0]:
            problems.append(f"{name}: soup.yaml says {entry.use} but pyproject.toml declares it "
                            f"{deps[name][0]}")
        unknown = sorted(set(entry.requirements) - set(known_ids)) if known_ids is not None else []
        problems += [f"{name}: soup.yaml names requirement {rid}, which does not exist" for rid in unknown]
    return problems


def check_soup() -> list[str]:
    """Problems of the SOUP record (IEC 62304 §7.1.2, §8.1.2): soup.yaml against pyproject.toml and the
    locks, a runtime pin without a review of exactly its locked version or a review of no pin, a stale
    lock, an environment other than the lock, a runtime package of unknown licence."""
    runtime, dev, dists = read_lock(RUNTIME_LOCK), read_lock(DEV_LOCK), installed()
    entries, reviews, deps = load_soup(), load_reviews(), declared()
    items = build_items(runtime, dev, dists, entries, reviews, deps)
    return [*soup_problems(items, entries, deps, requirement_ids()), *review_problems(runtime, reviews),
            *lock_problems(runtime, dev, dists, deps)]
