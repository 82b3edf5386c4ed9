"""A site's table as hospitals export it: CSV in any of the usual dialects, or Parquet.

Excel writes ``;``-separated files with decimal commas in much of Europe, tab-separated "text"
files, and cp1252 on Windows; :func:`read_table` reads them all under a :class:`TableFormat`
(detecting the delimiter when none is given) and turns every failure into one line naming the
file and the likely cause. Nothing here leaves the site, and the messages, which may travel to
the coordinator, give positions and counts, never a patient's value.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from pathlib import Path

import pandas as pd
from pyarrow import ArrowException as ArrowError

from federated.exceptions import DataError
from federated.table_format import TableFormat

__all__ = ["CANDIDATES", "TableFormat", "detect_delimiter", "read_table"]

#: Delimiters :func:`detect_delimiter` tries, in this order (the order breaks ties).
CANDIDATES: tuple[str, ...] = (",", ";", "\t", "|")
_CSV = frozenset({".csv", ".txt", ".tsv"})
_PARQUET = frozenset({".parquet", ".pq"})
_SAMPLE_CHARS = 1 << 16  # detection reads at most the first 64 KiB …
_SAMPLE_RECORDS = 50  # … and at most the header and this many records
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def read_table(path: Path, fmt: TableFormat | None = None) -> pd.DataFrame:
    """Read a CSV (``.csv``, ``.txt``, ``.tsv``) or Parquet (``.parquet``, ``.pq``) file.

    CSV text is decoded with ``fmt.encoding`` (default UTF-8, a byte-order mark dropped), split
    on ``fmt.delimiter`` (default: :func:`detect_delimiter`) and parsed by Arrow with
    ``fmt.decimal`` as the decimal mark, so a plain UTF-8 comma file gives exactly the frame
    (values and dtypes) that ``pyarrow.csv.read_csv`` gives. ``fmt`` is ignored for Parquet.
    Arrow runs on the calling thread only: sites already load in parallel, and Arrow's own
    thread pool must not outlive a site's thread.

    Raises
    ------
    DataError
        One line naming the file and the likely cause: missing file, unknown suffix, empty file,
        text not in the encoding (byte and line, with the encoding to try), an undetectable
        delimiter, a delimiter equal to the decimal mark, a row with more or fewer fields than
        the header, duplicate column names, or a column whose every value is a number written
        with the other decimal mark.
    """
    fmt = fmt or TableFormat()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix in _PARQUET:
        df = _read_parquet(path)
    elif suffix in _CSV:
        df = _read_csv(path, fmt)
    else:
        excel = "; save an Excel workbook as CSV" if suffix in {".xls", ".xlsx"} else ""
        raise DataError(f"{path}: unsupported file type {suffix!r} (want .csv, .tsv, .txt, .parquet "
                        f"or .pq{excel})")
    _check_names(df, path)
    if suffix in _CSV:
        _check_decimal(df, fmt.decimal, path)
    return df


def detect_delimiter(text: str, where: object = "table") -> str:
    """The delimiter of CSV ``text``, among :data:`CANDIDATES` (``,`` ``;`` tab ``|``).

    Deterministic: the header and up to 50 further non-blank records within the first 64 KiB
    (a record the 64 KiB may cut is dropped) are split under each candidate, honouring double
    quotes. A candidate *fits* when the header has at least two fields and every sampled record
    as many; the fit with the most header fields wins, a tie going to the earlier candidate.
    With no fit, the one candidate that splits the header is taken (the parser then names the
    uneven line); when none splits it, the table has one column and ``,`` is returned.
    Otherwise (several split the header, none evenly) :class:`DataError`.
    """
    cut = len(text) > _SAMPLE_CHARS
    widths = {c: _widths(text[:_SAMPLE_CHARS], c, cut) for c in CANDIDATES}
    fits = [c for c in CANDIDATES if widths[c][0] >= 2 and len(set(widths[c])) == 1]
    if fits:
        return max(fits, key=lambda c: widths[c][0])  # max keeps the first of equals
    wide = [c for c in CANDIDATES if widths[c][0] >= 2]
    if len(wide) == 1:
        return wide[0]
    if not wide:
        return ","
    marks = " and ".join(map(_name, wide))
    raise DataError(f"{where}: cannot detect the delimiter: the header splits on {marks}, but none "
                    f"splits the first lines evenly — give --delimiter")


def _widths(head: str, delimiter: str, cut: bool) -> list[int]:
    """Field counts of the header and the sampled records under ``delimiter`` (``[0]`` if
    unparseable); the last record is dropped when ``cut`` (the sample may end inside it)."""
    try:
        rows = (r for r in csv.reader(io.StringIO(head), delimiter=delimiter) if r)
        out = [len(r) for _, r in zip(range(_SAMPLE_RECORDS + 2), rows, strict=False)]
    except csv.Error:
        return [0]
    if len(out) > _SAMPLE_RECORDS + 1 or (cut and len(out) > 1):
        out = out[:-1]
    return out or [0]


def _name(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else repr(delimiter)


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pa_parquet

    try:
        return pa_parquet.read_table(path, use_threads=False).to_pandas(use_threads=False)
    except (ValueError, OSError, ArrowError) as exc:
        raise DataError(f"{path}: cannot read table: {str(exc).splitlines()[0]}") from None


def _read_csv(path: Path, fmt: TableFormat) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    raw = path.read_bytes()
    text, data = _decode(raw, fmt.encoding, path)
    if not text.strip():
        raise DataError(f"{path}: empty file (no header line)")
    delimiter = fmt.delimiter or detect_delimiter(text, path)
    if delimiter == fmt.decimal:
        raise DataError(f"{path}: the delimiter looks like {delimiter!r}, the decimal mark too: ambiguous "
                        f"— export with ';' as delimiter, or give --delimiter")
    try:
        table = pa_csv.read_csv(pa.BufferReader(data),
                                read_options=pa_csv.ReadOptions(use_threads=False),
                                parse_options=pa_csv.ParseOptions(delimiter=delimiter),
                                convert_options=pa_csv.ConvertOptions(decimal_point=fmt.decimal))
        return table.to_pandas(use_threads=False)
    except (ValueError, OSError, ArrowError) as exc:
        uneven = _uneven(text, delimiter)
        if uneven is None:
            raise DataError(f"{path}: cannot read table: {str(exc).splitlines()[0]}") from None
        line, got, want = uneven
        hint = (f"an unquoted {_name(delimiter)} inside a value?" if delimiter != ","
                else "a decimal comma in a ','-separated file? export with ';' and give --decimal ,")
        raise DataError(f"{path}: line {line} has {got} fields but the header has {want} — {hint}") from None


def _decode(raw: bytes, encoding: str | None, path: Path) -> tuple[str, bytes]:
    """The file's text (a leading byte-order mark dropped) and its UTF-8 bytes for Arrow."""
    name = encoding or "utf-8"
    body = raw[len(codecs.BOM_UTF8):] if name == "utf-8" and raw.startswith(codecs.BOM_UTF8) else raw
    try:
        text = body.decode(name)
    except UnicodeDecodeError as exc:
        line = body[:exc.start].count(b"\n") + 1
        said = "UTF-8" if encoding is None else encoding
        raise DataError(f"{path}: not {said} (byte 0x{body[exc.start]:02x} at line {line}) — "
                        f"{_encoding_hint(raw, name)}") from None
    if "\x00" in text[:_SAMPLE_CHARS]:
        raise DataError(f"{path}: holds NUL characters — UTF-16 (Excel's 'Unicode text')? "
                        f"give --encoding utf-16")
    text = text.removeprefix("\ufeff")
    return text, (body if name == "utf-8" else text.encode("utf-8"))


