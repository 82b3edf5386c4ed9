"""The risk page end to end in headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by Selenium with their explicit paths, so nothing is downloaded): a real ``fedprog serve``
on loopback, an EHR launch (``fedprog launch``) through the SMART sign-in, a patient entered in
the form, the numbers on the page compared with the stored RiskAssessment, the refusal of an
out-of-range input, and screenshots (``build/screenshots/``) of a low- and a high-risk patient.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import copy_workspace
from tests.fedprog.serving import serving, token
from tests.fedprog.test_cli import run

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SHOTS = Path(__file__).resolve().parents[3] / "build" / "screenshots"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic", "--no-first-run", "--no-default-browser-check", "--window-size=1280,900")
WAIT = 20.0
#: demo patients (GBSG2 inputs in the model's units; tumour size and grade as the index of their band,
#: the option the page's select offers: size ≤ 20 / > 20-50 / > 50 mm, grade 1-2 / 3), inside the
#: intended-use envelope (age 27-79 a, pnodes 1-14, progrec 0-435, estrec 0-400): LOW is under 10 % at 5 years
#: (the "info" band of the CDS card), HIGH far above 30 % (the "critical" band)
#: (the age is not entered: the server computes it from the date of birth, born 1 January so that she
#: is the age shown plus less than a year)
LOW = {"age": 76, "tsize": 0, "tgrade": 0, "pnodes": 1, "progrec": 430, "estrec": 10,
       "hormone_therapy": True, "postmenopausal": True}
HIGH = {"age": 38, "tsize": 2, "tgrade": 1, "pnodes": 14, "progrec": 2, "estrec": 1,
        "hormone_therapy": False, "postmenopausal": False}
#: the clinical labels the page shows instead of the LOINC / SNOMED CT display names
LABELS = {"tsize": "Tumour size", "tgrade": "Tumour grade", "pnodes": "Positive lymph nodes",
          "progrec": "Progesterone receptor", "estrec": "Oestrogen receptor",
          "hormone_therapy": "Hormone therapy", "postmenopausal": "Postmenopausal"}
LOINC_DISPLAYS = ("Regional lymph nodes positive [#] Specimen", "Size Tumor",
                  "Histology grade [Identifier] in Cancer specimen",
                  "Progesterone receptor [Units/volume] in Tissue")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="Chromium is not installed here (make test installs Debian's chromium and chromium-driver "
           "when run as root; CI does)")


@pytest.fixture(scope="module")
def server(demo_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    folder = tmp_path_factory.mktemp("page")
    ws = copy_workspace(demo_workspace, folder / "ws")
    with serving(ws, folder / "serve.log") as base:
        yield ws, base


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="fedprog-chromium-")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # explicit driver path: Selenium Manager (which would go online) is never run
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: Any, css: str) -> Any:
    """The element once visible (within ``WAIT``). A node the page replaced between Chrome finding it and
    reading its visibility ("Node with given id does not belong to the document", a stale element) is
    looked up again, not taken as a failure: the element must still become visible in time."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException, WebDriverException)
                         ).until(ec.visibility_of_element_located((By.CSS_SELECTOR, css)))


def launch(driver: Any, ws: Path, base: str, patient: str) -> None:
    """Open the page as the EHR would, and let it sign in (SMART EHR launch with PKCE)."""
    res = run("launch", "--workspace", ws, "--patient", patient, "--user", "dr-house", "--base-url", base)
    assert res.returncode == 0, res.stderr
    driver.get(res.stdout.strip())
    wait_for(driver, "#inputs")
    assert f"Patient {patient}" in driver.find_element("id", "context").text
    assert driver.current_url == base.removesuffix("/fhir") + "/app/"  # code and state gone from the URL


def born(age: int) -> str:
    """The date of birth (1 January) of a woman ``age`` whole years old today."""
    return f"{datetime.now(UTC).year - age:04d}-01-01"


def enter(driver: Any, values: dict[str, Any], name: str = "Anna Example", sex: str = "female") -> None:
    """Fill the identity (name, date of birth from ``values["age"]``, sex) and the inputs; submit."""
    from selenium.webdriver.support.ui import Select

    identity = {"patient-name": name, "patient-birth": born(values["age"]) if "age" in values else ""}
    for field_id, text in identity.items():
        field = driver.find_element("id", field_id)
        field.clear()
        field.send_keys(text)
    Select(driver.find_element("id", "patient-sex")).select_by_value(sex)
    for key, value in ((k, v) for k, v in values.items() if k != "age"):
        field = driver.find_element("id", f"in-{key}")
        if field.tag_name == "select":
            choice = "true" if value is True else "false" if value is False else str(value)
            Select(field).select_by_value(choice)
        else:
            field.clear()
            field.send_keys(str(value))
    driver.find_element("id", "submit").click()


