"""Clear suspect links: record that an item was reviewed against its parents as they are now.

IEC 62304 §5.1.1 and §6.2.3: when a requirement changes, the items derived from it must be
re-examined; the link stays *suspect* (``fedprog trace check``) until someone has done so and
runs ``fedprog trace review ID``, which stores each parent's current
:func:`~traceability.schema.fingerprint` in the item's ``reviewed`` mapping.

The item's YAML file is rewritten atomically (temporary file in the same folder, fsync,
``os.replace``) through PyYAML ``safe_load``/``safe_dump(sort_keys=False, allow_unicode=True,
width=100)``: every other item, and the field order of every item, stay as they were, but YAML
comments and custom formatting would be lost. The requirement files therefore carry no comments;
anything worth saying goes into an item's ``rationale``.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .load import Requirements, RequirementsError, load_requirements, read_items
from .schema import fingerprint


def _fingerprints(reqs: Requirements, item_id: str) -> dict[str, str]:
    item = reqs.get(item_id)
    return {p: fingerprint(reqs.items[p]) for p in item.parents}


def _set_reviewed(raw: dict[str, Any], reviewed: dict[str, str]) -> bool:
    """Put ``reviewed`` into a raw item (keeping the key's place if it has one); True if changed."""
    if raw.get("reviewed") == reviewed:
        return False
    raw["reviewed"] = reviewed
    return True


def write_yaml(path: Path, data: list[Any]) -> None:
    """Replace ``path`` with ``data`` as YAML, atomically (see :func:`write_text`)."""
    write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))


def write_text(path: Path, text: str) -> None:
    """Replace (or create) ``path`` with ``text`` atomically: a temporary file in the same folder,
    fsync, ``os.replace``; an existing file's permissions are kept. Nothing half-written on failure."""
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _apply(reqs: Requirements, path: Path, ids: set[str]) -> list[str]:
    """Review the items ``ids`` of the file ``path``; the ids whose record changed."""
    data = read_items(path)
    changed: list[str] = []
    for raw in data:
        item_id = raw.get("id") if isinstance(raw, dict) else None
        if item_id in ids and reqs.items[item_id].parents:
            if _set_reviewed(raw, _fingerprints(reqs, item_id)):
                changed.append(item_id)
    if changed:
        write_yaml(path, data)
    return changed


def review(item_id: str, folder: Path | None = None) -> dict[str, str]:
    """Record that ``item_id`` was reviewed against its parents as they are now; the stored
    ``reviewed`` mapping (parent → fingerprint; empty for an item without parents).

    Raises :class:`~traceability.load.RequirementsError` if the requirements do not load or the
    id is unknown."""
    reqs = load_requirements(folder)
    reqs.get(item_id)
    _apply(reqs, reqs.source[item_id], {item_id})
    return _fingerprints(reqs, item_id)


def review_all(folder: Path | None = None) -> list[str]:
    """Review every item against its parents (a first baseline); the ids whose record changed."""
    reqs = load_requirements(folder)
    changed: list[str] = []
    for path in sorted(set(reqs.source.values())):
        changed += _apply(reqs, path, {i for i, p in reqs.source.items() if p == path})
    return sorted(changed)


__all__ = ["RequirementsError", "review", "review_all", "write_text", "write_yaml"]