def _encoding_hint(raw: bytes, tried: str) -> str:
    """The encoding to try after ``tried`` failed on ``raw``."""
    if raw.startswith(_UTF16_BOMS):
        return "UTF-16 (Excel's 'Unicode text')? give --encoding utf-16"
    if tried != "utf-8" and _decodes(raw, "utf-8"):
        return "it reads as UTF-8: leave out --encoding"
    if tried == "utf-8" and _decodes(raw, "cp1252"):
        return "exported from Excel on Windows? give --encoding cp1252"
    return "give --encoding with the file's encoding (e.g. latin-1)"


def _decodes(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _uneven(text: str, delimiter: str) -> tuple[int, int, int] | None:
    """``(line, fields, header fields)`` of the first record whose field count differs from the header's."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    want = None
    try:
        for row in reader:
            if not row:
                continue
            if want is None:
                want = len(row)
            elif len(row) != want:
                return reader.line_num, len(row), want
    except csv.Error:
        return None
    return None


def _check_names(df: pd.DataFrame, path: Path) -> None:
    twice = [(n, k) for n, k in Counter(map(str, df.columns)).items() if k > 1]
    if twice:
        name, k = twice[0]
        raise DataError(f"{path}: column {name!r} appears {k} times in the header — rename the copies")


def _check_decimal(df: pd.DataFrame, decimal: str, path: Path) -> None:
    """Refuse a text column whose every value is a number written with the other decimal mark."""
    other = "," if decimal == "." else "."
    written = re.compile(rf"[-+]?\d*{re.escape(other)}\d+(?:[eE][-+]?\d+)?")
    for col in df.columns:
        values = df[col].dropna()
        if df[col].dtype != object or values.empty or not all(isinstance(v, str) for v in values):
            continue
        text = values.str.strip()
        odd = text.str.fullmatch(written)
        if odd.any() and (odd | text.str.fullmatch(r"[-+]?\d+")).all():
            kind, flag = ("comma", ",") if other == "," else ("point", ".")
            n = int(odd.sum())
            raise DataError(f"{path}: column {col!r} has {n} number{'s' * (n != 1)} with a decimal {kind} "
                            f"(written like 1{other}5) — give --decimal {flag}")
