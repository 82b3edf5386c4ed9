"""The README's "Models as published" example, verbatim; tests/fedprog/test_models_example.py runs it."""

import numpy as np

from federated.demo_study import gbsg2_table, split
from fedprog import FederatedCoxPH, FederatedLogisticRegression, InputSpec, Site
from prognosis import Coding
from prognosis.inputs import Spline

table = gbsg2_table(banded=False)  # tumour size in mm, grade 1/2/3 as scikit-survival ships them
table["grade"] = table["tgrade"] - 1  # a category's value is the index of its level
sites = [Site(name, part) for name, part in zip(["north", "south", "east"],
                                                split(table, shares=(0.34, 0.33, 0.33)), strict=True)]

# 1. Cox with a restricted cubic spline for age (knots declared in the study), tumour grade
#    dummy-coded against grade 1 (not ordinal), and hormone therapy interacting with grade
grades = [Coding(system="urn:example:grade", code=g, display=f"grade {g}") for g in ("1", "2", "3")]
inputs = {"age": InputSpec(min=21, max=80, reference=55, spline=Spline(knots=[35, 45, 55, 65])),
          "grade": InputSpec(kind="category", categories=grades, min=0, max=2, reference=1),
          "pnodes": InputSpec(min=1, max=51, reference=3),
          "hormone_therapy": InputSpec(kind="boolean", min=0, max=1, reference=0)}
cox = FederatedCoxPH(max_time=5 * 365.25, inputs=inputs, interactions=[("grade", "hormone_therapy")],
                     horizons=[5 * 365.25])
cox.fit_sites(sites, time="time", event="event", covariates=list(inputs))
print(cox.summary_[["coef", "exp(coef)", "p"]].round(3))  # one row per column: age, age', age'', grade=2, …

# 2. The same model, every row missing a value left out at its hospital and counted
holes = [part.assign(pnodes=part["pnodes"].mask(part.index % 40 == 0)) for part in split(table)]
complete = FederatedCoxPH(max_time=5 * 365.25, missing="complete-case", shift_sparse_censoring=True)
complete.fit_sites([Site(f"h{i}", part) for i, part in enumerate(holes)], time="time", event="event",
                   covariates=["age", "pnodes"])
print("rows left out per hospital (rounded to k):", complete.fit_.incomplete)

# 3. Logistic regression of a binary outcome the hospitals recorded (here: grade 3 at diagnosis;
#    never a survival outcome cut at a horizon, which fedprog refuses)
table["grade3"] = (table["tgrade"] == 3).astype(int)
sites3 = [Site(name, part) for name, part in zip(["north", "south", "east"],
                                                 split(table, shares=(0.34, 0.33, 0.33)), strict=True)]
logistic = FederatedLogisticRegression(horizon=1.0, outcome="grade 3 at diagnosis")  # recorded on day 1
logistic.fit_sites(sites3, event="grade3", covariates=["age", "pnodes", "progrec", "estrec"])
print(logistic.summary_[["coef", "exp(coef)", "p"]].round(3))
print("P(grade 3) of the first three women:", np.round(logistic.predict_proba(table.iloc[:3])[:, 1], 3))
