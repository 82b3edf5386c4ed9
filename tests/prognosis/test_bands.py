"""Banded category inputs (:class:`prognosis.Bands`): a measured value placed in its right-closed
band, as the Rotterdam tumour bank records tumour size (≤ 20, 20–50, > 50 mm); values the bands do
not cover refused in the input's words."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from federated.demo_study import DEMO_INPUTS
from prognosis import Bands, Coding, InputSpec

SIZE, GRADE = DEMO_INPUTS["tsize"], DEMO_INPUTS["tgrade"]


@pytest.mark.req("SRS-DEV-015")
@pytest.mark.parametrize(("mm", "band"), [(1.0, 0), (20.0, 0), (20.000001, 1), (35.0, 1), (50.0, 1),
                                          (50.5, 2), (120.0, 2)])
def test_a_size_falls_in_its_right_closed_band(mm: float, band: int) -> None:
    assert SIZE.band(mm) == band
    assert SIZE.categories is not None and SIZE.categories[band].code == ("<=20", "20-50", ">50")[band]


@pytest.mark.req("SRS-DEV-015")
@pytest.mark.parametrize(("grade", "band"), [(1.0, 0), (2.0, 0), (3.0, 1)])
def test_grades_one_and_two_share_a_band(grade: float, band: int) -> None:
    assert GRADE.band(grade) == band


@pytest.mark.req("SRS-DEV-015")
@pytest.mark.parametrize(("spec", "value", "why"), [
    (SIZE, 0.5, "Tumour size: 0.5 mm is outside the range this model was developed and validated for "
                "(1 to 120 mm)"),
    (SIZE, 121.0, "Tumour size: 121 mm is outside the range this model was developed and validated for "
                  "(1 to 120 mm)"),
    (SIZE, float("nan"), "Tumour size: nan is not a finite number"),
    (GRADE, 2.5, "Tumour grade: 2.5 is not a whole number (Tumour grade is a count or grade)"),
    (GRADE, 4.0, "Tumour grade: 4 is outside the range this model was developed and validated for (1 to 3)"),
])
def test_a_value_the_bands_do_not_cover_is_refused_in_words(spec: InputSpec, value: float, why: str) -> None:
    assert spec.band(value) == why


@pytest.mark.req("SRS-DEV-015")
def test_bands_are_declared_consistently() -> None:
    cats = [Coding(system="urn:x", code=c, display=c) for c in ("a", "b", "c")]
    with pytest.raises(ValidationError, match="one cut fewer than categories"):
        InputSpec(kind="category", categories=cats, bands=Bands(cuts=[5], min=0, max=10))
    with pytest.raises(ValidationError, match="strictly increasing"):
        Bands(cuts=[5, 3], min=0, max=10)
    with pytest.raises(ValidationError, match="strictly increasing"):
        Bands(cuts=[5, 12], min=0, max=10)  # a cut beyond the measured range
    with pytest.raises(ValidationError, match="one cut fewer than categories"):
        InputSpec(kind="quantity", bands=Bands(cuts=[5], min=0, max=10))
    with pytest.raises(ValueError, match="not a banded category"):
        DEMO_INPUTS["age"].band(50.0)
