"""A CycloneDX 1.6 JSON SBOM of the running environment (FDA premarket cybersecurity SBOM, EU MDR
Annex I §17; IEC 62304 §5.1.7 and §8.1.2 SOUP identification), built with cyclonedx-python-lib.

* metadata.component is fedprog with its version; one ``library`` component per installed
  distribution (the SOUP list, :mod:`traceability.soup`), with bom-ref = purl
  (``pkg:pypi/<canonical name>@<version>``), its licence (an SPDX expression when the package
  declares License-Expression, else the licence name as stated), and ``scope`` ``required`` for
  what ships in the device (reachable from a runtime dependency) or ``excluded`` for test tooling.
* Hash: an installed distribution has no archive left, so the SHA-256 is that of the installed
  ``RECORD`` file, which itself lists the SHA-256 of every installed file (verifiable with
  ``sha256sum`` and ``pip``'s RECORD check); when ``direct_url.json`` records the archive's
  sha256 that is used instead. Property ``fedprog:hash-basis`` says which.
* ``dependencies``: fedprog → its direct dependencies, each component → what its Requires-Dist
  needs here (markers and requested extras evaluated).
* Deterministic: components, properties and dependencies are sorted; the timestamp is the
  ``timestamp`` argument, else ``$SOURCE_DATE_EPOCH``, else now (UTC, whole seconds); the serial
  number is a name-based UUID (uuid5) of the content's SHA-256 (names, versions, hashes,
  timestamp). The same environment and timestamp give a byte-identical document.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from .installed import PROJECT, Dist, declared, dependency_graph, installed, licence_of
from .soup import build_items, direct_dependencies, load_soup

SPEC_VERSION = "1.6"
HASH_BASIS = "fedprog:hash-basis"
KIND = "fedprog:kind"


class SchemaUnavailable(RuntimeError):
    """The CycloneDX JSON validator needs cyclonedx-python-lib's ``json-validation`` extra."""


def sbom_timestamp(timestamp: datetime | None = None) -> datetime:
    """``timestamp``, else ``$SOURCE_DATE_EPOCH`` (reproducible builds), else now; UTC, whole seconds."""
    if timestamp is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
        if epoch and not epoch.isdigit():
            raise ValueError(f"SOURCE_DATE_EPOCH: not a whole number of seconds: {epoch!r}")
        timestamp = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    return timestamp.astimezone(UTC).replace(microsecond=0)


def distribution_hash(dist: metadata.Distribution) -> tuple[str, str]:
    """(sha256 hex, what was hashed) for an installed distribution (see the module docstring)."""
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        direct = {}
    archive = direct.get("archive_info", {}) if isinstance(direct, dict) else {}
    digest = archive.get("hashes", {}).get("sha256") or (
        archive.get("hash", "").partition("=")[2] if archive.get("hash", "").startswith("sha256=") else "")
    if digest:
        return digest.lower(), "sha256 of the installed archive (direct_url.json)"
    for name, basis in (("RECORD", "sha256 of the installed RECORD (which lists the sha256 of every "
                                   "installed file)"),
                        ("METADATA", "sha256 of the installed METADATA (no RECORD)"),
                        ("PKG-INFO", "sha256 of the installed PKG-INFO (no RECORD)")):
        entry = next((f for f in dist.files or () if f.name == name
                      and f.parent.name.endswith((".dist-info", ".egg-info"))), None)
        path = Path(entry.locate()) if entry is not None else None
        if path is not None and path.is_file():
            return hashlib.sha256(path.read_bytes()).hexdigest(), basis
    text = (dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "").encode("utf-8")
    return hashlib.sha256(text).hexdigest(), "sha256 of the metadata text (no metadata file found)"


def _licences(licence: str, is_spdx: bool) -> list[Any]:
    from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression

    if licence == "UNKNOWN":
        return []
    return [LicenseExpression(licence) if is_spdx else DisjunctiveLicense(name=licence)]


def _component(name: str, version: str, licence: tuple[str, bool], **kw: Any) -> Any:
    """A cyclonedx Component with purl and bom-ref ``pkg:pypi/<name>@<version>``."""
    from cyclonedx.model.component import Component
    from packageurl import PackageURL

    purl = PackageURL(type="pypi", name=name, version=version)
    return Component(name=name, version=version, bom_ref=purl.to_string(), purl=purl,
                     licenses=_licences(*licence), **kw)


def _project(project: str) -> tuple[str, tuple[str, bool]]:
    """fedprog's version and licence from its installed metadata."""
    try:
        return metadata.version(project), licence_of(metadata.metadata(project))
    except metadata.PackageNotFoundError:
        return "0+unknown", ("UNKNOWN", False)


def build_sbom(timestamp: datetime | None = None, *, dists: Mapping[str, Dist] | None = None,
               project: str = PROJECT) -> str:
    """The CycloneDX 1.6 JSON SBOM of ``dists`` (default: this environment) as a string."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import ComponentScope, ComponentType
    from cyclonedx.output.json import JsonV1Dot6

    dists = installed(project) if dists is None else dists
    entries, deps = load_soup(), declared(project)
    direct = direct_dependencies(entries, deps)
    items = {item.name: item for item in build_items(dists, entries, deps)}
    when = sbom_timestamp(timestamp)
    version, licence = _project(project)
    root = _component(project, version, licence, type=ComponentType.APPLICATION)
    components: dict[str, Any] = {}
    hashes: list[tuple[str, str, str]] = []
    for name, dist in sorted(dists.items()):
        digest, basis = distribution_hash(dist.dist)
        hashes.append((name, dist.version, digest))
        item = items[name]
        components[name] = _component(
            name, dist.version, (dist.licence, dist.licence_is_spdx), type=ComponentType.LIBRARY,
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=digest)],
            scope=ComponentScope.REQUIRED if item.shipped else ComponentScope.EXCLUDED,
            description=item.purpose,
            properties=[Property(name=HASH_BASIS, value=basis), Property(name=KIND, value=item.kind)])
    content = json.dumps([project, version, when.isoformat(), hashes]).encode()
    fingerprint = hashlib.sha256(content).hexdigest()
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"urn:fedprog:sbom:sha256:{fingerprint}"),
              metadata=BomMetaData(component=root, timestamp=when))
    for component in components.values():
        bom.components.add(component)
    bom.register_dependency(root, [components[n] for n in sorted(direct) if n in components])
    graph = dependency_graph(dists, {n: x for n, (_, x) in direct.items()})
    for name, component in components.items():
        bom.register_dependency(component, [components[c] for c in graph.get(name, ())])
    return str(JsonV1Dot6(bom).output_as_string(indent=2)) + "\n"


def schema_errors(text: str) -> list[str]:
    """Errors of ``text`` against the CycloneDX 1.6 JSON schema shipped in cyclonedx-python-lib
    (offline); :class:`SchemaUnavailable` without the ``json-validation`` extra."""
    from cyclonedx.exception import MissingOptionalDependencyException
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    try:
        error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    except MissingOptionalDependencyException as exc:
        raise SchemaUnavailable(str(exc).strip()) from None
    return [] if error is None else [str(error)]
