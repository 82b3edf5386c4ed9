"""``fedprog trace soup`` and ``fedprog trace sbom``: the SOUP list (IEC 62304 §5.1.7, §7.1.2, §7.1.3,
§8.1.2) and a CycloneDX SBOM, both derived from ``requirements/runtime.lock``.

Plain functions, registered by ``fedprog/cli.py`` as ``trace_app.command("soup")(soup)`` and
``trace_app.command("sbom")(sbom)``. ``soup --check`` is the SOUP record's check: soup.yaml against
pyproject.toml and the locks, and every runtime pin's anomaly review for exactly its locked version.
Exit codes: 0 ok, 1 ``--check`` found problems or the SBOM failed its schema, 2 bad input (one line on
stderr).
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._common import EXIT_CHECK_FAILED, fail

if TYPE_CHECKING:
    from traceability.soup import SoupItem

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable result on stdout.")]


def _check_line(items: list[SoupItem]) -> str:
    """The one line of a clean check: how many runtime pins, and how many of their reviews are open."""
    soup = [i for i in items if i.shipped]
    open_ = sorted(i.name for i in soup if i.review is not None and i.review.status == "open")
    return (f"SOUP record complete: {len(soup)} runtime pins of requirements/runtime.lock, each reviewed at "
            f"its locked version ({len(open_)} reviews open)")


def _print_tables(items: list[SoupItem]) -> None:
    from rich.console import Console
    from rich.table import Table

    soup = [i for i in items if i.shipped]
    tools = [i for i in items if not i.shipped]
    table = Table("package", "version", "licence", "kind", "requirements", "review",
                  title=f"SOUP of the device (requirements/runtime.lock): {len(soup)} packages",
                  title_justify="left")
    for i in soup:
        review = f"{i.review.status} ({i.review.date})" if i.review else "not reviewed"
        table.add_row(i.name, i.version, i.licence, i.kind, ", ".join(i.requirements), review)
    apart = Table("package", "version", "licence", "group", "purpose",
                  title=f"Tools, not part of the device (requirements/dev.lock): {len(tools)} packages",
                  title_justify="left")
    for i in tools:
        apart.add_row(i.name, i.version, i.licence, i.kind, i.purpose)
    console = Console(soft_wrap=False)
    console.print(table)
    console.print(apart)


def soup(as_json: JsonOpt = False,
         check: Annotated[bool, typer.Option(
             "--check", help="Check the SOUP record instead; exit 1 listing its problems.")] = False) -> None:
    """The device's SOUP (the runtime lock: version, licence, requirements, review), then the tools."""
    from traceability.soup import check_soup, soup_items

    try:
        problems = check_soup() if check else []
        items = soup_items()
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    if check:
        if as_json:
            print(json.dumps({"problems": problems}, sort_keys=True))
        else:
            print("\n".join(problems) if problems else _check_line(items))
        if problems:
            raise typer.Exit(EXIT_CHECK_FAILED)
        return
    if as_json:
        print(json.dumps({"packages": [i.model_dump(mode="json") for i in items]}, sort_keys=True))
        return
    _print_tables(items)


def _timestamp(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"--timestamp: not an ISO 8601 date-time: {value!r}") from None


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sbom(out: Annotated[Path, typer.Option("--out", help="Where to write the SBOM (JSON).")],
         timestamp: Annotated[str | None, typer.Option(
             "--timestamp", help="ISO 8601 time to record (default $SOURCE_DATE_EPOCH, else now).")] = None,
         as_json: JsonOpt = False) -> None:
    """Write a CycloneDX 1.6 JSON SBOM of the runtime lock (purls, licences, SHA-256, dependencies)."""
    from traceability.sbom import SchemaUnavailable, build_sbom, schema_errors

    when = _timestamp(timestamp)
    try:
        text = build_sbom(when)
    except ValueError as exc:  # a bad $SOURCE_DATE_EPOCH, lock or soup.yaml
        raise fail(str(exc)) from None
    try:
        errors: list[str] | None = schema_errors(text)
    except SchemaUnavailable:
        errors = None
    if errors:
        raise fail(f"the SBOM does not validate against the CycloneDX schema: {errors[0]}", EXIT_CHECK_FAILED)
    try:
        _write_atomically(out, text)
    except OSError as exc:
        raise fail(f"{out}: {exc.strerror or exc}") from None
    doc = json.loads(text)
    count = len(doc.get("components", []))
    if as_json:
        print(json.dumps({"path": str(out), "components": count, "serial_number": doc["serialNumber"],
                          "spec_version": doc["specVersion"], "schema_checked": errors is not None},
                         sort_keys=True))
        return
    checked = "schema-valid" if errors is not None else \
        "schema not checked: install cyclonedx-python-lib[json-validation]"
    print(f"{out}: CycloneDX {doc['specVersion']} SBOM, {count} components ({checked})")
