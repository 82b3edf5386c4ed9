"""The bundled demo study: the GBSG2 breast-cancer cohort split into four hospitals, and the
Rotterdam tumour bank as a hospital that never trains.

GBSG2 (German Breast Cancer Study Group 2; Schumacher et al. 1994, J R Stat Soc A 157:85)
ships with scikit-survival: 686 women with node-positive breast cancer, recurrence-free
survival in days. **Split rule**: rows are shuffled with ``numpy.random.default_rng(SEED)``
and cut into four uneven hospitals of 40 %, 25 %, 20 % and 15 % (274, 172, 137, 103 women).
Categorical columns are encoded as numbers: hormone therapy yes → 1, postmenopausal → 1.
**Coding shared with the external cohort** (the Rotterdam tumour bank records tumour size only in
three bands and grade only as 2 or 3): tumour size is its band (0: ≤ 20 mm, 1: > 20–50 mm,
2: > 50 mm) and grade is 0 for grade I–II, 1 for grade III — the coding Royston & Altman (2013, BMC
Med Res Methodol 13:33) used for these two cohorts. Each hospital numbers its own patients
(``patient_id`` ``A-0001``, …), identifiers that stay in the hospital. **Consent**: every woman
agreed to the study except those :func:`declined` picks (about 3 %, seeded), who refused.

**External hospital** (:func:`rotterdam_table`, :func:`write_external_site`): the Rotterdam tumour
bank (2982 women operated 1978–1993; ``data/rotterdam.csv``, provenance in ``data/README.md``) with
all its patients — the device's intended-use envelope (node-positive, inside the declared ranges)
picks whom the model is validated on. Its outcome is coded as GBSG2's: recurrence-free survival, the
time to recurrence (``rtime``) for a recurrence, else to death or last follow-up (``dtime``), the
event a recurrence or a death (as the R package ``survival`` documents this data set).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from federated.study import Coding, InputSpec, IntendedUse, SiteSource, StudySpec
from prognosis import Bands
from prognosis.inputs import Spline

SEED = 20261129
HOSPITALS = ("hospital-a", "hospital-b", "hospital-c", "hospital-d")
SHARES = (0.40, 0.25, 0.20, 0.15)

_LOINC, _SNOMED = "http://loinc.org", "http://snomed.info/sct"
_SIZE, _GRADE = "urn:fedprog:code:tumour-size-band", "urn:fedprog:code:histological-grade-band"
#: Declared intended-use envelope and codes of each demo input.
#: the intended-use envelope: the widest span of the (node-positive) GBSG2 cohort whose every tenth
#: holds at least k = 5 consented women at one training hospital (coverage is k-safe at the source),
#: so the release gate finds training patients throughout (RC-INPUT-005): 1-14 positive nodes (the
#: tenth 15-17 of the earlier 1-21 held fewer than 5 at every hospital), progesterone receptor 0-435
#: and oestrogen receptor 0-400 fmol/mg; women outside it are outside the study population
#: declared inputs; ``reference`` is the reference patient the released model is centred on
#: (a 55-year-old postmenopausal woman, grade 1–2 tumour of over 20 to 50 mm, 3 positive nodes,
#: receptors 30/40 fmol/mg, no hormone therapy), as published prognostic models state one; tumour
#: size and grade are banded as the external cohort records them (a hospital's table holds the band's
#: index; the device takes the measured value — a size up to 120 mm, the largest in GBSG2, a whole
#: grade 1–3 — and puts it in its band)
#: (``title`` is each input's name on the page and in refusals; ``below`` words a node count under 1)
NODE_NEGATIVE = "this model was developed for node-positive patients; {value} positive nodes is outside it"
DEMO_INPUTS: dict[str, InputSpec] = {
    "age": InputSpec(code=Coding(system=_LOINC, code="30525-0", display="Age"),
                     unit="a", min=27, max=79, reference=55, title="Age"),
    "tsize": InputSpec(code=Coding(system=_LOINC, code="21889-1", display="Size Tumor"),
                       unit="mm", kind="category", ordinal=True, min=0, max=2, reference=1,
                       title="Tumour size",
                       categories=[Coding(system=_SIZE, code="<=20", display="20 mm or less"),
                                   Coding(system=_SIZE, code="20-50", display="over 20 to 50 mm"),
                                   Coding(system=_SIZE, code=">50", display="over 50 mm")],
                       bands=Bands(cuts=[20, 50], min=1, max=120)),
    "tgrade": InputSpec(code=Coding(system=_LOINC, code="33732-9",
                                    display="Histology grade [Identifier] in Cancer specimen"),
                        unit="1", kind="category", ordinal=True, min=0, max=1, reference=0,
                        title="Tumour grade",
                        categories=[Coding(system=_GRADE, code="1-2", display="grade 1 or 2"),
                                    Coding(system=_GRADE, code="3", display="grade 3")],
                        bands=Bands(cuts=[2], min=1, max=3, whole=True)),
    "pnodes": InputSpec(code=Coding(system=_LOINC, code="21893-3",
                                    display="Regional lymph nodes positive [#] Specimen"),
                        unit="1", kind="integer", min=1, max=14, reference=3,
                        title="Positive lymph nodes", below=NODE_NEGATIVE),
    "progrec": InputSpec(code=Coding(system=_LOINC, code="16112-5",
                                     display="Progesterone receptor [Units/volume] in Tissue"),
                         unit="fmol/mg", min=0, max=435, reference=30,
                         title="Progesterone receptor"),
    "estrec": InputSpec(code=Coding(system=_LOINC, code="16113-3",
                                    display="Estrogen receptor [Units/volume] in Tissue"),
                        unit="fmol/mg", min=0, max=400, reference=40,
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


def gbsg2_table(banded: bool = True) -> pd.DataFrame:
    """GBSG2 with numeric columns ``time`` (days) and ``event`` (1 = recurrence or death); tumour size
    and grade in the bands both cohorts record (the demo's coding), or with ``banded=False`` as
    scikit-survival ships them (size in mm, grade 1/2/3)."""
    from sksurv.datasets import load_gbsg2

    x, y = load_gbsg2()
    size, grade = x["tsize"].astype(float), x["tgrade"].map({"I": 1, "II": 2, "III": 3}).astype(int)
    return pd.DataFrame({
        "age": x["age"].astype(float),
        "tsize": size.map(DEMO_INPUTS["tsize"].band).astype(int) if banded else size,
        "tgrade": grade.map(DEMO_INPUTS["tgrade"].band).astype(int) if banded else grade,
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
                     max_time=1826.25, inputs=DEMO_INPUTS, intended_use=DEMO_INTENDED_USE,
                     shift_sparse_censoring=True)


#: the demo's second model: age as a restricted cubic spline with knots declared a priori at 45, 55, 65
#: and 75 years (inside the intended-use range 27–79; linear beyond the outer knots; a first knot at 35
#: would leave fewer than k = 5 censored women aged 35 or less at every hospital, and each would refuse
#: the design, :func:`federated.disclosure.cells.design_cells`), and the interaction
#: of hormone therapy with menopausal status (tamoxifen's benefit differs before and after the
#: menopause; Sauerbrei & Royston 1999, J R Stat Soc A 162:71, analysed it in this cohort)
SPLINE_MODEL = "gbsg2-recurrence-spline"
AGE_KNOTS = (45.0, 55.0, 65.0, 75.0)
INTERACTION = ("hormone_therapy", "postmenopausal")


def spline_study(study: StudySpec) -> StudySpec:
    """The demo study's second model (:data:`SPLINE_MODEL`): the same sites, outcome and inputs, age as
    a restricted cubic spline at :data:`AGE_KNOTS`, and the interaction :data:`INTERACTION`."""
    age = study.inputs["age"].model_copy(update={"spline": Spline(knots=list(AGE_KNOTS))})
    return study.model_copy(update={"model_id": SPLINE_MODEL, "version": "1",
                                    "inputs": {**study.inputs, "age": age},
                                    "interactions": [INTERACTION]})


#: a logistic model on the demo's hospitals (for tests; not part of ``fedprog demo``): the probability
#: that the surgical specimen's tumour is grade 3, a binary outcome the hospitals recorded at surgery
#: (``tgrade``), from the size band, positive nodes and the progesterone receptor — a recorded outcome,
#: never a survival outcome cut at a horizon. The receptor enters as a restricted cubic spline (knots
#: at 5, 40 and 200 fmol/mg): linear in it, the model's calibration slope inside the intended-use
#: range was 1.40 (values above 435 fmol/mg are clipped in training and outside the envelope in
#: validation), with the spline 1.00
LOGISTIC_MODEL = "gbsg2-grade3"
LOGISTIC_COVARIATES = ("tsize", "pnodes", "progrec")
PROGREC_KNOTS = (5.0, 40.0, 200.0)


def logistic_study(study: StudySpec) -> StudySpec:
    """A logistic study (:data:`LOGISTIC_MODEL`) on the demo study's sites and declared inputs: the
    outcome ``tgrade`` (1 = grade 3), recorded at surgery (horizon 1 day), no time column."""
    use = DEMO_INTENDED_USE.model_copy(update={"event": "a grade 3 tumour in the surgical specimen"})
    return StudySpec.model_validate({
        **study.model_dump(), "model_id": LOGISTIC_MODEL, "version": "1", "model": "logistic", "time": None,
        "event": "tgrade", "covariates": list(LOGISTIC_COVARIATES), "outcome": "grade 3 tumour at surgery",
        "horizons": [1.0], "max_time": None, "shift_sparse_censoring": False,
        "intended_use": use.model_dump(), "inputs": {
            n: {**study.inputs[n].model_dump(), **({"spline": {"knots": list(PROGREC_KNOTS)}}
                                                    if n == "progrec" else {})}
            for n in LOGISTIC_COVARIATES}})


EXTERNAL_SITE = "rotterdam"
#: where the external cohort is kept in the repository (with its provenance and licence note)
ROTTERDAM_CSV = Path(__file__).resolve().parents[1] / "data" / "rotterdam.csv"
#: the legal basis the external hospital declares for the retrospective use of its tumour bank
EXTERNAL_BASIS = ("retrospective use of the tumour bank for research (GDPR Art. 9(2)(j) and national "
                  "research law); demo declaration")


def rotterdam_table(path: Path = ROTTERDAM_CSV) -> pd.DataFrame:
    """The Rotterdam tumour bank (2982 women operated 1978–1993; ``data/rotterdam.csv``, provenance in
    ``data/README.md``) as an external hospital's table: the demo study's columns, tumour size and
    grade coded as the demo's inputs (:data:`DEMO_INPUTS`), and its outcome coded as GBSG2's (see the
    module docstring)."""
    r = pd.read_csv(path)
    bands = [c.code for c in DEMO_INPUTS["tsize"].categories or []]
    size = r["size"].map({code: i for i, code in enumerate(bands)})
    if size.isna().any():
        raise ValueError(f"{path}: tumour size bands other than {bands}")
    recurred = r["recur"] == 1
    return pd.DataFrame({
        "patient_id": [f"R-{int(p):04d}" for p in r["pid"]],
        "age": r["age"].astype(float), "tsize": size.astype(int), "tgrade": (r["grade"] == 3).astype(int),
        "pnodes": r["nodes"].astype(float), "progrec": r["pgr"].astype(float),
        "estrec": r["er"].astype(float), "hormone_therapy": r["hormon"].astype(int),
        "postmenopausal": r["meno"].astype(int),
        "time": np.where(recurred, r["rtime"], r["dtime"]).astype(float),
        "event": (recurred | (r["death"] == 1)).astype(int),
    })


def write_external_site(folder: Path) -> Path:
    """Write the external hospital's table to ``folder/sites/rotterdam/data.csv``; its path."""
    path = folder / "sites" / EXTERNAL_SITE / "data.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rotterdam_table().to_csv(path, index=False)
    return path
