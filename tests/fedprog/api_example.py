"""The README's "Python API" example, verbatim; tests/fedprog/test_api.py runs it."""

from sklearn.base import clone
from sksurv.util import Surv

from federated.demo_study import gbsg2_table, split
from fedprog import FederatedCoxPH, FederatedKaplanMeier, Site

# Three hospitals, each holding its own table (a DataFrame, or the path of a CSV or Parquet
# file). Here: the GBSG2 breast-cancer cohort that ships with scikit-survival, split in three.
tables = split(gbsg2_table(), shares=(0.34, 0.33, 0.33))
sites = [Site(name, table) for name, table in zip(["north", "south", "east"], tables, strict=True)]
covariates = ["age", "tsize", "pnodes", "progrec", "hormone_therapy"]

# Federated fit. Secure aggregation and the disclosure rules are on by default: times are
# coarsened until every cell a hospital sends holds 0 or at least 5 of its patients.
cox = FederatedCoxPH(ties="efron", max_time=5 * 365.25)
cox.fit_sites(sites, time="time", event="event", covariates=covariates)
cox.print_summary()                          # lifelines' layout
print(cox.summary_[["exp(coef)", "p"]])      # a DataFrame with lifelines' column names
artifact = cox.to_artifact()                 # the sealed fedprog.model/v1 model
print(artifact["sha256"])

# The same estimator in scikit-survival's convention, on one local table
table = gbsg2_table()
X, y = table[covariates], Surv.from_arrays(table["event"] == 1, table["time"])
local = clone(cox).set_params(ties="breslow").fit(X, y)
print("Harrell's C:", round(local.score(X, y), 3))
curves = local.predict_survival_function(X.iloc[:3])  # StepFunctions, as scikit-survival's
print([round(float(curve(3 * 365.25)), 3) for curve in curves])  # 3-year survival

# Kaplan–Meier over the same hospitals
km = FederatedKaplanMeier(max_time=5 * 365.25)
km.fit_sites(sites, time="time", event="event")
print(km.survival_function_)
print("median survival:", km.median_survival_time_, "days")
