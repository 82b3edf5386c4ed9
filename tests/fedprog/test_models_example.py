"""The README's "Models as published" example runs as printed, over real sites, and is quoted verbatim."""

from __future__ import annotations

import contextlib
import io
import runpy
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = Path(__file__).with_name("models_example.py")


@pytest.mark.req("SRS-MOD-001", "SRS-MOD-002", "SRS-MOD-003", "SRS-MOD-008", "SRS-MOD-015", "SRS-MOD-024")
def test_the_models_example_runs_and_the_readme_quotes_it() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ran = runpy.run_path(str(EXAMPLE), run_name="__main__")
    printed = out.getvalue()
    cox, logistic, table = ran["cox"], ran["logistic"], ran["table"]
    assert list(cox.params_.index[:5]) == ["age", "age'", "age''", "tsize=20-50", "tsize=>50"]
    assert "hormone_therapy:postmenopausal" in printed and "rows left out per hospital" in printed
    assert all(n % 5 == 0 for n in ran["complete"].fit_.incomplete.values())
    cov = ["age", "pnodes", "progrec", "estrec"]
    X = sm.add_constant(table[cov].astype(float))
    ref = sm.GLM(table["grade3"], X, family=sm.families.Binomial()).fit(tol=1e-13)
    assert np.max(np.abs(logistic.coef_[0] - ref.params.iloc[1:].to_numpy())) <= 1e-6
    from sksurv.nonparametric import cumulative_incidence_competing_risks

    times, cif = cumulative_incidence_competing_risks(ran["cause"], ran["years"])
    assert ran["by_5"] == pytest.approx(cif[1][np.searchsorted(times, 5.0, side="right") - 1], abs=1e-10)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "<!-- models-example -->" in readme
    assert EXAMPLE.read_text(encoding="utf-8").split('"""', 2)[2].strip() in readme
