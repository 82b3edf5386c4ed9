"""A site's own rows: load a table, check it, and put it on the study's time grid.

Nothing here leaves the site. Every problem is a :class:`DataError` naming the file or
column and the rule, never a silent repair: missing values are refused, unless the study declares a
complete-case analysis (``missing = "complete-case"``), when the rows missing a value of the study's
columns are left out and counted (``Cohort.incomplete``).
Error messages travel to the coordinator, so they give counts, never a row's value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from federated.exceptions import DataError
from federated.site.tables import TableFormat, read_table
from federated.study import CohortSpec, grid_steps, grid_width


def load_table(path: Path, fmt: TableFormat | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file (chosen by suffix): :func:`federated.site.tables.read_table`."""
    return read_table(path, fmt)


def coarsen(times: np.ndarray, grid: str, unit: str) -> np.ndarray:
    """Round times *up* to the end of their grid interval (``exact`` leaves them as they are).

    An event on day 40 with a monthly grid is reported at the end of month 2. Sites then
    reveal only which intervals hold events, at the price of more ties (handled exactly by
    Efron's or Breslow's method on the coarsened times).
    """
    if grid == "exact":
        return times
    return grid_steps(times, grid, unit) * grid_width(grid, unit)


@dataclass(frozen=True)
class Cohort:
    """A site's checked rows, sorted by time within each label.

    ``x`` is ``(n, p)`` float64; ``time`` on the study grid; ``event`` 0/1; ``label`` the
    stratum or group index into ``labels``; ``raw_time`` the times before coarsening (after
    administrative censoring at ``max_time``), for the k-cell check (:mod:`federated.disclosure.cells`);
    ``outside`` marks covariates that lay outside their declared range and were clipped into it;
    ``rows`` the position of each row in the table it was prepared from.
    """

    labels: tuple[str, ...]
    label: np.ndarray
    time: np.ndarray
    event: np.ndarray
    x: np.ndarray
    raw_time: np.ndarray
    outside: np.ndarray  # (n, p): the covariate lay outside its declared range (clipped into it)
    rows: np.ndarray
    #: rows of the table left out for a missing value (complete-case studies; 0 otherwise)
    incomplete: int = 0

    def take(self, keep: np.ndarray) -> Cohort:
        """The rows where the boolean mask ``keep`` holds (order kept)."""
        return Cohort(self.labels, self.label[keep], self.time[keep], self.event[keep], self.x[keep],
                      self.raw_time[keep], self.outside[keep], self.rows[keep], self.incomplete)

    def within_envelope(self) -> Cohort:
        """The rows whose every covariate lies in its declared range (the intended-use population)."""
        return self.take(np.asarray(~self.outside.any(axis=1)))


def coverage_bins(cohort: Cohort, spec: CohortSpec) -> np.ndarray:
    """Each row's bin of every declared range, shape ``(n, inputs with a range)``: 0 below the
    range (clipped up into it), 1 … ``range_bins`` inside it (``numpy.histogram``'s bins, the last
    one closed), ``range_bins + 1`` above it."""
    names = [n for n in spec.covariates if n in spec.ranges]
    out = np.empty((cohort.x.shape[0], len(names)), dtype=np.int64)
    for i, name in enumerate(names):
        lo, hi = spec.ranges[name]
        j = spec.covariates.index(name)
        x, clipped = cohort.x[:, j], cohort.outside[:, j]
        edges = np.linspace(lo, hi, spec.range_bins + 1)
        inside = np.clip(np.searchsorted(edges, x, side="right"), 1, spec.range_bins)
        above = np.where(clipped & (x >= hi), spec.range_bins + 1, inside)
        out[:, i] = np.where(clipped & (x <= lo), 0, above)
    return out


