"""How a model's inputs become its design columns: restricted cubic splines, dummy coding, interactions.

A released model (``fedprog.model/v1``) and a study declare *inputs*; the coefficients belong to
*columns* built from them, in this order — each input's columns in ``inputs`` order, then each
declared interaction's:

- a ``quantity``, ``integer``, ``boolean`` or ordinal ``category`` input (``ordinal: true``, its
  0-based level index) is one column named as the input;
- a ``category`` input without ``ordinal`` is dummy-coded against its first level: one 0/1 column
  ``name=code`` per other level;
- an input with ``spline`` {knots t₁ < … < t_k} (k ≥ 3) is a restricted cubic spline (Stone & Koo
  1985; Harrell 2015, *Regression Modeling Strategies*, 2nd ed., §2.4.5): the column ``name`` (x
  itself) and k − 2 non-linear columns ``name'``, ``name''``, … (:func:`rcs_basis`), linear beyond
  the outer knots;
- an interaction ``[a, b]`` is the product of every column of ``a`` with every column of ``b``,
  named ``ca:cb`` (R's formula notation).

A clinician reads one *effect* per input (the sum of its columns' contributions β_j (x_j − c_j)) and
one per interaction (``a:b``): :meth:`Design.effect_sums`. Nothing here reads data: a design is a
pure function of the declarations, the same at every site, at the coordinator and in the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from typing import Protocol

import numpy as np


class _Declared(Protocol):
    """What a design reads of an input declaration (:class:`prognosis.inputs.InputSpec`)."""

    @property
    def kind(self) -> str: ...

    @property
    def ordinal(self) -> bool: ...

    @property
    def knots(self) -> list[float] | None: ...

    @property
    def codes(self) -> list[str]: ...


def rcs_basis(x: np.ndarray, knots: Sequence[float]) -> np.ndarray:
    """Harrell's restricted cubic spline basis of ``x`` at ``knots``, shape (n, k − 1).

    With knots t₁ < … < t_k, column 0 is x and, for j = 1 … k − 2 (``rms::rcs``, ``Hmisc::rcspline.eval``
    with its default ``norm = 2``)::

        X_j(x) = [ (x − t_j)₊³ − (x − t_{k−1})₊³ (t_k − t_j)/(t_k − t_{k−1})
                              + (x − t_k)₊³ (t_{k−1} − t_j)/(t_k − t_{k−1}) ] / (t_k − t₁)²

    Each X_j is 0 left of t_j, cubic between the knots and linear right of t_k, so the fitted
    function is linear in both tails (Stone & Koo 1985, *Proc. Stat. Comput. Section ASA* 45–48).
    """
    t = np.asarray(knots, dtype=float)
    if t.ndim != 1 or t.size < 3 or np.any(np.diff(t) <= 0):
        raise ValueError("a restricted cubic spline needs at least 3 strictly increasing knots")
    v = np.asarray(x, dtype=float).reshape(-1)
    k, scale = t.size, (t[-1] - t[0]) ** 2

    def cube(a: np.ndarray) -> np.ndarray:
        return np.maximum(a, 0.0) ** 3

    tail = cube(v - t[-1])
    last = cube(v - t[-2])
    cols = [v]
    for j in range(k - 2):
        cols.append((cube(v - t[j]) - last * (t[-1] - t[j]) / (t[-1] - t[-2])
                     + tail * (t[-2] - t[j]) / (t[-1] - t[-2])) / scale)
    return np.column_stack(cols)


@dataclass(frozen=True)
class Design:
    """The columns of a model: names, which effect each belongs to, and how to build them.

    ``inputs`` are the input names (the column order of every raw ``X``), ``specs`` their
    declarations, ``interactions`` the declared pairs. :meth:`matrix` maps raw inputs (n, q) to the
    design (n, m); :attr:`identity` is True when every input is its own single column.
    """

    inputs: tuple[str, ...]
    specs: tuple[_Declared, ...]
    interactions: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, names: Sequence[str], specs: Sequence[_Declared],
           interactions: Sequence[Sequence[str]] = ()) -> Design:
        """The design of ``names`` declared as ``specs``; refuses (``ValueError``) an interaction of
        an unknown input, of an input with itself, or declared twice."""
        pairs: list[tuple[str, str]] = []
        for pair in interactions:
            if len(pair) != 2:
                raise ValueError(f"interactions: {list(pair)} is not a pair of inputs")
            a, b = str(pair[0]), str(pair[1])
            unknown = [n for n in (a, b) if n not in names]
            if unknown:
                raise ValueError(f"interactions: {unknown[0]!r} is not an input")
            if a == b or (a, b) in pairs or (b, a) in pairs:
                raise ValueError(f"interactions: {a}:{b} " + ("pairs an input with itself" if a == b
                                                               else "is declared twice"))
            pairs.append((a, b))
        return cls(tuple(names), tuple(specs), tuple(pairs))

    # ------------------------------------------------------------------ names
    def input_columns(self, name: str) -> tuple[str, ...]:
        """The columns of input ``name`` (before interactions)."""
        spec = self.specs[self.inputs.index(name)]
        if spec.kind == "category" and not spec.ordinal:
            return tuple(f"{name}={code}" for code in spec.codes[1:])
        if spec.knots is not None:
            return (name, *(name + "'" * j for j in range(1, len(spec.knots) - 1)))
        return (name,)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column, in coefficient order."""
        return tuple(c for _, c in self._labelled())

    @property
    def groups(self) -> tuple[str, ...]:
        """The effect each column belongs to (its input, or ``a:b`` for an interaction)."""
        return tuple(g for g, _ in self._labelled())

    @property
    def effects(self) -> tuple[str, ...]:
        """The effects a clinician reads, in order: each input, then each interaction ``a:b``."""
        return (*self.inputs, *(f"{a}:{b}" for a, b in self.interactions))

    @property
    def identity(self) -> bool:
        """True when the design matrix is the raw inputs themselves."""
        return self.columns == self.inputs

    def _labelled(self) -> list[tuple[str, str]]:
        out = [(n, c) for n in self.inputs for c in self.input_columns(n)]
        for a, b in self.interactions:
            out += [(f"{a}:{b}", f"{ca}:{cb}")
                    for ca, cb in product(self.input_columns(a), self.input_columns(b))]
        return out

    # ------------------------------------------------------------------ values
    def _input_block(self, j: int, v: np.ndarray) -> np.ndarray:
        spec = self.specs[j]
        if spec.kind == "category" and not spec.ordinal:
            return np.column_stack([v == i for i in range(1, len(spec.codes))]).astype(float) \
                if len(spec.codes) > 1 else np.zeros((v.size, 0))
        if spec.knots is not None:
            return rcs_basis(v, spec.knots)
        return v[:, None]

    def matrix(self, X: np.ndarray) -> np.ndarray:
        """The design matrix (n, m) of raw inputs ``X`` (n, q) in ``inputs`` order (1-d: one patient)."""
        raw = np.asarray(X, dtype=float)
        one = raw.ndim == 1
        raw = np.atleast_2d(raw)
        if raw.shape[1] != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} input columns ({', '.join(self.inputs)}), "
                             f"got {raw.shape[1]}")
        if self.identity:
            out = raw.copy()
        else:
            blocks = [self._input_block(j, raw[:, j]) for j in range(len(self.inputs))]
            for a, b in self.interactions:
                ba, bb = blocks[self.inputs.index(a)], blocks[self.inputs.index(b)]
                blocks.append((ba[:, :, None] * bb[:, None, :]).reshape(raw.shape[0], -1))
            out = np.column_stack(blocks) if blocks else np.zeros((raw.shape[0], 0))
        return out[0] if one else out

    def inputs_of(self, columns: np.ndarray) -> np.ndarray:
        """The raw inputs (q,) a design row (m,) was made of — the inverse of :meth:`matrix` for one
        row: a spline's first column is the input itself, a dummy-coded category is the level whose
        column is 1 (its first level when none is)."""
        row = np.asarray(columns, dtype=float).reshape(-1)
        if row.size != len(self.columns):
            raise ValueError(f"expected {len(self.columns)} design columns, got {row.size}")
        at = dict(zip(self.columns, row, strict=True))
        out = np.empty(len(self.inputs))
        for j, name in enumerate(self.inputs):
            spec = self.specs[j]
            if spec.kind == "category" and not spec.ordinal:
                on = [i for i, col in enumerate(self.input_columns(name), start=1) if at[col] == 1.0]
                out[j] = float(on[0]) if on else 0.0
            else:
                out[j] = at[name]
        return out

    def effect_sums(self, per_column: np.ndarray) -> np.ndarray:
        """Per-column values (n, m) summed per effect, shape (n, len(effects))."""
        values = np.atleast_2d(np.asarray(per_column, dtype=float))
        groups = np.array(self.groups, dtype=object)
        return np.column_stack([values[:, groups == e].sum(axis=1) for e in self.effects]) \
            if self.effects else np.zeros((values.shape[0], 0))

    def _grid(self, name: str, lo: float, hi: float, points: int) -> np.ndarray:
        """Public values of input ``name`` spanning [lo, hi]: every level of a category, else
        ``points`` even steps plus the knots inside."""
        spec = self.specs[self.inputs.index(name)]
        grid = np.arange(len(spec.codes), dtype=float) if spec.kind == "category" else \
            np.unique(np.concatenate((np.linspace(lo, hi, points), spec.knots or [])))
        return grid[(grid >= lo) & (grid <= hi)]

    def effect_grids(self, ranges: dict[str, tuple[float, float]], points: int = 257
                     ) -> dict[str, np.ndarray]:
        """For each effect whose inputs all have a declared range, its design columns (P, m) at public
        points spanning the ranges (zero in the other columns): each input over ``points`` values (every
        level of a category), an interaction over every pair of its inputs' values (65 each). From the
        declarations alone; β·row is then the effect's log hazard ratio at each point."""
        index = {c: j for j, c in enumerate(self.columns)}
        out: dict[str, np.ndarray] = {}
        for name in self.inputs:
            if name in ranges:
                v = self._grid(name, *ranges[name], points)
                rows = np.zeros((v.size, len(index)))
                rows[:,
                     [index[c] for c in self.input_columns(name)]] = \
                    self._input_block(self.inputs.index(name), v)
                out[name] = rows
        for a, b in self.interactions:
            if a in ranges and b in ranges:
                va, vb = (self._grid(n, *ranges[n], 65) for n in (a, b))
                ba, bb = self._input_block(self.inputs.index(a),
                                           va), self._input_block(self.inputs.index(b), vb)
                prod = (ba[:, None, :, None] * bb[None, :, None, :]).reshape(va.size * vb.size, -1)
                rows = np.zeros((prod.shape[0], len(index)))
                cols = [f"{ca}:{cb}" for ca, cb in product(self.input_columns(a), self.input_columns(b))]
                rows[:, [index[c] for c in cols]] = prod
                out[f"{a}:{b}"] = rows
        return out

    def column_bounds(self, ranges: dict[str, tuple[float, float]], points: int = 257
                      ) -> dict[str, tuple[float, float]]:
        """The range of every column whose inputs all have a declared range (:meth:`effect_grids`)."""
        out: dict[str, tuple[float, float]] = {}
        groups = self.groups
        for effect, rows in self.effect_grids(ranges, points).items():
            for j, col in enumerate(self.columns):
                if groups[j] == effect:
                    out[col] = (float(rows[:, j].min()), float(rows[:, j].max()))
        return out
