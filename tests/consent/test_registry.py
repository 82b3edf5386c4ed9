"""The consent registry: versions, commitments, erasure, and enforcement at the sites."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from consent.commitment import commit
from consent.registry import ConsentRegistry, ConsentRegistryError
from federated import CohortSpec, Coordinator, InProcessTransport, PolicyError, Site, SiteError, fit_cox
from federated.protocol.messages import ConsentGate
from ledger.checkpoint import NoteSigner
from ledger.log import Ledger
from ledger.verify import verify_ledger
from tests.conftest import PERMISSIVE, PERMISSIVE_FLOORS, ROSSI_COVARIATES, approve, fed_cox, split_frame

STUDY = "urn:test:study"


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.sqlite", signer=NoteSigner.generate("test/log"), origin="test/log")


@pytest.fixture
def registry(tmp_path: Path, ledger: Ledger) -> ConsentRegistry:
    return ConsentRegistry(tmp_path / "sites" / "a", "a", STUDY, ledger)


@pytest.mark.req("SRS-CONS-002")
def test_versions_and_state_as_of_a_checkpoint(registry: ConsentRegistry, ledger: Ledger) -> None:
    registry.grant("p1", date="2026-01-01")
    registry.grant("p2", date="2026-01-01", decision="deny")
    size_before = ledger.size
    registry.revoke("p1", date="2026-02-01")
    assert registry.active_patients(size_before) == {"p1"}
    assert registry.active_patients(ledger.size) == set()
    history = registry.history("p1")
    assert [(r.version, r.status) for r in history] == [(1, "active"), (2, "inactive")]
    assert history[0].resource["id"] == history[1].resource["id"]
    assert history[1].resource["meta"]["versionId"] == "2"
    with pytest.raises(ConsentRegistryError, match="no active consent"):
        registry.revoke("p2", date="2026-02-01")


@pytest.mark.req("SRS-CONS-003", "RC-PRIV-001")
def test_ledger_holds_commitments_not_identifiers(registry: ConsentRegistry, ledger: Ledger,
                                                  tmp_path: Path) -> None:
    registry.grant("MRN-77231", date="2026-01-01")
    registry.revoke("MRN-77231", date="2026-01-02")
    kinds = [k for _, k, _ in ledger.entries()]
    assert kinds == ["consent", "revocation"]
    bodies = [b for _, _, b in ledger.entries()]
    assert bodies[0]["commitment"] != bodies[1]["commitment"]  # one fresh commitment per event
    openings = registry.linkage_proof("MRN-77231")
    assert [o.ledger_index for o in openings] == [0, 1]
    for opening, body in zip(openings, bodies, strict=True):
        assert body["commitment"] == commit(opening.salt_bytes, "a", STUDY, "MRN-77231")
    assert b"MRN-77231" not in b"".join(p.read_bytes() for p in tmp_path.glob("ledger.sqlite*"))
    other = ConsentRegistry(tmp_path / "sites" / "b", "b", STUDY, ledger)
    other.grant("MRN-77231", date="2026-01-01")
    salt = other.linkage_proof("MRN-77231")[0].salt_bytes
    assert ledger.entry(2)[1]["commitment"] == commit(salt, "b", STUDY, "MRN-77231") \
        != commit(salt, "a", STUDY, "MRN-77231")  # the site is bound into the commitment


@pytest.mark.req("SRS-CONS-003")
def test_erasure_shreds_the_link_but_not_the_proofs(registry: ConsentRegistry, ledger: Ledger) -> None:
    receipt = registry.grant("p9", date="2026-01-01")
    body = ledger.entry(receipt.index)[1]
    registry.erase("p9")
    assert registry.latest("p9") is None
    with pytest.raises(ConsentRegistryError, match="unknown or erased"):
        registry.linkage_proof("p9")
    assert ledger.entry(receipt.index)[1] == body  # the commitment stays, unopenable
    receipt.verify()
    assert ledger.receipt(receipt.index).root == ledger.root()
    assert verify_ledger(ledger).ok
    with pytest.raises(ConsentRegistryError, match="no such patient"):
        registry.erase("nobody")


def _consented_sites(parts: list[pd.DataFrame], tmp_path: Path, ledger: Ledger, refuse: int):  # type: ignore[no-untyped-def]
    sites = []
    for i, part in enumerate(parts):
        reg = ConsentRegistry(tmp_path / f"s{i}", f"s{i}", STUDY, ledger)
        for j, pid in enumerate(part["patient_id"]):
            reg.grant(pid, date="2026-01-01", decision="deny" if j < refuse else "permit")
        sites.append(Site(f"s{i}", part, consent=reg, floors=PERMISSIVE_FLOORS))
    ledger.checkpoint()  # the consent state the sites accept: the newest signed checkpoint
    return sites


@pytest.mark.req("SRS-CONS-004", "RC-CONS-002")
def test_sites_train_only_on_consented_patients(rossi: pd.DataFrame, tmp_path: Path, ledger: Ledger) -> None:
    df = rossi.assign(patient_id=[f"R{i:03d}" for i in range(len(rossi))])
    parts = split_frame(df, 3, seed=0)
    sites = _consented_sites(parts, tmp_path, ledger, refuse=5)
    gate = ConsentGate(size=ledger.size, root=ledger.root().hex(), job="job-1")
    cohort = CohortSpec(time="week", event="arrest", covariates=ROSSI_COVARIATES)
    coord = Coordinator(InProcessTransport(sites), session="c", protocol=approve(sites, [cohort]))
    fit = fit_cox(coord, cohort, policy=PERMISSIVE, consent=gate)
    assert fit.n == len(rossi) - 15 and fit.consent_checkpoint == {"size": ledger.size, "root": gate.root}
    ref = fed_cox([p.iloc[5:] for p in parts], cohort)
    assert np.max(np.abs(fit.coef - ref.coef)) <= 1e-10
    assert sites[0].consent.jobs_using(parts[0]["patient_id"].iloc[7]) == ["job-1"]  # type: ignore[union-attr]
    assert sites[0].consent.jobs_using(parts[0]["patient_id"].iloc[0]) == []  # type: ignore[union-attr]


@pytest.mark.req("SRS-CONS-004", "RC-CONS-002")
def test_requests_without_or_with_a_wrong_checkpoint_are_refused(rossi: pd.DataFrame, tmp_path: Path,
                                                                 ledger: Ledger) -> None:
    df = rossi.assign(patient_id=[f"R{i:03d}" for i in range(len(rossi))])
    sites = _consented_sites(split_frame(df, 3, seed=1), tmp_path, ledger, refuse=0)
    cohort = CohortSpec(time="week", event="arrest", covariates=("age",))
    protocol = approve(sites, [cohort])
    coord = Coordinator(InProcessTransport(sites), session="x", protocol=protocol)
    with pytest.raises(SiteError, match="this site answers only requests that name a consent") as err:
        fit_cox(coord, cohort, policy=PERMISSIVE)
    assert err.value.code == "consent"
    bad = ConsentGate(size=ledger.size, root="0" * 64, job="j")
    with pytest.raises(SiteError, match="does not match this site's ledger"):
        fit_cox(Coordinator(InProcessTransport(sites), session="y", protocol=protocol), cohort,
                policy=PERMISSIVE, consent=bad)
    plain = [Site("q", df, floors=PERMISSIVE_FLOORS)]
    good = ConsentGate(size=ledger.size, root=ledger.root().hex(), job="j")
    with pytest.raises((SiteError, PolicyError), match="no consent registry"):
        fit_cox(Coordinator(InProcessTransport(plain), session="z",
                            protocol=approve(plain, [cohort], secure=False)), cohort,
                policy=PERMISSIVE, consent=good)
