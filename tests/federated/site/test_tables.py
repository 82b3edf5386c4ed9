"""Tables as hospitals export them: each dialect reads to the plain CSV's frame, each failure is one line."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.csv as pa_csv
import pytest
from pydantic import ValidationError

from federated import CohortSpec, Coordinator, InProcessTransport, Site, fit_cox
from federated.analyses.runner import make_sites
from federated.exceptions import DataError
from federated.site.data import prepare_cohort
from federated.site.tables import TableFormat, detect_delimiter, read_table
from federated.study import SiteSource, StudySpec, first_error
from tests.conftest import GBSG2_COVARIATES, PERMISSIVE, PERMISSIVE_FLOORS, approve, split_frame

WARDS = ["Hôpital Saint-Éloi", "Klinikum Köln-Süd", "Müller, Anna", "Sjukhuset Ängelholm"]


@pytest.fixture()
def frame() -> pd.DataFrame:
    """A table with every kind of column a hospital exports: ints, fractions (negative, tiny), a
    missing value, booleans, dates, and accented text (one holding a comma, so it is quoted)."""
    rng = np.random.default_rng(17)
    n = 40
    return pd.DataFrame({
        "time": rng.integers(1, 3000, n),
        "event": rng.integers(0, 2, n),
        "age": np.round(rng.normal(54, 9, n), 1),
        "marker": rng.lognormal(-8, 3, n) * rng.choice([-1, 1], n),
        "bmi": np.where(np.arange(n) == 5, np.nan, rng.uniform(17, 40, n)),
        "smoker": rng.integers(0, 2, n).astype(bool),
        "admitted": pd.date_range("2019-01-01", periods=n, freq="7D").strftime("%Y-%m-%d"),
        "ward": [WARDS[i % len(WARDS)] for i in range(n)],
    })


def _today(path: Path) -> pd.DataFrame:
    """What ``load_table`` gave before issue 17 (Arrow on the path, one thread)."""
    table = pa_csv.read_csv(path, read_options=pa_csv.ReadOptions(use_threads=False))
    return table.to_pandas(use_threads=False)


GERMAN_EXCEL: dict[str, Any] = {"sep": ";", "decimal": ",", "encoding": "cp1252", "lineterminator": "\r\n"}
#: (file name, pandas ``to_csv`` options, the format a site declares); ``None`` declares nothing.
EXPORTS: dict[str, tuple[str, dict[str, Any], TableFormat | None]] = {
    "excel-german-windows": ("site.csv", GERMAN_EXCEL, TableFormat(decimal=",", encoding="cp1252")),
    "excel-german-declared": ("site.csv", {"sep": ";", "decimal": ",", "encoding": "cp1252"},
                              TableFormat(delimiter=";", decimal=",", encoding="cp1252")),
    "latin-1-french": ("site.csv", {"sep": ";", "decimal": ",", "encoding": "latin-1"},
                       TableFormat(decimal=",", encoding="latin-1")),
    "tab-separated": ("site.tsv", {"sep": "\t"}, None),
    "utf-8-with-bom": ("site.csv", {"encoding": "utf-8-sig"}, None),
    "pipe-separated": ("site.txt", {"sep": "|"}, None),
    "excel-unicode-text": ("site.txt", {"sep": "\t", "encoding": "utf-16"}, TableFormat(encoding="utf-16")),
    "tab-declared-by-name": ("site.txt", {"sep": "\t"}, TableFormat(delimiter="tab")),
}


@pytest.mark.req("SRS-DATA-001", "SRS-FED-010")
def test_a_plain_csv_reads_as_before(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "plain.csv"
    frame.to_csv(path, index=False)
    got = read_table(path)
    pd.testing.assert_frame_equal(got, _today(path), check_exact=True)
    assert isinstance(got["admitted"][0], datetime.date) and got["smoker"].dtype == bool  # Arrow's inference


@pytest.mark.req("SRS-DATA-001")
@pytest.mark.parametrize("export", sorted(EXPORTS))
def test_hospital_exports_read_to_the_plain_frame(tmp_path: Path, frame: pd.DataFrame, export: str) -> None:
    name, options, fmt = EXPORTS[export]
    frame.to_csv(tmp_path / "plain.csv", index=False)
    frame.to_csv(tmp_path / name, index=False, **options)
    got = read_table(tmp_path / name, fmt)
    pd.testing.assert_frame_equal(got, read_table(tmp_path / "plain.csv"), check_exact=True)
    assert list(got["ward"].unique()) == WARDS


@pytest.mark.req("SRS-DATA-001")
@pytest.mark.parametrize(("text", "expected"), [
    ("time,event\n1,0\n", ","),
    ("time;event;age\n1;0;54,3\n2;1;60\n", ";"),  # decimal commas do not split evenly
    ("time\tevent\n1\t0\n", "\t"),
    ("time|event\n1|0\n", "|"),
    ('name;age\n"Müller; Anna";5\n"Zoë";6\n', ";"),  # a quoted delimiter is no delimiter
    ("a,b;c,d\n1,2;3,4\n", ","),  # both fit: the most fields wins (3 against 2)
    ("a,b;c\n1,2;3\n", ","),  # a tie: the earlier candidate
    ("time\n1\n2\n", ","),  # one column
    ("time,event,age\n1,0,54,3\n", ","),  # only ',' splits the header: the parser names the line
    ("time;event\r\n1;0\r\n\r\n2;1\r\n", ";"),  # Windows line ends, a blank line
])
def test_delimiter_detection_is_the_documented_rule(text: str, expected: str) -> None:
    assert detect_delimiter(text) == expected


@pytest.mark.req("SRS-DATA-001")
def test_detection_looks_at_the_first_fifty_records_only() -> None:
    body = "".join(f"{i};{i % 2}\n" for i in range(50))
    assert detect_delimiter("time;event\n" + body + "1;2;3;4\n") == ";"
    with pytest.raises(DataError, match="cannot detect"):
        detect_delimiter("time;event,x\n" + "1;2,3;4\n" + body)


UTF16_HINT = "UTF-16 (Excel's 'Unicode text')? give --encoding utf-16"
#: (file bytes, file name, declared format, the whole expected message after the path)
FAILURES: dict[str, tuple[bytes, str, TableFormat | None, str]] = {
    "cp1252-undeclared": (
        b"time;event;name\n1;0;Anna\n2;1;Jos\xe9\n", "site.csv", None,
        "not UTF-8 (byte 0xe9 at line 3) — exported from Excel on Windows? give --encoding cp1252"),
    "utf-16-undeclared": (
        "time\tevent\n1\t0\n".encode("utf-16"), "site.txt", None,
        f"not UTF-8 (byte 0xff at line 1) — {UTF16_HINT}"),
    "utf-16-without-bom": (
        "time\tevent\n1\t0\n".encode("utf-16-le"), "site.txt", None,
        f"holds NUL characters — {UTF16_HINT}"),
    "utf-8-declared-ascii": (
        "time;name\n1;Zoë\n".encode(), "site.csv", TableFormat(encoding="ascii"),
        "not ascii (byte 0xc3 at line 2) — it reads as UTF-8: leave out --encoding"),
    "neither-utf-8-nor-cp1252": (
        b"time;name\n1;\x81\xe9\n", "site.csv", None,
        "not UTF-8 (byte 0x81 at line 2) — give --encoding with the file's encoding (e.g. latin-1)"),
    "decimal-comma-undeclared": (
        b"time;event;age\n1;0;54,3\n2;1;60\n3;1;-0,5\n", "site.csv", None,
        "column 'age' has 2 numbers with a decimal comma (written like 1,5) — give --decimal ,"),
    "decimal-point-declared-comma": (
        b"time;event;age\n1;0;54.3\n2;1;60\n", "site.csv", TableFormat(decimal=","),
        "column 'age' has 1 number with a decimal point (written like 1.5) — give --decimal ."),
    "comma-delimiter-and-decimal-comma": (
        b"time,event,age\n1,0,54,3\n2,1,60\n", "site.csv", TableFormat(decimal=","),
        "the delimiter looks like ',', the decimal mark too: ambiguous — export with ';' as delimiter, "
        "or give --delimiter"),
    "unquoted-decimal-commas": (
        b"time,event,age\n1,0,60\n2,1,54,3\n", "site.csv", None,
        "line 3 has 4 fields but the header has 3 — a decimal comma in a ','-separated file? "
        "export with ';' and give --decimal ,"),
    "ragged-semicolons": (
        b"time;event;age\n1;0;60\n2;1;54;3\n", "site.csv", TableFormat(delimiter=";"),
        "line 3 has 4 fields but the header has 3 — an unquoted ';' inside a value?"),
    "undetectable": (
        b"time;event,age\n1;0;5\n2,1\n", "site.csv", None,
        "cannot detect the delimiter: the header splits on ',' and ';', but none splits the first lines "
        "evenly — give --delimiter"),
    "empty": (b"", "site.csv", None, "empty file (no header line)"),
    "only-a-bom-and-blanks": (b"\xef\xbb\xbf\r\n  \r\n", "site.csv", None, "empty file (no header line)"),
    "duplicate-columns": (
        b"time;event;age;age\n1;0;5;6\n", "site.csv", None,
        "column 'age' appears 2 times in the header — rename the copies"),
    "excel-workbook": (
        b"PK\x03\x04", "site.xlsx", None,
        "unsupported file type '.xlsx' (want .csv, .tsv, .txt, .parquet or .pq; "
        "save an Excel workbook as CSV)"),
}


@pytest.mark.req("SRS-DATA-001")
@pytest.mark.parametrize("case", sorted(FAILURES))
def test_each_failure_is_one_line_naming_file_and_cause(tmp_path: Path, case: str) -> None:
    data, name, fmt, expected = FAILURES[case]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError) as info:
        read_table(path, fmt)
    assert str(info.value) == f"{path}: {expected}"
    assert "\n" not in str(info.value)


@pytest.mark.req("SRS-DATA-001")
def test_a_missing_file_and_a_patients_value_are_not_in_the_message(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere\.csv: file not found$"):
        read_table(tmp_path / "nowhere.csv")
    path = tmp_path / "site.csv"
    path.write_bytes(b"time,event,age\n1,0,60\n2,1,54,37\n")
    with pytest.raises(DataError) as info:
        read_table(path)
    said = str(info.value).replace(str(path), "<path>")  # the temporary folder's name may hold digits
    assert "37" not in said and "54" not in said  # Arrow's own message quotes the row


CODEC_WANTED = "(want a codec name such as 'utf-8', 'cp1252' or 'latin-1')"
ONE_CHARACTER = "delimiter: Value error, delimiter must be one character other than a quote or a line break"


@pytest.mark.req("SRS-DATA-001")
@pytest.mark.parametrize(("fields", "message"), [
    ({"encoding": "utf-9"}, f"encoding: Value error, unknown text encoding 'utf-9' {CODEC_WANTED}"),
    ({"encoding": "base64"}, f"encoding: Value error, 'base64' is not a text encoding {CODEC_WANTED}"),
    ({"delimiter": ",", "decimal": ","},
     "(root): Value error, delimiter and decimal mark are both ',': ambiguous "
     "(a table with decimal commas is usually ';'-separated)"),
    ({"delimiter": ";;"}, f"{ONE_CHARACTER}, but was ';;'"),
    ({"delimiter": '"'}, f"{ONE_CHARACTER}, but was '\"'"),
    ({"decimal": "·"}, "decimal: Input should be '.' or ','"),
    ({"sep": ";"}, "sep: Extra inputs are not permitted"),
])
def test_a_bad_format_is_refused_in_one_line(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        TableFormat(**fields)  # type: ignore[arg-type]
    assert first_error(info.value) == message


@pytest.mark.req("SRS-DATA-001")
def test_format_names_are_normalised() -> None:
    assert TableFormat(encoding="CP1252").encoding == "cp1252"
    assert TableFormat(encoding="latin1").encoding == "iso8859-1"
    assert TableFormat(delimiter="\\t").delimiter == TableFormat(delimiter="tab").delimiter == "\t"
    assert TableFormat() == TableFormat(delimiter=None, decimal=".", encoding=None)


@pytest.mark.req("SRS-DATA-001", "SRS-FED-010")
@pytest.mark.parametrize(("header", "hint"), [
    ("time;event;age", " (the file looks ;-separated: give --delimiter ';')"),
    ("time\tevent\tage", " (the file looks tab-separated: give --delimiter tab)"),
    ("time:event:age", ""),
])
def test_unknown_column_hints_at_the_delimiter(header: str, hint: str) -> None:
    df = pd.DataFrame({header: ["1", "2"]})
    with pytest.raises(DataError) as info:
        prepare_cohort(df, CohortSpec(time="time", event="event"), "a", where="site.csv")
    assert str(info.value) == f"site.csv: unknown column 'time' (columns: {header}){hint}"


@pytest.mark.req("SRS-DATA-001", "SRS-FED-010")
def test_a_wrong_declared_delimiter_reaches_the_coordinator_with_the_hint(tmp_path: Path) -> None:
    from federated.exceptions import SiteError

    path = tmp_path / "site.csv"
    path.write_bytes(b"time;event;age\n1;0;60\n2;1;50\n")
    site = Site("a", path, floors=PERMISSIVE_FLOORS, table_format=TableFormat(delimiter=","))
    cohort = CohortSpec(time="time", event="event", covariates=("age",))
    coord = Coordinator(InProcessTransport([site]), session="s",
                        protocol=approve([site], [cohort], secure=False))
    with pytest.raises(SiteError, match=r"give --delimiter ';'\)$"):
        fit_cox(coord, cohort, policy=PERMISSIVE)


def _gbsg2_fractions(gbsg2: pd.DataFrame) -> pd.DataFrame:
    """GBSG2 with fractional covariates (whole numbers alone would not test the decimal mark) and
    an accented ward name per row."""
    return gbsg2.assign(pnodes=np.log1p(gbsg2["pnodes"]), progrec=np.sqrt(gbsg2["progrec"]),
                        ward=[WARDS[i % len(WARDS)] for i in range(len(gbsg2))])


def _fit(sites: list[Site]) -> np.ndarray:
    for site in sites:
        site.floors = PERMISSIVE_FLOORS
    cohort = CohortSpec(time="time", event="event", covariates=GBSG2_COVARIATES)
    coord = Coordinator(InProcessTransport(sites), session="tables", protocol=approve(sites, [cohort]))
    fit = fit_cox(coord, cohort, policy=PERMISSIVE)
    assert fit.converged
    return np.asarray(fit.coef)


@pytest.mark.req("SRS-DATA-001", "SRS-FED-001")
def test_sites_over_hospital_exports_fit_the_plain_files_cox(tmp_path: Path, gbsg2: pd.DataFrame) -> None:
    parts = split_frame(_gbsg2_fractions(gbsg2), 3, seed=17)
    exports = [("plain-{}.csv", {}, None),
               ("german-{}.csv", GERMAN_EXCEL, TableFormat(decimal=",", encoding="cp1252")),
               ("unicode-{}.txt", {"sep": "\t", "encoding": "utf-16"}, TableFormat(encoding="utf-16"))]
    fits = []
    for name, options, fmt in exports:
        sites = []
        for i, part in enumerate(parts):
            part.to_csv(tmp_path / name.format(i), index=False, **options)
            sites.append(Site(f"site-{i}", tmp_path / name.format(i), table_format=fmt))
        fits.append(_fit(sites))
    # the study file's [[sites]] format reaches the site through the runner
    study = StudySpec(time="time", event="event", sites=[
        SiteSource(name=f"site-{i}", path=tmp_path / f"german-{i}.csv",
                   format=TableFormat(delimiter=";", decimal=",", encoding="cp1252")) for i in range(3)])
    fits.append(_fit(make_sites(study)))
    assert np.all(fits[0] != 0)
    for coef in fits[1:]:
        assert np.max(np.abs(coef - fits[0])) <= 1e-10


@pytest.mark.req("SRS-DATA-001")
def test_a_study_file_declares_the_format(tmp_path: Path) -> None:
    source = SiteSource.model_validate({"name": "a", "path": "a.csv",
                                        "format": {"delimiter": ";", "decimal": ",", "encoding": "cp1252"}})
    assert source.format == TableFormat(delimiter=";", decimal=",", encoding="cp1252")
    assert SiteSource(name="a", path=Path("a.csv")).format == TableFormat()
