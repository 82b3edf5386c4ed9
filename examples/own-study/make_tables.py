"""Writes the three hospital tables and hospital A's consent file of the "Your own study" walk
(README) from ``data/rotterdam.csv``, exported the way hospitals export: hospital A as a plain
UTF-8 CSV, hospital B from a German-language Excel (``;``-separated, decimal comma, Windows-1252),
hospital C as tab-separated text. Run from the repository root: ``python examples/own-study/make_tables.py``.

Split rule: rows shuffled with ``numpy.random.default_rng(20261207)`` and cut 45 % / 35 % / 20 %.
Hospital A's patients gave FHIR consent (about 2 % refused, drawn with the same seed); hospitals B
and C use the data under a legal basis their operators declare (``fedprog site add --legal-basis``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20261207
HERE = Path(__file__).resolve().parent
STUDY = "urn:fedprog:study:rotterdam-os"
COLUMNS = ["patient_id", "department", "age", "meno", "grade", "nodes", "pgr", "er", "hormon", "chemo",
           "dtime", "death"]


def main() -> None:
    data = pd.read_csv(HERE.parents[1] / "data" / "rotterdam.csv")
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(data))
    parts = np.split(order, np.round(np.cumsum([0.45, 0.35])[:] * len(data)).astype(int))
    for letter, rows, dept in zip("abc", parts, ("Oncology", "Gynäkologie", "Chirurgie générale"),
                                  strict=True):
        t = data.iloc[np.sort(rows)].reset_index(drop=True)
        t.insert(0, "department", dept)
        t.insert(0, "patient_id", [f"{letter.upper()}-{int(p):05d}" for p in t["pid"]])
        t = t[COLUMNS]
        path = HERE / f"hospital-{letter}.csv"
        if letter == "a":
            t.to_csv(path, index=False)
        elif letter == "b":
            t.to_csv(path, index=False, sep=";", decimal=",", encoding="cp1252")
        else:
            t.to_csv(path, index=False, sep="\t")
        if letter == "a":
            refused = rng.uniform(size=len(t)) < 0.02
            lines = [json.dumps({
                "resourceType": "Consent", "id": f"consent-{p}", "status": "active",
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                      "code": "research"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                "patient": {"identifier": {"value": p}}, "dateTime": "2025-06-01",
                "policy": [{"uri": STUDY}], "provision": {"type": "deny" if no else "permit"}},
                sort_keys=True) for p, no in zip(t["patient_id"], refused, strict=True)]
            (HERE / "consents-a.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
