"""Clear suspect links: record that an item was reviewed against its parents as they are now.

IEC 62304 §5.1.1 and §6.2.3: when a requirement changes, the items derived from it must be
re-examined; the link stays *suspect* (``fedprog trace check``) until someone has done so and
runs ``fedprog trace review ID --by NAME``, which stores each parent's current
:func:`~traceability.schema.fingerprint` in the item's ``reviewed`` mapping with the reviewer
(``reviewed_by``) and the UTC date (``reviewed_at``). There is no blanket re-approval: every
item is named. (The same command re-reviews the item's test links, :mod:`traceability.links`.)

The item's YAML file is rewritten atomically (temporary file in the same folder, fsync,
``os.replace``) through PyYAML ``safe_load``/``safe_dump(sort_keys=False, allow_unicode=True,
width=100)``: every other item, and the field order of every item, stay as they were, but YAML
comments and custom formatting would be lost. The requirement files therefore carry no comments;
anything worth saying goes into an item's ``rationale``.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .load import Requirements, RequirementsError, load_requirements, read_items
from .schema import fingerprint


def _fingerprints(reqs: Requirements, item_id: str) -> dict[str, str]:
    item = reqs.get(item_id)
    return {p: fingerprint(reqs.items[p]) for p in item.parents}


def _set_reviewed(raw: dict[str, Any], reviewed: dict[str, str], by: str, at: dt.date) -> None:
    """Put ``reviewed``, then ``reviewed_by`` and ``reviewed_at`` right after it, into a raw item
    (``reviewed`` keeps its place if it has one; other keys keep their order)."""
    new = {"reviewed": reviewed, "reviewed_by": by, "reviewed_at": at.isoformat()}
    rest = {k: v for k, v in raw.items() if k not in new}
    keys = list(raw) if "reviewed" in raw else [*raw, "reviewed"]
    ordered: dict[str, Any] = {}
    for key in keys:
        if key == "reviewed":
            ordered.update(new)
        elif key in rest:
            ordered[key] = rest[key]
    raw.clear()
    raw.update(ordered)


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


def _apply(reqs: Requirements, path: Path, ids: set[str], by: str, at: dt.date) -> None:
    """Review the items ``ids`` (with parents) of the file ``path`` and rewrite it."""
    data = read_items(path)
    for raw in data:
        item_id = raw.get("id") if isinstance(raw, dict) else None
        if item_id in ids:
            _set_reviewed(raw, _fingerprints(reqs, item_id), by, at)
    write_yaml(path, data)


def today() -> dt.date:
    """The UTC date (what ``reviewed_at`` records)."""
    return dt.datetime.now(dt.UTC).date()


def review(item_ids: Sequence[str], by: str, folder: Path | None = None, *,
           at: dt.date | None = None) -> dict[str, dict[str, str]]:
    """Record that ``by`` reviewed each of ``item_ids`` against its parents as they are now (on
    ``at``, default today UTC); item id → the stored ``reviewed`` mapping (parent → fingerprint;
    empty, and nothing written, for an item without parents).

    Raises :class:`~traceability.load.RequirementsError` if the requirements do not load, an id
    is unknown or ``by`` is blank (before anything is written)."""
    if len(by.strip()) < 3:
        raise RequirementsError("--by names the reviewer (at least 3 characters)")
    reqs = load_requirements(folder)
    for item_id in item_ids:
        reqs.get(item_id)
    with_parents = {i for i in item_ids if reqs.items[i].parents}
    for path in sorted({reqs.source[i] for i in with_parents}):
        _apply(reqs, path, {i for i in with_parents if reqs.source[i] == path}, by.strip(), at or today())
    return {i: _fingerprints(reqs, i) for i in item_ids}


__all__ = ["RequirementsError", "review", "today", "write_text", "write_yaml"]
