"""Shared helpers of the FHIR tests: the demo model and real FHIR R4 patient Bundles built from values.

:func:`patient_bundle` turns ``{"tsize": 25.0, "hormone_therapy": True, …}`` into a Bundle of one
Patient and one Observation per value, coded with the model inputs' LOINC / SNOMED CT codings and
UCUM units; :func:`observation` builds a single Observation for tests that need odd ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from device.fhir import examples
from device.fhir.auth import TokenVerifier, load_or_create_key
from device.fhir.examples import SNOMED
from device.fhir.http import ServerState
from device.fhir.service import FixedModel
from device.fhir.store import FhirStore
from device.model import InputSpec, PrognosticModel, load_model
from federated.demo_study import DEMO_INPUTS
from tests.device.test_model import demo_artifact, reseal

if TYPE_CHECKING:
    from device.fhir.denylist import TokenDenyList

#: an admissible demo patient, in the model's units
DEMO_VALUES: dict[str, Any] = {"age": 54.0, "tsize": 25.0, "tgrade": 2, "pnodes": 3, "progrec": 120.0,
                               "estrec": 80.5, "hormone_therapy": True, "postmenopausal": False}

#: SNOMED CT histologic grades G1 / G2 / G3 (the category variant of ``tgrade``)
GRADES = [{"system": SNOMED, "code": "54102005", "display": "G1 grade"},
          {"system": SNOMED, "code": "1288008", "display": "G2 grade"},
          {"system": SNOMED, "code": "61026006", "display": "G3 grade"}]


def covariates(model: PrognosticModel, values: dict[str, Any]) -> list[float]:
    """The covariate vector the model scores for measured ``values`` (model order): a banded input's
    value is its band's index (:meth:`prognosis.InputSpec.band`), others as they are."""
    return [float(s.band(values[s.name]) if s.bands is not None else values[s.name]) for s in model.inputs]


def demo_inputs() -> list[InputSpec]:
    """The demo study's inputs as the device declares them (no training needed)."""
    return [InputSpec.model_validate({
        "name": name, "code": spec.code.model_dump() if spec.code else None, "unit": spec.unit,
        "kind": spec.kind, "min": spec.min, "max": spec.max,
        "categories": [c.model_dump() for c in spec.categories] or None,
        "bands": spec.bands.model_dump() if spec.bands else None})
        for name, spec in DEMO_INPUTS.items()]


def patient_bundle(values: dict[str, Any], *, inputs: Sequence[InputSpec] | None = None,
                   **kw: Any) -> dict[str, Any]:
    """:func:`device.fhir.examples.patient_bundle` over the demo inputs unless ``inputs`` are given."""
    return examples.patient_bundle(inputs if inputs is not None else demo_inputs(), values, **kw)


@pytest.fixture(scope="session")
def demo_model() -> PrognosticModel:
    """The demo study's real, trained model."""
    return load_model(demo_artifact())


@pytest.fixture(scope="session")
def category_model() -> PrognosticModel:
    """The demo model with ``tgrade`` declared as a category (SNOMED CT G1/G2/G3, index 0…2)."""
    art = demo_artifact()
    for item in art["inputs"]:
        if item["name"] == "tgrade":
            item.update(kind="category", unit="1", min=None, max=None, categories=GRADES)
            item.pop("coverage", None)
            item.pop("bands", None)  # G1/G2/G3 coded, not measured
    return load_model(reseal(art))


@pytest.fixture(scope="session")
def unlimited_model() -> PrognosticModel:
    """The demo model without its intended-use block (no sex, no maximum result age), as a model of
    a study that declares none is."""
    art = demo_artifact()
    del art["intended_use"]
    return load_model(reseal(art))


#: the demo inputs that are counts (kind ``integer``: whole numbers only; the grade is a banded
#: category whose measured value must be whole)
INTEGER_INPUTS = ("pnodes",)


@pytest.fixture(scope="session")
def integer_model() -> PrognosticModel:
    """The demo model with ``tgrade`` and ``pnodes`` declared ``integer`` (as the study declares them
    once federated.study.InputSpec.kind allows it)."""
    art = demo_artifact()
    for item in art["inputs"]:
        if item["name"] in INTEGER_INPUTS:
            item["kind"] = "integer"
    return load_model(reseal(art))


def server_state(folder: Path, model: PrognosticModel, audience: str = "http://testserver/fhir",
                 denylist: TokenDenyList | None = None) -> tuple[ServerState, ec.EllipticCurvePrivateKey]:
    """A ServerState serving ``model`` (token key and FHIR store under ``folder``) and its signing key."""
    key = load_or_create_key(folder / "token.pem")
    verifier = TokenVerifier(key.public_key(), audience, denylist=denylist)
    st = ServerState(base_url=audience, verifier=verifier,
                     store=FhirStore(folder / "fhir.sqlite"), models=FixedModel(model),
                     software_version="test", started="2026-11-29T00:00:00Z")
    return st, key
