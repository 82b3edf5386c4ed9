"""The model artifact follows the contract in DESIGN.md and is deterministic."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from federated import build_artifact, canonical_json, seal, verify_sha256, write_json_atomic
from federated.analyses.runner import train
from federated.demo_study import DEMO_INPUTS, split, write_demo_study


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    study = write_demo_study(tmp_path_factory.mktemp("ws"))
    return train(study)[1]


@pytest.mark.req("SRS-FED-007")
def test_contract_fields(demo: dict, gbsg2: pd.DataFrame) -> None:  # type: ignore[type-arg]
    a = demo
    assert a["schema"] == "fedprog.model/v1" and a["kind"] == "cox-ph"
    assert {"model_id", "version", "outcome", "inputs", "coefficients", "standard_errors",
            "covariance", "baseline_survival", "ties", "training", "sha256"} <= set(a)
    assert set(a["outcome"]) >= {"name", "time_unit", "horizons"}
    names = [i["name"] for i in a["inputs"]]
    assert names == list(DEMO_INPUTS) == list(a["coefficients"]) == list(a["standard_errors"])
    for item in a["inputs"]:
        assert {"name", "code", "unit", "kind", "min", "max"} <= set(item)
        assert set(item["code"]) == {"system", "code", "display"}
    cov = np.array(a["covariance"])
    assert cov.shape == (8, 8) and np.allclose(cov, cov.T)
    assert np.allclose(np.sqrt(np.diag(cov)), list(a["standard_errors"].values()))
    base = a["baseline_survival"]
    assert len(base["times"]) == len(base["survival"]) and len(base["center"]) == 8
    assert np.all(np.diff(base["times"]) > 0) and np.all(np.diff(base["survival"]) <= 0)
    t = a["training"]
    assert {"sites", "n", "events", "rounds", "converged", "secure_aggregation", "time_grid",
            "consent_checkpoint"} <= set(t)
    rows = _contributing(split(gbsg2))
    # counts are released rounded to a multiple of k = 5 (583 women, 242 events)
    assert (t["n"], t["events"]) == (585, 240) and (len(rows), int(rows["event"].sum())) == (583, 242)
    assert t["converged"] is True
    assert t["release"]["rounded_to_multiple_of"] == 5 and "training.n" in t["release"]["rounded"]
    # k-cells at the source: the demo's smallest hospital (103 women) has a cell of fewer than 5
    # women even on the yearly grid, so it does not contribute; the others agree on "year"
    assert t["sites"] == ["hospital-a", "hospital-b", "hospital-c"]
    assert [d["site"] for d in t["dropped"]] == ["hospital-d"] and "k-cells" in t["dropped"][0]["reason"]
    assert t["time_grid"] == "year" and "year grid" in t["exact_on"]
    assert t["secure_aggregation"] is True and t["policy"]["min_sites"] == 3


def _contributing(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The demo's contributing hospitals' rows as the sites use them: covariates clipped to their
    declared ranges, administratively censored at the study's max_time and coarsened to the yearly
    grid every site accepted (ground truth)."""
    from federated.site.data import coarsen

    rows = pd.concat(parts[:3], ignore_index=True)
    for name, spec in DEMO_INPUTS.items():  # winsorised to the declared envelope, as the sites do
        rows[name] = rows[name].clip(spec.min, spec.max)
    late = rows["time"] > 1826.25
    rows["event"] = np.where(late, 0, rows["event"])
    rows["time"] = coarsen(np.minimum(rows["time"].to_numpy(float), 1826.25), "year", "day")
    return rows


@pytest.mark.req("SRS-FED-007", "SRS-PRIV-011")
def test_survival_formula_in_the_contract_reproduces_the_fit(demo: dict, gbsg2: pd.DataFrame) -> None:  # type: ignore[type-arg]
    """S(t | x) = survival(t) ^ exp(β·(x − center)) equals lifelines' prediction on the same rows,
    with the times coarsened as the sites coarsened them (GBSG2 with defaults: to 1e-6)."""
    from lifelines import CoxPHFitter

    names = list(demo["coefficients"])
    beta = np.array(list(demo["coefficients"].values()))
    base = demo["baseline_survival"]
    rows = _contributing(split(gbsg2))
    x = rows[names].to_numpy(float)
    ours = np.array(base["survival"])[None, :] ** np.exp((x - base["center"]) @ beta)[:, None]
    ref = CoxPHFitter().fit(rows[[*names, "time", "event"]], "time", "event",
                            fit_options={"precision": 1e-12})
    assert np.max(np.abs(beta - ref.params_[names].to_numpy())) <= 1e-6
    theirs = ref.predict_survival_function(rows[names], times=base["times"]).to_numpy().T
    assert np.max(np.abs(ours - theirs)) <= 1e-6


@pytest.mark.req("SRS-FED-007")
def test_sha256_is_over_canonical_json_of_the_rest(demo: dict) -> None:  # type: ignore[type-arg]
    import hashlib

    rest = {k: v for k, v in demo.items() if k != "sha256"}
    want = hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert demo["sha256"] == want and verify_sha256(demo)
    tampered = json.loads(json.dumps(demo))
    tampered["coefficients"]["age"] += 1e-12
    assert not verify_sha256(tampered)


@pytest.mark.req("SRS-FED-007")
def test_same_inputs_give_the_same_hash(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a = train(write_demo_study(tmp_path / "one"))[1]
    b = train(write_demo_study(tmp_path / "two"))[1]
    assert a["sha256"] == b["sha256"]


@pytest.mark.req("SRS-FED-007")
def test_canonical_json_refuses_nan() -> None:
    assert canonical_json({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"é"],"b":1}'.encode()
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


@pytest.mark.req("SRS-FED-007")
def test_seal_recomputes_and_atomic_write_leaves_nothing_half_written(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sealed = seal({"x": 1, "sha256": "stale"})
    assert verify_sha256(sealed) and sealed["sha256"] != "stale"
    target = tmp_path / "m.json"
    write_json_atomic(target, sealed)
    with pytest.raises(ValueError):
        write_json_atomic(target, {"bad": float("inf")})
    assert json.loads(target.read_text()) == sealed
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


@pytest.mark.req("SRS-CLI-003")
def test_demo_split_rule_is_documented_and_stable(gbsg2: pd.DataFrame) -> None:
    parts = split(gbsg2)
    assert [len(p) for p in parts] == [274, 172, 137, 103]
    assert sum(len(p) for p in parts) == len(gbsg2)
    again = split(gbsg2)
    assert all(p.equals(q) for p, q in zip(parts, again, strict=True))


@pytest.mark.req("SRS-FED-007", "SRS-FED-003")
def test_stratified_artifact_has_one_baseline_per_stratum(tmp_path) -> None:  # type: ignore[no-untyped-def]
    study = write_demo_study(tmp_path).model_copy(update={"strata_by_site": True})
    fit, art = train(study)
    base = art["baseline_survival"]
    dropped = {d["site"] for d in art["training"]["dropped"]}
    contributing = [s.name for s in study.sites if s.name not in dropped]
    assert base["times"] == [] and [s["label"] for s in base["strata"]] == contributing
    assert len(contributing) >= 3
    assert art == build_artifact(fit, study)
