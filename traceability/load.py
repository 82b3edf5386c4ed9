"""Load and validate the requirement items (DESIGN.md, "Requirements").

IEC 62304 §5.1.1 asks for traceability between system requirements, software requirements,
tests and risk control measures; §5.2 for software requirements derived from the system
requirements; ISO 14971 §7 for risk controls traced to the hazards they reduce. This module is
the single reader of ``traceability/requirements/*.yaml``: every item is validated with
:class:`traceability.schema.Item`, ids are unique across files, every parent exists and has an
allowed type (:data:`~traceability.schema.PARENT_TYPES`), and the links form no cycle.

Every failure is a :class:`RequirementsError` with one line naming the file, the item (id, or
``#index`` when it has none) and the field or rule broken.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .schema import PARENT_TYPES, Item

#: where the requirement files ship (inside the package, see pyproject package-data)
DEFAULT_FOLDER = Path(__file__).parent / "requirements"


class RequirementsError(ValueError):
    """A requirement file or item breaks the schema or a traceability rule (one line)."""


@dataclass(frozen=True)
class Requirements:
    """Every item by id, the file each came from, and the downward (parent → child) links."""

    items: dict[str, Item]
    source: dict[str, Path]
    _children: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kids: dict[str, list[str]] = {i: [] for i in self.items}
        for item in self.items.values():
            for parent in item.parents:
                kids.setdefault(parent, []).append(item.id)
        object.__setattr__(self, "_children", {k: tuple(sorted(v)) for k, v in kids.items()})

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.items

    def get(self, item_id: str) -> Item:
        """The item ``item_id``; a :class:`RequirementsError` if there is none."""
        try:
            return self.items[item_id]
        except KeyError:
            raise RequirementsError(f"unknown requirement id {item_id!r}") from None

    def children(self, item_id: str) -> list[Item]:
        """The items naming ``item_id`` as a parent, by id."""
        self.get(item_id)
        return [self.items[c] for c in self._children.get(item_id, ())]

    def descendants(self, item_id: str) -> list[Item]:
        """Everything downstream of ``item_id`` (children, transitively), by id; not the item."""
        seen: set[str] = set()
        stack = [c.id for c in self.children(item_id)]
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self._children.get(current, ()))
        return [self.items[i] for i in sorted(seen)]

    def of_type(self, item_type: str) -> list[Item]:
        """The items of one type (``software``, ``hazard``, …), by id."""
        return [it for _, it in sorted(self.items.items()) if it.type == item_type]


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with a key given twice (PyYAML keeps the last
    one silently, which would hide an edited ``text`` in a controlled document)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Hashable, Any]:
    seen: set[Hashable] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice (line {line})")
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def read_items(path: Path) -> list[Any]:
    """The raw YAML list in ``path`` (not yet validated)."""
    try:
        with path.open(encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RequirementsError(f"{path}:{where} not valid YAML: {_one_line(problem)}") from None
    except UnicodeDecodeError as exc:
        raise RequirementsError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if data is None:
        raise RequirementsError(f"{path}: empty file, expected a YAML list of items")
    if not isinstance(data, list):
        raise RequirementsError(f"{path}: expected a YAML list of items, got {type(data).__name__}")
    return data


def _validation_message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "rule"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {_one_line(msg)}"


def _parse_file(path: Path) -> Iterator[Item]:
    for index, raw in enumerate(read_items(path)):
        label = f"#{index}"
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            label = raw["id"]
        if not isinstance(raw, dict):
            raise RequirementsError(f"{path}: item {label}: expected a mapping, got {type(raw).__name__}")
        try:
            yield Item.model_validate(raw)
        except ValidationError as exc:
            raise RequirementsError(f"{path}: item {label}: {_validation_message(exc)}") from None


def _find_cycle(items: dict[str, Item]) -> list[str] | None:
    """A cycle in the parent links as a list of ids (first id repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in sorted(items):
        if state.get(start):
            continue
        path = [start]
        stack = [iter(sorted(items[start].parents))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(items[nxt].parents)))
    return None


def _check_links(items: dict[str, Item], source: dict[str, Path]) -> None:
    for item_id, item in sorted(items.items()):
        for parent in item.parents:
            if parent not in items:
                raise RequirementsError(f"{source[item_id]}: item {item_id}: parents: {parent} "
                                        "does not exist")
    cycle = _find_cycle(items)
    if cycle:
        raise RequirementsError(f"{source[cycle[0]]}: item {cycle[0]}: parents: cycle "
                                + " -> ".join(cycle))
    for item_id, item in sorted(items.items()):
        for parent in item.parents:
            ptype, allowed = items[parent].type, PARENT_TYPES[item.type]
            if ptype not in allowed:
                ok = ", ".join(sorted(allowed)) or "none"
                raise RequirementsError(f"{source[item_id]}: item {item_id}: parents: {parent} is a {ptype}; "
                                        f"a {item.type} may have parents of type {ok}")


def load_requirements(folder: Path | None = None) -> Requirements:
    """Read and validate every ``*.yaml`` file in ``folder`` (default: the package's own).

    Checks, in order: each item against the schema, ids unique across files, every parent
    exists, no cycle, parent types allowed. Raises :class:`RequirementsError` (one line).
    """
    folder = DEFAULT_FOLDER if folder is None else folder
    if not folder.is_dir():
        raise RequirementsError(f"{folder}: requirements folder not found")
    items: dict[str, Item] = {}
    source: dict[str, Path] = {}
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        for item in _parse_file(path):
            if item.id in items:
                raise RequirementsError(f"{path}: item {item.id}: id: duplicate, already defined in "
                                        f"{source[item.id]}")
            items[item.id] = item
            source[item.id] = path
    _check_links(items, source)
    return Requirements(items=items, source=source)