def _numeric(df: pd.DataFrame, col: str, where: str) -> np.ndarray:
    s = df[col]
    if s.dtype == bool:
        s = s.astype(np.int64)
    if not pd.api.types.is_numeric_dtype(s):
        n_bad = sum(1 for v in s if not _is_number(v))
        raise DataError(f"{where}: column {col!r} is not numeric ({n_bad} non-numeric values)")
    arr = s.to_numpy(dtype=np.float64, na_value=np.nan)
    n_bad = int(np.sum(~np.isfinite(arr)))
    if n_bad:
        raise DataError(f"{where}: column {col!r} has {n_bad} missing or non-finite values (a study may "
                        "declare missing = \"complete-case\" to leave such rows out, counted)")
    return arr


def _delimiter_hint(df: pd.DataFrame) -> str:
    """A hint when the header looks like one delimited string (the table was split on the wrong character)."""
    for mark, shown, flag in ((";", ";", "';'"), ("\t", "tab", "tab")):
        if any(mark in str(c) for c in df.columns):
            return f" (the file looks {shown}-separated: give --delimiter {flag})"
    return ""


def _is_number(v: object) -> bool:
    try:
        float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _labels(df: pd.DataFrame, spec: CohortSpec, site: str, where: str) -> list[str]:
    parts: list[pd.Series] = []
    if spec.partition is not None:
        s = df[spec.partition]
        if s.isna().any():
            raise DataError(f"{where}: column {spec.partition!r} has {int(s.isna().sum())} missing values")
        parts.append(s.map(_label_text))
    if spec.partition_by_site:
        parts.append(pd.Series([site] * len(df), index=df.index))
    if not parts:
        return [""] * len(df)
    out = parts[0]
    for p in parts[1:]:
        out = out + "|" + p
    return list(out)


def cause_index(df: pd.DataFrame, spec: CohortSpec, where: str) -> np.ndarray:
    """Each row's index into ``("0", *spec.causes)`` of its cause column ``spec.event`` (cause-specific
    cohorts); a missing value or a code the cohort does not declare is a :class:`DataError` (counts only)."""
    s = df[spec.event]
    if s.isna().any():
        raise DataError(f"{where}: column {spec.event!r} has {int(s.isna().sum())} missing values")
    codes = ("0", *spec.causes)
    text = s.map(_label_text)
    undeclared = int((~text.isin(codes)).sum())
    if undeclared:
        raise DataError(f"{where}: column {spec.event!r} has {undeclared} values outside the declared "
                        f"codes {list(codes)}")
    return np.asarray(pd.Categorical(text, categories=codes).codes, dtype=np.int64)


def _label_text(v: object) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _block_rows(block: tuple[int, int, int], n: int) -> np.ndarray:
    """Mask of the rows of block ``b`` of ``m`` disjoint blocks drawn with ``seed`` (sample-and-aggregate)."""
    b, m, seed = block
    if not 0 <= b < m:
        raise DataError(f"block {b} is not in 0..{m - 1}")
    rank = np.empty(n, dtype=np.int64)
    rank[np.random.default_rng(seed).permutation(n)] = np.arange(n)
    return np.asarray(rank % m == b)


def _complete_rows(df: pd.DataFrame, wanted: list[str], spec: CohortSpec, where: str
                   ) -> tuple[pd.DataFrame, np.ndarray, int]:
    """The rows to prepare, their positions in ``df`` and how many were left out: every row, unless the
    study declares a complete-case analysis, when rows missing a value of ``wanted`` are left out."""
    if spec.missing != "complete-case":
        return df, np.arange(len(df)), 0
    wanted = [c for c in wanted if c in df.columns]  # the cohort's own are checked to exist below
    gaps = df[wanted].isna().any(axis=1).to_numpy()
    if gaps.all():
        raise DataError(f"{where}: no row has a value in every column of the study")
    return df.loc[~gaps], np.flatnonzero(~gaps), int(gaps.sum())


