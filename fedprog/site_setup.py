"""Adding a hospital to a workspace (``fedprog site add``): its table checked against the study,
its keys, and the recorded basis on which its patients' data are used.

Nothing is half-done: the table, the study's columns and the consent file are all checked before the
site is added, so a refusal leaves the workspace as it was.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from federated.exceptions import DataError

from .workspace import Workspace, WorkspaceError

if TYPE_CHECKING:
    import pandas as pd

    from consent.fhir import ConsentRecord
    from federated.site.tables import TableFormat
    from federated.study import StudySpec


def _basis_date(value: str | None) -> str:
    if value is None:
        return dt.date.today().isoformat()
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise WorkspaceError(f"--basis-date {value!r}: want an ISO date (YYYY-MM-DD)") from None


def _columns_needed(study: StudySpec | None, patient_column: str) -> list[str]:
    if study is None:
        return [patient_column]
    extra = [c for c in (study.strata, study.group) if c is not None]
    time = [] if study.time is None else [study.time]
    return [patient_column, *time, study.event, *study.covariates, *extra]


def check_table(table: pd.DataFrame, path: Path, study: StudySpec | None, patient_column: str) -> list[str]:
    """The table's patient ids, after checking it holds every column the study names and one row per
    patient (DataError, one line naming the file)."""
    missing = [c for c in _columns_needed(study, patient_column) if c not in table.columns]
    if missing:
        shown = ", ".join(map(str, table.columns[:12])) + (", …" if len(table.columns) > 12 else "")
        raise DataError(f"{path}: no column {missing[0]!r}"
                        f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''} — the study names "
                        f"it (columns: {shown})")
    ids = table[patient_column]
    if ids.isna().any():
        raise DataError(f"{path}: column {patient_column!r} has an empty patient identifier "
                        f"(row {int(ids.isna().to_numpy().argmax()) + 2})")
    text = ids.astype(str).str.strip()
    dup = text[text.duplicated()]
    if not dup.empty:
        raise DataError(f"{path}: patient {dup.iloc[0]!r} appears in more than one row "
                        f"(column {patient_column!r}); one row per patient")
    return text.tolist()


def _consents(path: Path, study: str) -> list[ConsentRecord]:
    from consent.fhir import from_bundle

    records = from_bundle(path.read_text(encoding="utf-8"))
    if not records:
        raise DataError(f"{path}: no Consent resource in the file")
    wrong = [r for r in records if r.study != study]
    if wrong:
        raise DataError(f"{path}: a Consent is for study {wrong[0].study!r}, not this workspace's {study!r} "
                        "(policy.uri / policyBasis)")
    return records


def add_site(ws_dir: Path, name: str, data: Path, *, consent: Path | None, legal_basis: str | None,
             basis_date: str | None, patient_column: str, table_format: TableFormat,
             external: bool = False) -> dict[str, Any]:
    """Check everything, then add the site and record its patients' consent or legal basis in its
    registry (anchored in the ledger as commitments) under a checkpoint its witness cosigns."""
    from federated.site.tables import read_table

    ws = Workspace(ws_dir)
    if name in ws.manifest["sites"]:
        raise WorkspaceError(f"site {name!r} is already in {ws_dir}")
    if (consent is None) == (legal_basis is None):
        raise WorkspaceError("say how this site's patients' data may be used: --consent FILE (their FHIR "
                             "Consent resources) or --legal-basis TEXT, exactly one of the two")
    if legal_basis is not None and not legal_basis.strip():
        raise WorkspaceError("--legal-basis: state the legal basis in words")
    fmt = table_format
    study = ws.study_settings() if ws.study_file is not None else None
    patients = check_table(read_table(data, fmt), data, study, patient_column)
    records = _consents(consent, ws.study) if consent is not None else []
    date = _basis_date(basis_date)

    basis = ({"kind": "consent", "file": str(consent.resolve())} if consent is not None
             else {"kind": "legal", "text": legal_basis.strip() if legal_basis else "", "from": date})
    ws.add_site(name, data.resolve(), patient_column=patient_column,
                table_format=fmt.model_dump(exclude_defaults=True), basis=basis, external=external)
    registry = ws.registry(name)
    try:
        if records:
            registry.import_resources(records)
        else:
            for patient in patients:
                registry.grant(patient, date=date, basis=basis["text"])
        statuses = {s.patient: s for s in registry.statuses()}
    finally:
        registry.close()
    ws.publish_checkpoint()
    in_table = [statuses.get(p) for p in patients]
    counts = {"permit": sum(1 for s in in_table if s is not None and s.active),
              "deny": sum(1 for s in in_table if s is not None and not s.active),
              "none": sum(1 for s in in_table if s is None)}
    how = (f"consent from {consent.name}" if consent is not None
           else f"legal basis: {basis['text']}")
    return {"site": name, "data": str(data.resolve()), "patients": len(patients), "consent": counts,
            "basis": how, "identity": ws.identity(name).public}
