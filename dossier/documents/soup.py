"""FP-SOUP — SOUP list and SBOM summary (IEC 62304 §5.3.3, §5.3.4, §7.1.2, §7.1.3, §8.1.2).

The device's SOUP is the pins of ``requirements/runtime.lock``, as listed by
:func:`traceability.soup.soup_items` (name, version and file hashes from the lock, licence from the
installed metadata; purpose, requirements and risk note of direct dependencies from
``traceability/soup.yaml``; each pin's anomaly review from ``traceability/soup_review.yaml``). The
tools of ``requirements/dev.lock`` — quality-management tools and development/test tools — are listed
apart: they are not SOUP of the device. The summary of the CycloneDX SBOM written beside the documents
closes the list.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from reportlab.platypus import Flowable

from dossier.documents._layout import code, fit, ids, section
from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import MARGIN, PAGE, esc, para, table

#: the kinds of locked package, in the order they are listed, with what each means
SOUP_KINDS: tuple[tuple[str, str, str], ...] = (
    ("runtime", "Direct runtime dependencies",
     "Declared runtime dependencies of fedprog (pyproject.toml: the dependencies and the flower extra), "
     "pinned in requirements/runtime.lock. Purpose, requirements relying on them (\u00a75.3.3) and risk note "
     "(\u00a77.1.3) from traceability/soup.yaml."),
    ("transitive", "Transitive runtime dependencies",
     "Pinned in requirements/runtime.lock because a runtime dependency requires them (the lock's record of "
     "who requires what). They inherit the requirements of the direct dependencies that pull them in."),
)
TOOL_KINDS: tuple[tuple[str, str, str], ...] = (
    ("qms", "Quality-management tools",
     "The qms extra and what it requires: the traceability records, the SBOM, the validation report's "
     "figures and this dossier's PDFs. They produce and check the technical file; the device does not run "
     "them."),
    ("dev", "Development and test tools",
     "The dev extra and what it requires: test runner, reference implementations, linters, browser driver."),
)
REVIEW_STATES = ("anomalies found", "none relevant found", "open")
#: licence families that carry obligations the manufacturer must review
_COPYLEFT = ("GPL", "MPL", "EPL", "CDDL", "EUPL")


def _licence_cell(licence: str) -> str:
    return licence if len(licence) <= 60 else licence[:57] + "\u2026"


def _item_table(items: list[Any], soup: bool) -> Flowable:
    """The items of one kind: with requirements and hashed files for SOUP, the purpose for tools."""
    head: list[object] = ["Name", "Version", "Licence", "Purpose",
                          *(["Requirements", "Files hashed"] if soup else [])]
    rows: list[list[object]] = [head]
    for s in items:
        rows.append([s.name, s.version, _licence_cell(s.licence), s.purpose,
                     *([ids(s.requirements), s.hashes] if soup else [])])
    name = max(fit([s.name for s in items]), fit(["Name"], "head"))
    version = max(min(fit([s.version for s in items]), 60.0), fit(["Version"], "head"))
    rest = PAGE[0] - 2 * MARGIN - name - version
    if soup:
        files = fit(["Files hashed"], "head")
        rest -= files
        return table(rows, widths=[name, version, rest * 0.22, rest * 0.42, rest * 0.36, files])
    return table(rows, widths=[name, version, rest * 0.3, rest * 0.7])


def _summary(soup: list[Any], tools: list[Any]) -> list[Flowable]:
    kinds = Counter(s.kind for s in [*soup, *tools])
    states = Counter(s.review.status if s.review else "not reviewed" for s in soup)
    rows: list[list[object]] = [["Locked packages", "Items"]]
    rows += [[label, kinds[kind]] for kind, label, _ in SOUP_KINDS]
    rows.append(["SOUP of the device (requirements/runtime.lock)", len(soup)])
    rows += [[f"{label} (not SOUP)", kinds[kind]] for kind, label, _ in TOOL_KINDS]
    rows += [[f"Anomaly reviews: {state}", states[state]] for state in (*REVIEW_STATES, "not reviewed")]
    return [*section("2 Summary"),
            para(f"The device's SOUP is the {len(soup)} pins of requirements/runtime.lock, each an exact "
                 "version with the SHA-256 of every file pip may install (installation checks them: pip "
                 "install --require-hashes). The "
                 f"{len(tools)} further pins of requirements/dev.lock are tools, listed apart in section 8. "
                 "Licences are read from each distribution's installed metadata; none is modified."),
            table(rows, widths=[110, 30])]


def _sbom(inputs: DossierInputs, soup: list[Any]) -> list[Flowable]:
    sbom: dict[str, Any] = inputs.sbom or {}
    components = sbom.get("components")
    count = len(components) if isinstance(components, list) else components
    rows: list[list[object]] = [
        ["Field", "Value"], ["File", code(sbom.get("file"))],
        ["Format", f"CycloneDX {sbom.get('spec_version')} JSON"],
        ["Components", count], ["SHA-256 of the file", code(sbom.get("sha256"))]]
    agrees = ("equals" if count == len(soup) else
              f"differs from ({count} against {len(soup)}; the SBOM and this list were not built from the "
              "same lock, which must be resolved before release)")
    return [*section("3 Software bill of materials"),
            para("The SBOM is the machine-readable form of the SOUP list (EU MDR Annex I \u00a717.2; FDA "
                 "premarket cybersecurity guidance): one library component per pin of the runtime lock with "
                 "its package URL, licence and the SHA-256 of each file the lock admits, and the dependency "
                 "graph. It is written beside the documents and listed with its SHA-256 in the manifest."),
            table(rows, widths=[40, 130]),
            para(f"Its component count {agrees} the number of SOUP items in section 2.")]


def _licences(soup: list[Any]) -> list[Flowable]:
    flagged = [s for s in soup if any(f in s.licence.upper() for f in _COPYLEFT)]
    unknown = [s for s in soup if s.licence == "UNKNOWN"]
    text = ("SOUP items under a copyleft or weak-copyleft licence, whose obligations (source offer, "
            "notices, compatibility with the device's distribution terms) the manufacturer must review: "
            + (", ".join(f"{esc(s.name)} {esc(s.version)} ({esc(s.licence)})" for s in flagged) or "none")
            + ". SOUP items without a licence in their installed metadata: "
            + (", ".join(f"{esc(s.name)} {esc(s.version)}" for s in unknown) or "none") + ".")
    return [*section("4 Licences"), para(text)]


def _reviews(soup: list[Any]) -> list[Flowable]:
    rows: list[list[object]] = [["SOUP item", "Review", "Sources consulted", "Result"]]
    for s in soup:
        r = s.review
        if r is None:
            rows.append([f"{s.name} {s.version}", "not reviewed", "\u2014", "\u2014"])
            continue
        rows.append([f"{s.name} {s.version}", f"{r.status}; {r.date}; {r.reviewer}",
                     para("<br/>".join(esc(x) for x in r.sources), "small"), para(esc(r.result), "small")])
    t = table(rows, widths=[28, 30, 52, 60])
    pending = [f"{s.name} {s.version}" for s in soup if s.review is None or s.review.status == "open"]
    return [*section("5 Published anomalies of each SOUP item (\u00a77.1.2)", then=t),
            para("Each pin of the runtime lock has a review of its published anomalies for exactly the "
                 "locked version (traceability/soup_review.yaml): the sources consulted, the date, the "
                 "reviewer and the result; the check fedprog trace soup --check and the test "
                 "suite fail when a pin has no review of its version or a review names no pin."), t,
            para(f"Reviews still open ({len(pending)}), to be completed before release: "
                 f"{esc(', '.join(pending)) or 'none'}.")]


def _risk(soup: list[Any]) -> list[Flowable]:
    direct = [s for s in soup if s.kind == "runtime"]
    rows: list[list[object]] = [["SOUP item", "Risk evaluation (\u00a77.1.3)"]]
    rows += [[f"{s.name} {s.version}", s.risk] for s in direct if s.risk]
    t = table(rows, widths=[32, 138])
    out = [*section("6 Risk evaluation of runtime SOUP", then=t),
           para("Requirements for each runtime SOUP item's function and performance are the software "
                "requirements named in section 7 (\u00a75.3.3); it runs on the hardware and Python version "
                "of the device's environment, recorded by the verification run (\u00a75.3.4). How a failure "
                "of each direct dependency would show and is controlled:"), t]
    missing = [s.name for s in direct if not s.risk]
    if missing:
        out.append(para(f"Runtime items without a risk note (to be completed): {esc(', '.join(missing))}."))
    return out


def _groups(items: list[Any], kinds: tuple[tuple[str, str, str], ...], number: int,
            soup: bool) -> list[Flowable]:
    out: list[Flowable] = []
    for n, (kind, label, meaning) in enumerate(kinds, start=1):
        group = [s for s in items if s.kind == kind]
        if group:
            t = _item_table(group, soup)
            out += [*section(f"{number}.{n} {label} ({len(group)})", 2, then=t), para(esc(meaning)), t]
    return out


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    items = sorted(inputs.soup, key=lambda s: s.name)
    soup = [s for s in items if s.shipped]
    tools = [s for s in items if not s.shipped]
    return [
        *section("1 Scope"),
        para("This list identifies every item of software of unknown provenance (SOUP) of "
             f"{esc(inputs.device)} {esc(inputs.device_version)} at commit {esc(inputs.commit)} (IEC 62304 "
             "\u00a78.1.2): the packages of its locked runtime set, each with title, manufacturer's version "
             "designation, file hashes, "
             "licence, purpose, the requirements that rely on it and the review of its published anomalies "
             "(\u00a77.1.2). The tools that build and check the technical file and the software are listed "
             "apart (section 8): they are not part of the device."),
        *_summary(soup, tools), *_sbom(inputs, soup), *_licences(soup), *_reviews(soup), *_risk(soup),
        *section("7 SOUP items (requirements/runtime.lock)"), *_groups(soup, SOUP_KINDS, 7, True),
        *section("8 Tools apart from the device (requirements/dev.lock)"),
        para("Not SOUP of the device: installed for building, checking and documenting it, never with it."),
        *_groups(tools, TOOL_KINDS, 8, False),
    ]


SPEC = DocumentSpec(id="FP-SOUP", title="SOUP list and SBOM summary", file="FP-SOUP-soup-sbom.pdf",
                    needs=("soup", "sbom"), build=build, toc=True)
