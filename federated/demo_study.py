"""The bundled demo study: the GBSG2 breast-cancer cohort split into four hospitals.

GBSG2 (German Breast Cancer Study Group 2; Schumacher et al. 1994, J R Stat Soc A 157:85)
ships with scikit-survival: 686 women with node-positive breast cancer, recurrence-free
survival in days. **Split rule**: rows are shuffled with ``numpy.random.default_rng(SEED)``
and cut into four uneven hospitals of 40 %, 25 %, 20 % and 15 % (274, 172, 137, 103 women).
Categorical columns are encoded as numbers: hormone therapy yes → 1, postmenopausal → 1,
tumour grade I/II/III → 1/2/3. Each hospital numbers its own patients (``patient_id``
``A-0001``, …), identifiers that stay in the hospital. **Consent**: every woman agreed to the
study except those :func:`declined` picks (about 3 %, seeded), who refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from federated.study import Coding, InputSpec, IntendedUse, SiteSource, StudySpec

SEED = 20261129
HOSPITALS = ("hospital-a", "hospital-b", "hospital-c", "hospital-d")
SHARES = (0.40, 0.25, 0.20, 0.15)

_LOINC, _SNOMED = "http://loinc.org", "http://snomed.info/sct"
#: Declared intended-use envelope and codes of each demo input.
#: the intended-use envelope: the span of the (node-positive) GBSG2 cohort whose first and last
#: tenth hold at least k = 5 women at one hospital (coverage is k-safe at the source), so the
#: release gate can show training patients there; women outside it are outside the study population
#: declared inputs; ``reference`` is the reference patient the released model is centred on
#: (a 55-year-old postmenopausal woman, grade 2 tumour of 25 mm, 3 positive nodes, receptors 30/40
#: fmol/mg, no hormone therapy), as published prognostic models state one
#: (``title`` is each input's name on the page and in refusals; ``below`` words a node count under 1)
NODE_NEGATIVE = "this model was developed for node-positive patients; {value} positive nodes is outside it"
DEMO_INPUTS: dict[str, InputSpec] = {
    "age": InputSpec(code=Coding(system=_LOINC, code="30525-0", display="Age"),
                     unit="a", min=27, max=79, reference=55, title="Age"),
    "tsize": InputSpec(code=Coding(system=_LOINC, code="21889-1", display="Size Tumor"),
                       unit="mm", min=3, max=65, reference=25, title="Tumour size"),
    "tgrade": InputSpec(code=Coding(system=_LOINC, code="33732-9",
                                    display="Histology grade [Identifier] in Cancer specimen"),
                        unit="1", kind="integer", min=1, max=3, reference=2, title="Tumour grade"),
    "pnodes": InputSpec(code=Coding(system=_LOINC, code="21893-3",
                                    display="Regional lymph nodes positive [#] Specimen"),
                        unit="1", kind="integer", min=1, max=21, reference=3,
                        title="Positive lymph nodes", below=NODE_NEGATIVE),
    "progrec": InputSpec(code=Coding(system=_LOINC, code="16112-5",
                                     display="Progesterone receptor [Units/volume] in Tissue"),
                         unit="fmol/mg", min=0, max=450, reference=30,
                         title="Progesterone receptor"),
    "estrec": InputSpec(code=Coding(system=_LOINC, code="16113-3",
                                    display="Estrogen receptor [Units/volume] in Tissue"),
                        unit="fmol/mg", min=0, max=550, reference=40,
                        title="Oestrogen receptor"),
    "hormone_therapy": InputSpec(code=Coding(system=_SNOMED, code="169413002",
                                             display="Hormone therapy"), kind="boolean",
                                 min=0, max=1, reference=0, title="Hormone therapy"),
    "postmenopausal": InputSpec(code=Coding(system=_SNOMED, code="76498008",
                                            display="Postmenopausal state"), kind="boolean",
                                min=0, max=1, reference=1, title="Postmenopausal"),
}


#: what the device enforces of the intended purpose (regulatory/manufacturer.yaml states all of it):
#: women only (GBSG2 enrolled women), results at most a year old at the assessment (the model predicts
#: from primary treatment), and the event named as a clinician says it (GBSG2's endpoint: recurrence
#: or death, whichever came first)
DEMO_INTENDED_USE = IntendedUse(
    population="adult women with primary, non-metastatic, node-positive invasive breast cancer after surgery",
    sex="female", max_observation_age_days=365, event="recurrence or death")


def gbsg2_table() -> pd.DataFrame:
    """GBSG2 with numeric columns ``time`` (days) and ``event`` (1 = recurrence or death)."""
    from sksurv.datasets import load_gbsg2

    x, y = load_gbsg2()
    return pd.DataFrame({
        "age": x["age"].astype(float), "tsize": x["tsize"].astype(float),
        "tgrade": x["tgrade"].map({"I": 1, "II": 2, "III": 3}).astype(int),
        "pnodes": x["pnodes"].astype(float), "progrec": x["progrec"].astype(float),
        "estrec": x["estrec"].astype(float),
        "hormone_therapy": (x["horTh"] == "yes").astype(int),
        "postmenopausal": (x["menostat"] == "Post").astype(int),
        "time": y["time"].astype(float), "event": y["cens"].astype(int),
    })


def split(table: pd.DataFrame, shares: tuple[float, ...] = SHARES, seed: int = SEED) -> list[pd.DataFrame]:
    """Shuffle rows with ``seed`` and cut them into consecutive parts of the given shares."""
    order = np.random.default_rng(seed).permutation(len(table))
    cuts = np.round(np.cumsum(shares)[:-1] * len(table)).astype(int)
    return [table.iloc[part].reset_index(drop=True) for part in np.split(order, cuts)]


STUDY_ID = "urn:fedprog:study:gbsg2-recurrence"


def declined(patients: list[str], seed: int = SEED) -> set[str]:
    """The demo patients who refused consent (about 3 %, drawn with ``seed``)."""
    rng = np.random.default_rng(seed + 1)
    return {p for p, u in zip(patients, rng.uniform(size=len(patients)), strict=True) if u < 0.03}


def write_demo_study(folder: Path) -> StudySpec:
    """Write each hospital's CSV under ``folder/sites/<name>/data.csv``; return the study."""
    sites = []
    for name, part in zip(HOSPITALS, split(gbsg2_table()), strict=True):
        path = folder / "sites" / name / "data.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        letter = name.rsplit("-", 1)[-1].upper()
        ids = pd.Series([f"{letter}-{i + 1:04d}" for i in range(len(part))], name="patient_id")
        pd.concat([ids, part], axis=1).to_csv(path, index=False)
        sites.append(SiteSource(name=name, path=path))
    return StudySpec(model_id="gbsg2-recurrence", version="1", sites=sites, time="time",
                     event="event", covariates=list(DEMO_INPUTS), ties="efron", time_unit="day",
                     outcome="recurrence-free survival", horizons=[1095.75, 1826.25],
                     max_time=1826.25, inputs=DEMO_INPUTS, intended_use=DEMO_INTENDED_USE)
