"""The demo's spline model on the risk page in headless Chromium: the age effect drawn over its
validated range with the patient's age marked, and the interaction as its own row of the drivers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from federated.demo_study import INTERACTION, SPLINE_MODEL
from tests.conftest import copy_workspace
from tests.fedprog.serving import serving

from .test_page_browser import LOW, browser, enter, launch, pytestmark, screenshot, stored, wait_for  # noqa: F401


@pytest.fixture(scope="module")
def spline_server(second_model_workspace: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[Path, str]]:
    folder = tmp_path_factory.mktemp("page-spline")
    ws = copy_workspace(second_model_workspace, folder / "ws")
    with serving(ws, folder / "serve.log", "--model", SPLINE_MODEL) as base:
        yield ws, base


@pytest.mark.req("SRS-MOD-005", "SRS-MOD-004", "SRS-MOD-007")
def test_the_page_draws_the_age_effect_and_the_interaction(spline_server: tuple[Path, str],
                                                           browser: Any) -> None:  # noqa: F811
    ws, base = spline_server
    model = httpx.get(base.removesuffix("/fhir") + "/app/model.json", timeout=30).json()
    assert model["ref"] == f"{SPLINE_MODEL}@1"
    launch(browser, ws, base, "page-spline")
    values = {**LOW, "age": 62, "hormone_therapy": True, "postmenopausal": True}
    enter(browser, values)
    wait_for(browser, "#result .headline")
    curve = wait_for(browser, '#effect-curves svg[data-effect="age"]')
    age = model["effects"][0]
    points = curve.find_element("css selector", "polyline").get_attribute("points").split()
    assert len(points) == len(age["x"])  # one point per published value, the whole validated range
    assert curve.find_element("css selector", "polygon")  # its 95% band
    dot = curve.find_element("css selector", "circle")
    assert 62.0 <= float(dot.get_attribute("data-value")) < 63.0  # her age, from the date of birth
    ra = stored(ws, base, "page-spline")
    rows = {r.get_attribute("data-input"): float(r.get_attribute("data-contribution"))
            for r in browser.find_elements("css selector", "#drivers tbody tr")}
    name = ":".join(INTERACTION)
    ext = next(e for e in ra["extension"] if e["url"].endswith("interaction-contribution"))
    assert rows[name] == next(x["valueDecimal"] for x in ext["extension"] if x["url"] == "contribution")
    assert "Hormone therapy × Postmenopausal (interaction)" in browser.find_element("id", "drivers").text
    assert len(rows) == len(model["inputs"]) + 1
    logs = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not logs, logs
    assert screenshot(browser, "risk-page-spline").stat().st_size > 20_000
