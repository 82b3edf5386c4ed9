"""FP-SOUP — SOUP list and SBOM summary (IEC 62304 §5.3.3, §5.3.4, §7.1.3, §8.1.2).

Every third-party distribution of the environment the dossier was built in, as listed by
:func:`traceability.soup.soup_items` (name, version and licence from its metadata; purpose,
requirements and risk note of direct dependencies from ``traceability/soup.yaml``), and the
summary of the CycloneDX SBOM written beside the documents.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from reportlab.platypus import Flowable

from dossier.documents._layout import code, fit, ids, section
from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import MARGIN, PAGE, esc, para, table

#: the kinds of SOUP item, in the order they are listed, with what each means
KINDS: tuple[tuple[str, str, str], ...] = (
    ("runtime", "Direct runtime dependencies",
     "Declared runtime dependencies of fedprog (pyproject.toml): part of the device software. Purpose, "
     "requirements relying on them (\u00a75.3.3) and risk note (\u00a77.1.3) from traceability/soup.yaml."),
    ("transitive", "Transitive dependencies",
     "Required by a direct dependency, directly or not. They inherit the requirements of the direct "
     "dependencies that pull them in; \u201cshipped\u201d marks those reachable from a runtime dependency."),
    ("dev", "Development and test dependencies",
     "Declared for development and verification only; not shipped with the device."),
    ("environment", "Other installed distributions",
     "Installed in the build environment but required by nothing fedprog depends on (installer tooling)."),
)
#: licence families that carry obligations the manufacturer must review
_COPYLEFT = ("GPL", "MPL", "EPL", "CDDL", "EUPL")


def _licence_cell(licence: str) -> str:
    return licence if len(licence) <= 60 else licence[:57] + "\u2026"


def _item_table(items: list[Any], shares: tuple[float, float, float] = (0.24, 0.4, 0.36)) -> Flowable:
    """The items of one kind; ``shares`` of the free width for licence, purpose and requirements."""
    rows: list[list[object]] = [["Name", "Version", "Licence", "Purpose", "Requirements", "Shipped"]]
    for s in items:
        rows.append([s.name, s.version, _licence_cell(s.licence), s.purpose, ids(s.requirements),
                     "yes" if s.shipped else "no"])
    name = max(fit([s.name for s in items]), fit(["Name"], "head"))
    version = max(min(fit([s.version for s in items]), 60.0), fit(["Version"], "head"))
    shipped = fit(["Shipped"], "head")
    rest = PAGE[0] - 2 * MARGIN - name - version - shipped
    return table(rows, widths=[name, version, *(rest * x for x in shares), shipped])


def _summary(inputs: DossierInputs) -> list[Flowable]:
    items = inputs.soup
    kinds = Counter(s.kind for s in items)
    shipped = sum(1 for s in items if s.shipped)
    rows: list[list[object]] = [["Kind", "Items", "Shipped with the device"]]
    rows += [[label, kinds[kind], sum(1 for s in items if s.kind == kind and s.shipped)]
             for kind, label, _ in KINDS]
    rows.append(["All SOUP items", len(items), shipped])
    return [*section("2 Summary"),
            para(f"{len(items)} third-party distributions are installed; {shipped} of them are shipped with "
                 "the device (reachable from a runtime dependency). Versions and licences are read from each "
                 "distribution's metadata; none is modified."),
            table(rows, widths=[70, 30, 50])]


def _sbom(inputs: DossierInputs) -> list[Flowable]:
    sbom: dict[str, Any] = inputs.sbom or {}
    components = sbom.get("components")
    count = len(components) if isinstance(components, list) else components
    rows: list[list[object]] = [
        ["Field", "Value"], ["File", code(sbom.get("file"))],
        ["Format", f"CycloneDX {sbom.get('spec_version')} JSON"],
        ["Components", count], ["SHA-256 of the file", code(sbom.get("sha256"))]]
    agrees = ("equals" if count == len(inputs.soup) else
              f"differs from ({count} against {len(inputs.soup)}; the SBOM and this list were not built in "
              "the same environment, which must be resolved before release)")
    return [*section("3 Software bill of materials"),
            para("The SBOM is the machine-readable form of this list (EU MDR Annex I \u00a717.2; FDA "
                 "premarket cybersecurity guidance): one library component per installed distribution with "
                 "its package URL, licence and SHA-256, and the dependency graph. It is written beside the "
                 "documents and listed with its SHA-256 in the manifest."),
            table(rows, widths=[40, 130]),
            para(f"Its component count {agrees} the number of SOUP items in section 2.")]


def _licences(items: list[Any]) -> list[Flowable]:
    flagged = [s for s in items if s.shipped and any(f in s.licence.upper() for f in _COPYLEFT)]
    unknown = [s for s in items if s.licence == "UNKNOWN"]
    text = ("Shipped items under a copyleft or weak-copyleft licence, whose obligations (source offer, "
            "notices, compatibility with the device's distribution terms) the manufacturer must review: "
            + (", ".join(f"{esc(s.name)} {esc(s.version)} ({esc(s.licence)})" for s in flagged) or "none")
            + ". "
            "Items without a licence in their metadata: "
            + (", ".join(f"{esc(s.name)} {esc(s.version)}" for s in unknown) or "none") + ".")
    return [*section("4 Licences"), para(text)]


def _risk(items: list[Any]) -> list[Flowable]:
    rows: list[list[object]] = [["SOUP item", "Known anomalies and risk evaluation (\u00a77.1.3)"]]
    rows += [[f"{s.name} {s.version}", s.risk] for s in items if s.kind == "runtime" and s.risk]
    missing = [s.name for s in items if s.kind == "runtime" and not s.risk]
    t = table(rows, widths=[32, 138])
    out = [*section("5 Risk evaluation of runtime SOUP", then=t),
           para("Requirements for each runtime SOUP item's function and performance are the software "
                "requirements named in section 6 (\u00a75.3.3); it runs on the hardware and Python version "
                "of the device's environment, recorded by the verification run (\u00a75.3.4). Published "
                "anomaly lists are evaluated as follows:"), t]
    if missing:
        out.append(para(f"Runtime items without a risk note (to be completed): {esc(', '.join(missing))}."))
    return out


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    items = sorted(inputs.soup, key=lambda s: s.name)
    out: list[Flowable] = [
        *section("1 Scope"),
        para(f"This list identifies every item of software of unknown provenance (SOUP) in the environment "
             f"of {esc(inputs.device)} {esc(inputs.device_version)} at commit {esc(inputs.commit)} "
             "(IEC 62304 \u00a78.1.2): title, manufacturer's version designation, licence, purpose, the "
             "requirements that rely on it, and whether it ships with the device."),
        *_summary(inputs), *_sbom(inputs), *_licences(items), *_risk(items),
        *section("6 SOUP items"),
    ]
    for n, (kind, label, meaning) in enumerate(KINDS, start=1):
        group = [s for s in items if s.kind == kind]
        if group:
            t = _item_table(group, (0.22, 0.3, 0.48) if kind == "transitive" else (0.24, 0.4, 0.36))
            out += [*section(f"6.{n} {label} ({len(group)})", 2, then=t), para(esc(meaning)), t]
    return out


SPEC = DocumentSpec(id="FP-SOUP", title="SOUP list and SBOM summary", file="FP-SOUP-soup-sbom.pdf",
                    needs=("soup", "sbom"), build=build, toc=True)
