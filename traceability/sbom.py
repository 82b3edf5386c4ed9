"""A CycloneDX 1.6 JSON SBOM of the device's locked runtime set (FDA premarket cybersecurity SBOM, EU MDR
Annex I §17; IEC 62304 §5.1.7 and §8.1.2 SOUP identification), built with cyclonedx-python-lib.

* metadata.component is fedprog with its version; one ``library`` component per pin of
  ``requirements/runtime.lock`` (the SOUP list, :mod:`traceability.soup`; the tools of the dev lock are
  not part of the device and not in the SBOM), with bom-ref = purl (``pkg:pypi/<canonical
  name>@<version>``), ``scope`` ``required``, and its licence from the installed metadata when the
  installed version is the locked one (an SPDX expression when the package declares
  License-Expression, else the licence name as stated; none otherwise).
* Hashes: the SHA-256 of every file (wheel or sdist) the lock admits for that version — what
  ``pip install --require-hashes`` checks, so the installed file is one of them. Property
  ``fedprog:hash-basis`` says so; ``fedprog:kind`` is runtime (direct) or transitive, and
  ``fedprog:review`` the status of the version's anomaly review (``soup_review.yaml``).
* ``dependencies``: fedprog → its direct runtime dependencies, each component → the pins that the
  lock's ``# via`` comments say it requires.
* Deterministic: components, properties and dependencies are sorted; the timestamp is the
  ``timestamp`` argument, else ``$SOURCE_DATE_EPOCH``, else now (UTC, whole seconds); the serial
  number is a name-based UUID (uuid5) of the content's SHA-256 (names, versions, hashes,
  timestamp). The same lock and timestamp give a byte-identical document.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from .installed import PROJECT, RUNTIME_LOCK, Dist, Pin, installed, licence_of, lock_graph, read_lock
from .soup import load_reviews, load_soup

SPEC_VERSION = "1.6"
HASH_BASIS = "fedprog:hash-basis"
KIND = "fedprog:kind"
REVIEW = "fedprog:review"
BASIS = ("sha256 of each file requirements/runtime.lock admits for this version (pip --require-hashes "
         "installs one of them)")


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


def build_sbom(timestamp: datetime | None = None, *, pins: Mapping[str, Pin] | None = None,
               dists: Mapping[str, Dist] | None = None, project: str = PROJECT) -> str:
    """The CycloneDX 1.6 JSON SBOM of ``pins`` (default: ``requirements/runtime.lock``) as a string."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import ComponentScope, ComponentType
    from cyclonedx.output.json import JsonV1Dot6

    pins = read_lock(RUNTIME_LOCK) if pins is None else pins
    dists = installed(project) if dists is None else dists
    entries, reviews = load_soup(), load_reviews()
    when = sbom_timestamp(timestamp)
    version, licence = _project(project)
    root = _component(project, version, licence, type=ComponentType.APPLICATION)
    components: dict[str, Any] = {}
    for name, pin in sorted(pins.items()):
        dist = dists.get(name)
        known = dist is not None and dist.version == pin.version
        entry = entries.get(name) if pin.direct else None
        review = reviews.get(name)
        properties = [Property(name=HASH_BASIS, value=BASIS),
                      Property(name=KIND, value="runtime" if pin.direct else "transitive")]
        if review is not None and review.version == pin.version:
            properties.append(Property(name=REVIEW, value=f"{review.status} ({review.date.isoformat()})"))
        components[name] = _component(
            name, pin.version, (dist.licence, dist.licence_is_spdx) if known and dist else ("UNKNOWN", False),
            type=ComponentType.LIBRARY, scope=ComponentScope.REQUIRED,
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=h) for h in pin.hashes],
            description=entry.purpose if entry else f"required by {', '.join(pin.required_by)}",
            properties=properties)
    hashes = [(name, pin.version, list(pin.hashes)) for name, pin in sorted(pins.items())]
    content = json.dumps([project, version, when.isoformat(), hashes]).encode()
    fingerprint = hashlib.sha256(content).hexdigest()
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"urn:fedprog:sbom:sha256:{fingerprint}"),
              metadata=BomMetaData(component=root, timestamp=when))
    for component in components.values():
        bom.components.add(component)
    bom.register_dependency(root, [components[n] for n, pin in sorted(pins.items()) if pin.direct])
    for name, children in lock_graph(pins).items():
        bom.register_dependency(components[name], [components[c] for c in children])
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