def screenshot(driver: Any, name: str) -> Path:
    """The whole page as a PNG (Chrome's own full-page capture)."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def stored(ws: Path, base: str, patient: str) -> dict[str, Any]:
    bearer = token(ws, base, "user/RiskAssessment.rs")
    found = httpx.get(f"{base}/RiskAssessment", params={"subject": f"Patient/{patient}"}, timeout=30,
                      headers={"Authorization": f"Bearer {bearer}", "Accept": "application/fhir+json"}).json()
    assert found["total"] >= 1
    return max((e["resource"] for e in found["entry"]), key=lambda r: r["occurrenceDateTime"])


@pytest.mark.req("SYS-PAGE-001")
@pytest.mark.req("SRS-PAGE-001", "SRS-PAGE-002", "SRS-PAGE-004", "SRS-PAGE-006", "SRS-PAGE-007")
@pytest.mark.parametrize("label, values", [("low-risk", LOW), ("high-risk", HIGH)])
def test_the_page_shows_the_stored_risk_assessment(server: tuple[Path, str], browser: Any, label: str,
                                                   values: dict[str, Any]) -> None:
    ws, base = server
    patient = f"page-{label}"
    launch(browser, ws, base, patient)
    enter(browser, values)
    wait_for(browser, "#result .headline")
    ra = stored(ws, base, patient)
    model = httpx.get(base.removesuffix("/fhir") + "/app/model.json", timeout=30).json()
    by_h = {p["whenRange"]["high"]["value"]: p for p in ra["prediction"]}
    assert len(by_h) >= 40  # the curve's points, asked as horizons, are in the RiskAssessment
    cards = browser.find_elements("css selector", "#headlines .headline")
    assert [float(c.get_attribute("data-horizon")) for c in cards] == [h["value"] for h in model["horizons"]]
    for card in cards:
        pred = by_h[float(card.get_attribute("data-horizon"))]
        interval = pred["extension"][0]["valueRange"]
        assert float(card.get_attribute("data-risk")) == pred["probabilityDecimal"]
        assert float(card.get_attribute("data-lower")) == interval["low"]["value"]
        assert float(card.get_attribute("data-upper")) == interval["high"]["value"]
        n = round(100 * pred["probabilityDecimal"])
        assert f"{n} of 100 patients like this one have recurrence or death within" in card.text
        assert "95% interval" in card.text
    contributions = {r.get_attribute("data-input"): float(r.get_attribute("data-contribution"))
                     for r in browser.find_elements("css selector", "#drivers tbody tr")}
    expected = {b["reference"].split("/")[-1]: b["extension"][0]["valueDecimal"] for b in ra["basis"]
                if b.get("extension")}
    assert sorted(contributions.values()) == sorted(expected.values())
    assert len(contributions) == len(model["inputs"])
    who = browser.find_element("id", "result-patient").text  # the identity, to confirm the right patient
    age = values["age"]
    assert who == f"For Anna Example · born {born(age)} ({age} years) · female · Patient/{patient}"
    form, drivers = browser.find_element("id", "fields").text, browser.find_element("id", "drivers").text
    assert all(label in form and label in drivers for label in LABELS.values())
    assert not any(display in form or display in drivers for display in LOINC_DISPLAYS)
    assert f"{values['age']} years (from the date of birth)" in drivers
    assert browser.find_element("id", "curve-title").text == "Free of recurrence or death over time"
    about = browser.find_element("id", "about").text
    assert model["sha256"] in about and model["ref"] in about and "Intended use" in about
    assert "adult women with primary, non-metastatic, node-positive invasive breast cancer" in about
    page = browser.find_element("tag name", "body").text  # each caveat stated once, in one place
    assert model["limitations"] and all(page.count(caveat) == 1 for caveat in model["limitations"])
    assert "event ending" not in page
    assert browser.find_element("id", "about-released").text not in ("", "not recorded")
    assert browser.find_element("css selector", "#curve svg polygon")  # the interval band
    assert not browser.find_element("id", "refusal").is_displayed()
    logs = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not logs, logs
    assert screenshot(browser, f"risk-page-{label}").stat().st_size > 20_000


@pytest.mark.req("SRS-PAGE-003", "SRS-PAGE-007", "SRS-DEV-014")
def test_an_out_of_range_input_is_refused_by_name_and_no_number_is_shown(server: tuple[Path, str],
                                                                         browser: Any) -> None:
    ws, base = server
    launch(browser, ws, base, "page-refused")
    enter(browser, {**LOW, "pnodes": 0})  # the model was validated from 1 positive node
    refusal = wait_for(browser, "#refusal")
    assert ("Positive lymph nodes: this model was developed for node-positive patients; 0 positive nodes "
            "is outside it") in refusal.text
    assert "pnodes" not in refusal.text and "Regional lymph nodes" not in refusal.text
    assert browser.find_element("id", "in-pnodes").get_attribute("aria-invalid") == "true"
    assert not browser.find_element("id", "result").is_displayed()
    assert not browser.find_elements("css selector", "#result:not([hidden]) .headline")
    screenshot(browser, "risk-page-refused")
    enter(browser, {**LOW, "progrec": "twelve"})
    assert "is not a number" in wait_for(browser, "#refusal").text


@pytest.mark.req("SRS-PAGE-001")
def test_the_page_loads_nothing_from_another_origin_and_prints(server: tuple[Path, str],
                                                               browser: Any) -> None:
    ws, base = server
    launch(browser, ws, base, "page-print")
    enter(browser, LOW)
    wait_for(browser, "#result .headline")
    origin = base.removesuffix("/fhir")
    urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(origin) for u in urls), urls
    labelled = browser.execute_script(
        "return [...document.querySelectorAll('#fields input, #fields select')]"
        ".every(c => document.querySelector(`label[for='${c.id}']`))")
    assert labelled is True
    pdf = base64.b64decode(browser.print_page())
    assert pdf.startswith(b"%PDF-") and len(pdf) > 10_000


@pytest.mark.req("SYS-PAGE-001")
@pytest.mark.req("SRS-PAGE-001")
def test_stand_alone_the_page_takes_a_pasted_token(server: tuple[Path, str], browser: Any) -> None:
    ws, base = server
    page = base.removesuffix("/fhir") + "/app/"
    browser.get(page)
    browser.execute_script("sessionStorage.clear()")
    browser.get(page)
    box = wait_for(browser, "#token-box")
    assert "Demonstration mode" in box.text
    browser.find_element("id", "token").send_keys(token(ws, base, "user/RiskAssessment.c"))
    patient = browser.find_element("id", "patient-id")
    patient.clear()
    patient.send_keys("stand-alone-1")
    enter(browser, HIGH)
    card = wait_for(browser, "#headlines .headline")
    by_h = {p["whenRange"]["high"]["value"]: p["probabilityDecimal"]
            for p in stored(ws, base, "stand-alone-1")["prediction"]}
    assert float(card.get_attribute("data-risk")) == by_h[float(card.get_attribute("data-horizon"))]


@pytest.mark.req("SRS-DEV-007", "SRS-PAGE-001")
def test_a_model_flagged_retrain_due_shows_a_notice_and_stays_usable(demo_workspace: Path, tmp_path: Path,
                                                                     browser: Any) -> None:
    ws = copy_workspace(demo_workspace, tmp_path / "ws")
    res = run("consent", "revoke", "--site", "hospital-a", "--patient", "A-0002", "--workspace", ws)
    assert res.returncode == 0, res.stderr
    with serving(ws, tmp_path / "serve.log") as base:
        browser.get(base.removesuffix("/fhir") + "/app/")
        notice = wait_for(browser, "#retrain-notice")
        assert "Retraining due" in notice.text and "withdrawn consent" in notice.text
        wait_for(browser, "#inputs")  # the model is still in service: the form is offered
        screenshot(browser, "risk-page-retrain-due")


@pytest.mark.req("SRS-PAGE-006", "SRS-DEV-011")
@pytest.mark.parametrize("sex, reason", [
    ("male", "The patient's recorded sex is male; this model was developed for women (adult women with "
             "primary, non-metastatic, node-positive invasive breast cancer after surgery), so no risk is "
             "given"),
    ("", "The patient's sex is not recorded (Patient/page-sex- has no gender); this model was developed for "
         "women")])
def test_a_patient_of_another_or_no_recorded_sex_is_refused_in_words(server: tuple[Path, str], browser: Any,
                                                                    sex: str, reason: str) -> None:
    ws, base = server
    patient = f"page-sex-{sex}"
    launch(browser, ws, base, patient)
    enter(browser, LOW, name="Adam Example", sex=sex)
    refusal = wait_for(browser, "#refusal")
    assert reason.replace("page-sex-", patient) in refusal.text
    assert browser.find_element("id", "patient-sex").get_attribute("aria-invalid") == "true"
    assert not browser.find_element("id", "result").is_displayed()
    if sex == "male":
        screenshot(browser, "risk-page-refused-sex")
