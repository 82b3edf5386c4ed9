"""The one look of every dossier document: page layout, styles, the document-control block,
running header and footer with "Page n of m", a table of contents, tables that split across
pages with their header repeated, embedded figures — and byte-identical output.

Determinism: reportlab's *invariant* mode fixes the creation date and document ID it would
otherwise take from the clock and a random source, and every date printed comes from the
workspace's data (:class:`Control.date`), so the same workspace and commit give the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    Image,
    KeepTogether,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)
from reportlab.platypus.tableofcontents import TableOfContents

PAGE = A4
MARGIN = 20 * mm
INK = colors.HexColor("#1a1a1a")
ACCENT = colors.HexColor("#1f4e79")
RULE = colors.HexColor("#9fb3c8")
SHADE = colors.HexColor("#e8eef4")

_base = getSampleStyleSheet()
STYLES: dict[str, ParagraphStyle] = {
    "title": ParagraphStyle("title", parent=_base["Title"], fontName="Helvetica-Bold", fontSize=18,
                            leading=22, alignment=TA_LEFT, textColor=ACCENT, spaceAfter=6),
    "h1": ParagraphStyle("h1", parent=_base["Heading1"], fontName="Helvetica-Bold", fontSize=13, leading=16,
                         textColor=ACCENT, spaceBefore=10, spaceAfter=4, keepWithNext=1),
    "h2": ParagraphStyle("h2", parent=_base["Heading2"], fontName="Helvetica-Bold", fontSize=11, leading=14,
                         textColor=INK, spaceBefore=8, spaceAfter=3, keepWithNext=1),
    "body": ParagraphStyle("body", parent=_base["BodyText"], fontName="Helvetica", fontSize=9.5,
                           leading=12.5, textColor=INK, spaceAfter=4),
    "small": ParagraphStyle("small", parent=_base["BodyText"], fontName="Helvetica", fontSize=8, leading=10,
                            textColor=INK),
    "cell": ParagraphStyle("cell", parent=_base["BodyText"], fontName="Helvetica", fontSize=8, leading=10,
                           textColor=INK),
    "head": ParagraphStyle("head", parent=_base["BodyText"], fontName="Helvetica-Bold", fontSize=8,
                           leading=10, textColor=colors.white),
    "mono": ParagraphStyle("mono", parent=_base["Code"], fontName="Courier", fontSize=7.5, leading=9.5,
                           textColor=INK, leftIndent=0, firstLineIndent=0),
    "caption": ParagraphStyle("caption", parent=_base["BodyText"], fontName="Helvetica-Oblique", fontSize=8,
                              leading=10, textColor=INK, spaceAfter=6),
}


@dataclass(frozen=True)
class Control:
    """The document-control block every document carries (and its running footer)."""

    doc_id: str
    title: str
    revision: str
    date: str
    device: str
    device_version: str
    model: str
    model_sha256: str
    commit: str

    def rows(self) -> list[tuple[str, str]]:
        return [("Document", f"{self.doc_id} — {self.title}"), ("Revision", self.revision),
                ("Date", self.date), ("Device", f"{self.device} {self.device_version}"),
                ("Model", self.model),
                ("Model SHA-256", self.model_sha256), ("Software commit", self.commit)]


def esc(text: object) -> str:
    """Text made safe for a Paragraph (reportlab's mini-markup)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def para(text: str, style: str = "body") -> Paragraph:
    """A paragraph of already-escaped markup (use :func:`esc` on data)."""
    return Paragraph(text, STYLES[style])


def heading(text: str, level: int = 1) -> Paragraph:
    """A section heading; level-1 and level-2 headings go into the table of contents."""
    p = Paragraph(esc(text), STYLES["h1" if level == 1 else "h2"])
    p._toc_level = level - 1
    return p


def table(rows: Sequence[Sequence[object]], widths: Sequence[float] | None = None,
          header: bool = True, mono_cols: Sequence[int] = ()) -> Table:
    """A table that splits across pages and repeats its header row on each; cells wrap."""
    def cell(value: object, col: int, is_head: bool) -> Flowable:
        if isinstance(value, Flowable):
            return value
        style = "head" if is_head else ("mono" if col in mono_cols else "cell")
        return Paragraph(esc(value), STYLES[style])

    data = [[cell(v, j, header and i == 0) for j, v in enumerate(r)] for i, r in enumerate(rows)]
    avail = PAGE[0] - 2 * MARGIN
    col_widths = list(widths) if widths else [avail / max(len(rows[0]), 1)] * len(rows[0])
    scale = avail / sum(col_widths)
    t = Table(data, colWidths=[w * scale for w in col_widths], repeatRows=1 if header else 0, hAlign="LEFT")
    style: list[tuple[Any, ...]] = [
        ("GRID", (0, 0), (-1, -1), 0.4, RULE), ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2)]
    if header:
        style += [("BACKGROUND", (0, 0), (-1, 0), ACCENT),
                  ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, SHADE])]
    t.setStyle(TableStyle(style))
    return t


