"""Layout helpers shared by the documents FP-DD, FP-SDP, FP-SRS, FP-ARCH, FP-SOUP, FP-CYB and FP-IFU,
built only on the shared style (:mod:`dossier.style`): numbered headings that never end a page,
identifiers in the monospaced face inside wrapping cells, requirement-id lists that wrap between
ids, and column widths measured from the text they must hold.
"""

from __future__ import annotations

from collections.abc import Iterable

from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import CondPageBreak, Flowable

from dossier.style import MARGIN, PAGE, STYLES, esc, heading, para


def section(text: str, level: int = 1, then: Flowable | None = None) -> list[Flowable]:
    """A numbered heading (in the table of contents), moved to the next page when little room
    remains below it, so that a heading never ends a page; with ``then`` (what follows it), the
    room needed is that of its start (all of it when short, else enough for a table's first rows),
    and a long ``then`` (a table split across pages) is not kept with the heading as a whole."""
    need = (32 if level == 1 else 26) * mm
    title = heading(text, level)
    if then is not None:
        lead, whole = _lead_height(then)
        need = max(need, 14 * mm + lead)
        if whole > lead:
            title.keepWithNext = 0  # the CondPageBreak keeps the heading with the table's start
    return [CondPageBreak(need), title]


def code(text: object, note: str = "") -> Flowable:
    """An identifier (hash, code, id) in the monospaced face of the shared ``mono`` style, inside a
    wrapping table cell; ``note`` (markup) follows on its own line."""
    tail = f"<br/>{note}" if note else ""
    return para(f"<font name='{STYLES['mono'].fontName}'>{esc(text)}</font>{tail}", "cell")


def ids(values: Iterable[str]) -> Flowable:
    """A list of requirement ids in a cell, wrapped between ids (never inside one)."""
    return para(esc(", ".join(values)) or "\u2014", "small")


def fit(texts: Iterable[object], style: str = "cell", mono: bool = False) -> float:
    """Points a column needs to show the longest of ``texts`` on one line (cell padding included);
    ``mono``: in the monospaced face of :func:`code`."""
    st = STYLES[style]
    font = STYLES["mono"].fontName if mono else st.fontName
    return max((stringWidth(str(t), font, st.fontSize) for t in texts), default=0.0) + 8


def _lead_height(flowable: Flowable) -> tuple[float, float]:
    """(room to keep with a heading, full height) of ``flowable`` at the frame's width."""
    _, height = flowable.wrap(PAGE[0] - 2 * MARGIN, PAGE[1])
    return float(min(height, 45 * mm)), float(height)
