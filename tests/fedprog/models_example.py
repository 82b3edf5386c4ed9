"""The README's "Models as published" example, verbatim; tests/fedprog/test_models_example.py runs it."""

import numpy as np
import pandas as pd

from federated.demo_study import ROTTERDAM_CSV, gbsg2_table, split
from fedprog import FederatedAalenJohansen, FederatedCoxPH, FederatedLogisticRegression, InputSpec, Site
from prognosis import Coding
from prognosis.inputs import Spline

table = gbsg2_table()  # tumour size as its band's index: <= 20, 20-50, > 50 mm
sites = [Site(name, part) for name, part in zip(["north", "south", "east"],
                                                split(table, shares=(0.34, 0.33, 0.33)), strict=True)]

# 1. Cox with a restricted cubic spline for age (knots declared in the study), tumour size dummy-coded
#    against its first band (not ordinal), and hormone therapy interacting with menopause
bands = [Coding(system="urn:example:size", code=b, display=f"{b} mm") for b in ("<=20", "20-50", ">50")]
inputs = {"age": InputSpec(min=21, max=80, reference=55, spline=Spline(knots=[45, 55, 65, 75])),
          "tsize": InputSpec(kind="category", categories=bands, min=0, max=2, reference=1),
          "pnodes": InputSpec(min=1, max=51, reference=3),
          "hormone_therapy": InputSpec(kind="boolean", min=0, max=1, reference=0),
          "postmenopausal": InputSpec(kind="boolean", min=0, max=1, reference=1)}
cox = FederatedCoxPH(max_time=5 * 365.25, inputs=inputs, horizons=[5 * 365.25],
                     interactions=[("hormone_therapy", "postmenopausal")])
cox.fit_sites(sites, time="time", event="event", covariates=list(inputs))
print(cox.summary_[["coef", "exp(coef)", "p"]].round(3))  # a row per column: age, age', tsize=20-50, …

# 2. The same model, every row missing a value left out at its hospital and counted
holes = [part.assign(pnodes=part["pnodes"].mask(part.index % 40 == 0)) for part in split(table)]
complete = FederatedCoxPH(max_time=5 * 365.25, missing="complete-case", shift_sparse_censoring=True)
complete.fit_sites([Site(f"h{i}", part) for i, part in enumerate(holes)], time="time", event="event",
                   covariates=["age", "pnodes"])
print("rows left out per hospital (rounded to k):", complete.fit_.incomplete)

# 3. Logistic regression of a binary outcome the hospitals recorded (here: grade 3 at diagnosis;
#    never a survival outcome cut at a horizon, which fedprog refuses)
table["grade3"] = table["tgrade"]  # the demo's grade band: 1 for grade 3
sites3 = [Site(name, part) for name, part in zip(["north", "south", "east"],
                                                 split(table, shares=(0.34, 0.33, 0.33)), strict=True)]
logistic = FederatedLogisticRegression(horizon=1.0, outcome="grade 3 at diagnosis")  # recorded on day 1
logistic.fit_sites(sites3, event="grade3", covariates=["age", "pnodes", "progrec", "estrec"])
print(logistic.summary_[["coef", "exp(coef)", "p"]].round(3))
print("P(grade 3) of the first three women:", np.round(logistic.predict_proba(table.iloc[:3])[:, 1], 3))

# 4. Competing risks: recurrence (cause 1), or death without recurrence first (cause 2), in the
#    Rotterdam tumour bank; over hospitals, fit_sites(sites, "years", "cause", event_of_interest=1,
#    causes=[1, 2]) — here one local table, as lifelines' AalenJohansenFitter.fit
rotterdam = pd.read_csv(ROTTERDAM_CSV)
relapse = rotterdam["recur"] == 1
years = np.where(relapse, rotterdam["rtime"], rotterdam["dtime"]) / 365.25
cause = np.where(relapse, 1, np.where(rotterdam["death"] == 1, 2, 0))
aj = FederatedAalenJohansen(time_unit="year").fit(years, cause, event_of_interest=1)
by_5 = float(aj.cumulative_density_at_times([5.0]).iloc[0])
print("cumulative incidence of recurrence by 5 years:", round(by_5, 3))