def prepare_cohort(df: pd.DataFrame, spec: CohortSpec, site: str, where: str,
                   required: Sequence[str] = ()) -> Cohort:
    """Check ``df`` against ``spec`` and return the site's :class:`Cohort`.

    ``where`` names the source in errors (file or site). A covariate with a declared range (the
    intended-use envelope) is clipped to it (winsorised): a patient beyond the envelope enters the
    fit at its edge, so no one patient can dominate a sum (issue 14) and the fit equals the pooled
    fit on the clipped values. Times must be non-negative;
    events 0/1 (or booleans), or in a cause-specific cohort (``spec.cause``) the declared codes of the
    cause column, the event being ``spec.cause`` and any other code censored at its time; covariates
    numeric with no missing values. In a complete-case study a row
    missing a value of this cohort's columns or of ``required`` (every column of the study's cohorts) is
    left out, so that all the study's cohorts share one row set.
    """
    wanted = [*([] if spec.time is None else [spec.time]), spec.event, *spec.covariates]
    if spec.partition is not None:
        wanted.append(spec.partition)
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        known = ", ".join(map(str, df.columns))
        raise DataError(f"{where}: unknown column {missing[0]!r} (columns: {known}){_delimiter_hint(df)}")
    if len(df) == 0:
        raise DataError(f"{where}: table has no rows")
    df, kept, incomplete = _complete_rows(df, list(dict.fromkeys([*wanted, *required])), spec, where)
    # a binary cohort (no time column: logistic regression) is a survival cohort with every time 0
    time = np.zeros(len(df)) if spec.time is None else _numeric(df, spec.time, where)
    if np.any(time < 0):
        raise DataError(f"{where}: column {spec.time!r} has {int((time < 0).sum())} negative times")
    event = _numeric(df, spec.event, where) if spec.cause is None else \
        (cause_index(df, spec, where) == 1 + spec.causes.index(spec.cause)).astype(np.float64)
    if not np.all(np.isin(event, (0.0, 1.0))):
        n_bad = int((~np.isin(event, (0.0, 1.0))).sum())
        raise DataError(f"{where}: column {spec.event!r} must be 0/1 or boolean ({n_bad} other values)")
    x = np.column_stack([_numeric(df, c, where) for c in spec.covariates]) if spec.covariates \
        else np.zeros((len(df), 0))
    text = _labels(df, spec, site, where)
    if spec.levels is not None and spec.partition is not None:
        declared = set(spec.levels)
        undeclared = sum(1 for t in text if t.split("|")[0] not in declared)
        if undeclared:
            raise DataError(f"{where}: column {spec.partition!r} has {undeclared} values outside the "
                            f"declared levels {list(spec.levels)}")
    outside = np.zeros(x.shape, dtype=bool)
    for j, name in enumerate(spec.covariates):  # winsorised to the intended-use envelope
        if name in spec.ranges:
            lo, hi = spec.ranges[name]
            outside[:, j] = (x[:, j] < lo) | (x[:, j] > hi)
            x[:, j] = np.clip(x[:, j], lo, hi)
    rows = kept  # positions in the table as given (complete-case: the rows kept)
    if spec.block is not None:
        rank = _block_rows(spec.block, time.size)
        time, event, x, outside, rows = time[rank], event[rank], x[rank], outside[rank], rows[rank]
        text = [text[i] for i in np.flatnonzero(rank)]
    if spec.max_time is not None:  # administrative censoring at the study's public horizon
        event = np.where(time > spec.max_time, 0.0, event)
        time = np.minimum(time, spec.max_time)
    labels = tuple(sorted(set(text)))
    label = pd.Categorical(text, categories=labels).codes.astype(np.int64)
    raw = time
    time = coarsen(time, spec.time_grid, spec.time_unit)
    order = np.lexsort((time, label))
    return Cohort(labels=labels, label=label[order].astype(np.int64), time=time[order],
                  event=event[order].astype(np.int64), x=np.ascontiguousarray(x[order]),
                  raw_time=raw[order], outside=outside[order], rows=rows[order], incomplete=incomplete)
