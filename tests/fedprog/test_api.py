"""The public Python API: ``from fedprog import FederatedCoxPH, FederatedKaplanMeier, Site``."""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

import fedprog
from federated.analyses.artifact import verify_sha256
from federated.site.data import coarsen

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = Path(__file__).with_name("api_example.py")


@pytest.mark.req("SRS-API-001")
def test_the_estimators_and_site_are_importable_from_fedprog() -> None:
    from federated.analyses.estimator import FederatedCoxPH as Cox
    from federated.analyses.km_estimator import FederatedKaplanMeier as KM
    from federated.site.handler import Site as SiteClass
    from fedprog import FederatedCoxPH, FederatedKaplanMeier, Site

    assert (FederatedCoxPH, FederatedKaplanMeier, Site) == (Cox, KM, SiteClass)
    assert {"FederatedCoxPH", "FederatedKaplanMeier", "Site"} <= set(fedprog.__all__) <= set(dir(fedprog))
    for name in fedprog.__all__:
        assert getattr(fedprog, name) is not None
    with pytest.raises(AttributeError, match="module 'fedprog' has no attribute 'FederatedCox'"):
        fedprog.FederatedCox  # noqa: B018


@pytest.mark.req("SRS-API-001")
def test_import_fedprog_is_cheap_and_loads_no_command_line_code() -> None:
    """``import fedprog`` loads none of the estimators' dependencies nor the CLI; the first use does."""
    probe = ("import json, sys, fedprog\n"
             "before = sorted(m for m in sys.modules if m.split('.')[0] in "
             "{'federated', 'sklearn', 'pandas', 'typer', 'rich', 'fedprog'})\n"
             "fedprog.FederatedCoxPH\n"
             "after = sorted(m for m in sys.modules if m.split('.')[0] in {'fedprog', 'typer', 'sklearn'})\n"
             "print(json.dumps([before, after]))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                         timeout=120, check=True)
    before, after = json.loads(out.stdout)
    assert before == ["fedprog"]
    assert "sklearn.base" in after and not any(m.split(".")[0] in {"typer"} or m.startswith("fedprog.")
                                               for m in after)


@pytest.mark.req("SRS-API-004")
def test_the_readme_example_runs_and_its_fit_equals_lifelines_on_the_coarsened_times() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ran = runpy.run_path(str(EXAMPLE), run_name="__main__")
    printed = out.getvalue()
    cox, km, table = ran["cox"], ran["km"], ran["table"]
    assert printed.startswith("<fedprog.FederatedCoxPH: fitted over 3 site(s), 686 patients")
    assert "median survival:" in printed and "Harrell's C: 0.6" in printed
    assert cox.fit_.secure and not cox.fit_.dropped and verify_sha256(ran["artifact"])
    # the federated fit is the pooled fit on times coarsened to the rung every hospital accepted
    horizon, grid = 5 * 365.25, cox.fit_.time_grid
    pooled = table.assign(event=np.where(table["time"] > horizon, 0, table["event"]),
                          time=coarsen(np.minimum(table["time"].to_numpy(), horizon), grid, "day"))
    cov = ran["covariates"]
    ref = CoxPHFitter().fit(pooled[["time", "event", *cov]], "time", "event",
                            fit_options={"precision": 1e-18, "r_precision": 0.0})
    pd.testing.assert_frame_equal(cox.summary_, ref.summary, check_exact=False, rtol=1e-8, atol=1e-12)
    assert km.survival_function_.index[-1] == pytest.approx(horizon)


@pytest.mark.req("SRS-API-004")
def test_the_readme_quotes_the_example_verbatim() -> None:
    """Once README.md carries the marker ``<!-- api-example -->``, it must quote the example's code."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    if "<!-- api-example -->" not in readme:
        pytest.skip("README.md has no Python API section yet (marker <!-- api-example -->)")
    code = EXAMPLE.read_text(encoding="utf-8").split('"""', 2)[2].strip()
    assert code in readme