def figure(path: Path, caption: str, width: float = 150 * mm) -> KeepTogether:
    """An embedded PNG scaled to ``width`` with its caption, kept on one page."""
    img = Image(str(path))
    ratio = img.imageHeight / img.imageWidth
    img.drawWidth, img.drawHeight = width, width * ratio
    return KeepTogether([img, para(esc(caption), "caption")])


def control_block(control: Control) -> Table:
    """The document-control table at the top of the first page."""
    rows = [(k, v) for k, v in control.rows()]
    t = table([("Document control", ""), *rows], widths=[40, 130], mono_cols=(1,))
    t.setStyle(TableStyle([("SPAN", (0, 0), (-1, 0))]))
    return t


class _NumberedCanvas(Canvas):
    """Defers page output to the end so every page can say "Page n of m" (two-pass count)."""

    def __init__(self, *args: Any, control: Control, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._control = control
        self._pages: list[dict[str, Any]] = []

    def showPage(self) -> None:  # noqa: N802 - reportlab API
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._pages)
        for state in self._pages:
            self.__dict__.update(state)
            self._decorate(total)
            super().showPage()
        super().save()

    def _decorate(self, total: int) -> None:
        c, w, h = self._control, PAGE[0], PAGE[1]
        self.saveState()
        self.setStrokeColor(RULE)
        self.setLineWidth(0.5)
        self.line(MARGIN, h - 14 * mm, w - MARGIN, h - 14 * mm)
        self.line(MARGIN, 14 * mm, w - MARGIN, 14 * mm)
        self.setFont("Helvetica", 7.5)
        self.setFillColor(INK)
        self.drawString(MARGIN, h - 12 * mm, f"{c.doc_id}  {c.title}")
        self.drawRightString(w - MARGIN, h - 12 * mm,
                             f"{c.device} {c.device_version} · rev {c.revision} · {c.date}")
        self.drawString(MARGIN, 10 * mm, f"model {c.model} · sha256 {c.model_sha256}")
        self.drawRightString(w - MARGIN, 10 * mm, f"Page {self._pageNumber} of {total}")
        self.restoreState()


class _Doc(BaseDocTemplate):
    def __init__(self, path: Path, control: Control) -> None:
        super().__init__(str(path), pagesize=PAGE, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=20 * mm,
                         bottomMargin=20 * mm, title=f"{control.doc_id} {control.title}", author="fedprog",
                         subject=f"{control.device} {control.device_version}; model {control.model}",
                         creator="fedprog dossier", producer="fedprog dossier (reportlab)")
        frame = Frame(self.leftMargin, self.bottomMargin, self.width, self.height, id="body")
        self.addPageTemplates([PageTemplate(id="page", frames=[frame])])

    def afterFlowable(self, flowable: Flowable) -> None:  # noqa: N802 - reportlab API
        level = getattr(flowable, "_toc_level", None)
        if level is not None and isinstance(flowable, Paragraph):
            self.notify("TOCEntry", (level, flowable.getPlainText(), self.page))


def approval_block(title: str, rows: Sequence[Sequence[str]]) -> Table:
    """The approval table under the document-control block: a title row, a column header, then one
    row per role (role, name, UTC time, key id, signature); a row with only a name cell is an open
    approval ("not yet approved") and is printed in red."""
    head = [para(f"<b>{h}</b>", "cell") for h in ("Role", "Name", "Signed (UTC)", "Key id", "Signature")]
    body = [[r[0], para(f'<font color="#8a1c1c"><b>{esc(r[1])}</b></font>', "cell"), *r[2:]]
            if not any(r[2:]) else list(r) for r in rows]
    t = table([(title, "", "", "", ""), head, *body], widths=[20, 38, 36, 30, 46], mono_cols=(3, 4))
    t.setStyle(TableStyle([("SPAN", (0, 0), (-1, 0)), ("BACKGROUND", (0, 1), (-1, 1), SHADE)]))
    return t


def render(path: Path, control: Control, body: Sequence[Flowable], *, toc: bool = False,
           front: Sequence[Flowable] = (), back: Sequence[Flowable] = ()) -> int:
    """Write the PDF: control block, ``front`` (the approval block), optional table of contents,
    ``body``, then ``back`` (the change history); return pages.

    Output is byte-identical for the same inputs (reportlab invariant mode; no clock reads).
    """
    story: list[Flowable] = [para(esc(control.title), "title"), control_block(control)]
    story += [Spacer(1, 3 * mm), *front] if front else []
    story.append(Spacer(1, 6 * mm))
    if toc:
        contents = TableOfContents()
        contents.levelStyles = [ParagraphStyle("toc1", parent=STYLES["body"], leftIndent=0),
                                ParagraphStyle("toc2", parent=STYLES["small"], leftIndent=12)]
        story += [para("Contents", "h1"), contents, PageBreak()]
    story += [*body, *back]
    previous = rl_config.invariant
    rl_config.invariant = 1
    try:
        doc = _Doc(path, control)
        maker: Callable[..., Canvas] = lambda *a, **k: _NumberedCanvas(*a, control=control, **k)  # noqa: E731
        if toc:
            doc.multiBuild(story, canvasmaker=maker)
        else:
            doc.build(story, canvasmaker=maker)
        return int(doc.page)
    finally:
        rl_config.invariant = previous
