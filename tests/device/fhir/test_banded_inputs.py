"""A banded input on the FHIR endpoint: the EHR sends the measured tumour size (any length unit)
or grade, or the band's code; the model scores the band; a value the bands do not cover is refused
in clinical words (a 422, never a silent band)."""

from __future__ import annotations

from typing import Any

import pytest

from device.fhir.inputs import extract
from device.model import PrognosticModel
from tests.device.fhir.conftest import DEMO_VALUES
from tests.device.fhir.test_inputs import AS_OF, entry_of, patient_bundle, refusal

pytestmark = pytest.mark.req("SRS-DEV-015")


@pytest.mark.parametrize(("value", "unit", "band", "text"), [
    (20, "mm", 0, "20 mm -> 20 mm or less"),
    (2.1, "cm", 1, "2.1 cm -> 21 mm -> over 20 to 50 mm"),
    (50, "mm", 1, "50 mm -> over 20 to 50 mm"),
    (5.1, "cm", 2, "5.1 cm -> 51 mm -> over 50 mm"),
])
def test_a_measured_size_is_scored_as_its_band(demo_model: PrognosticModel, value: float, unit: str,
                                                band: int, text: str) -> None:
    got = extract(demo_model, patient_bundle({**DEMO_VALUES, "tsize": value}, units={"tsize": unit}), AS_OF)
    assert got.values[demo_model.names.index("tsize")] == band
    assert got.sources["tsize"] == f"Observation/p1-tsize 21889-1 = {text}"


def test_the_band_code_is_accepted_and_scores_the_same(demo_model: PrognosticModel) -> None:
    coded = extract(demo_model, patient_bundle({**DEMO_VALUES, "tsize": "20-50"}), AS_OF)
    measured = extract(demo_model, patient_bundle({**DEMO_VALUES, "tsize": 35.0}), AS_OF)
    assert list(coded.values) == list(measured.values)
    assert coded.sources["tsize"] == "Observation/p1-tsize 21889-1 = over 20 to 50 mm -> 1"


@pytest.mark.parametrize(("grade", "band"), [(1, 0), (2, 0), (3, 1)])
def test_a_grade_is_scored_as_grade_three_or_not(demo_model: PrognosticModel, grade: int, band: int) -> None:
    bundle = patient_bundle({**DEMO_VALUES, "tgrade": grade})
    i, obs = entry_of(bundle, "tgrade")
    del obs["valueQuantity"]
    obs["valueInteger"] = grade  # as an EHR may send a grade
    got = extract(demo_model, bundle, AS_OF)
    assert got.values[demo_model.names.index("tgrade")] == band


@pytest.mark.parametrize(("values", "units", "diagnostics"), [
    ({"tsize": 13.0}, {"tsize": "cm"},
     "Tumour size: 130 mm is outside the range this model was developed and validated for (1 to 120 mm)"),
    ({"tgrade": 2.5}, None, "Tumour grade: 2.5 is not a whole number (Tumour grade is a count or grade)"),
    ({"tgrade": 4}, None, "Tumour grade: 4 is outside the range this model was developed and validated "
                          "for (1 to 3)"),
])
def test_a_value_the_bands_do_not_cover_is_refused(demo_model: PrognosticModel, values: dict[str, Any],
                                                   units: dict[str, str] | None, diagnostics: str) -> None:
    bundle = patient_bundle({**DEMO_VALUES, **values}, units=units)
    (name,) = values
    i, _ = entry_of(bundle, name)
    err = refusal(extract, demo_model, bundle, AS_OF)
    assert err.status == 422 and err.code == "business-rule"
    assert err.diagnostics == diagnostics
    assert err.expression == [f"Bundle.entry[{i}].resource.valueQuantity"]
