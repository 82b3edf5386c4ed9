"""Every locked runtime version has a review of its published anomalies (IEC 62304 §7.1.2, §8.1.2)."""

from __future__ import annotations

import json
from datetime import date
from importlib import resources

import pytest
from typer.testing import CliRunner

from fedprog.cli import app
from traceability.installed import RUNTIME_LOCK, Pin, read_lock
from traceability.soup import Review, load_reviews, review_problems

pytestmark = pytest.mark.req("SRS-SOUP-004")
H = "0" * 64


def _review(version: str, status: str = "open") -> Review:
    return Review(version=version, date=date(2026, 12, 7), reviewer="QA lead", sources=["the tracker"],
                  status=status, result="what was searched and found")  # type: ignore[arg-type]


def test_every_runtime_pin_is_reviewed_at_exactly_its_locked_version() -> None:
    runtime, reviews = read_lock(RUNTIME_LOCK), load_reviews()
    assert review_problems(runtime, reviews) == []
    assert set(reviews) == set(runtime)
    assert all(reviews[name].version == pin.version for name, pin in runtime.items())


def test_a_missing_review_another_version_or_an_unlocked_review_is_a_problem() -> None:
    runtime = {"numpy": Pin("numpy", "2.0", (H,)), "scipy": Pin("scipy", "1.17", (H,)),
               "pandas": Pin("pandas", "2.3", (H,))}
    reviews = {"numpy": _review("2.0"), "scipy": _review("1.16"), "gone": _review("1.0")}
    assert review_problems(runtime, reviews) == [
        "pandas 2.3: locked in requirements/runtime.lock but not reviewed in traceability/soup_review.yaml",
        "scipy: soup_review.yaml reviewed 1.16 but 1.17 is locked",
        "gone: reviewed in soup_review.yaml but not in requirements/runtime.lock",
    ]


def test_each_review_names_sources_status_and_result_and_no_registry() -> None:
    text = resources.files("traceability").joinpath("soup_review.yaml").read_text("utf-8")
    for host in ("pypi.org", "pythonhosted", "/simple", "/opt/"):
        assert host not in text, host
    for name, review in load_reviews().items():
        assert review.sources and review.reviewer and len(review.result) >= 10, name
        if review.status == "open":  # an open review claims nothing either way
            assert "not consulted" in review.result, name
        else:  # a finding names what was searched
            assert any("query" in s for s in review.sources), name


@pytest.mark.parametrize(("text", "message"), [
    ("numpy: {version: '2.0', date: 2026-12-07, reviewer: QA lead, sources: [x], status: fine, "
     "result: nothing relevant found}", r"^soup_review.yaml: numpy: status: Input should be"),
    ("numpy: {version: '2.0', date: 2026-12-07, reviewer: QA lead, sources: [], status: open, "
     "result: not consulted at all}", r"^soup_review.yaml: numpy: sources: List should have at least 1"),
    ("numpy: {version: '2.0', reviewer: QA lead, sources: [x], status: open, result: not consulted at all}",
     r"^soup_review.yaml: numpy: date: Field required$"),
])
def test_a_malformed_review_is_one_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_reviews(text)


def test_soup_check_fails_on_a_review_of_another_version(monkeypatch: pytest.MonkeyPatch) -> None:
    reviews = load_reviews()
    stale = {**reviews, "numpy": reviews["numpy"].model_copy(update={"version": "0.1"})}
    monkeypatch.setattr("traceability.soup.load_reviews", lambda: stale)
    result = CliRunner().invoke(app, ["trace", "soup", "--check", "--json"])
    assert result.exit_code == 1
    locked = read_lock(RUNTIME_LOCK)["numpy"].version
    assert json.loads(result.stdout)["problems"] == [
        f"numpy: soup_review.yaml reviewed 0.1 but {locked} is locked"]
