"""The settings of a fedprog Flower deployment. They come from Flower's configs, checked
here with pydantic:

* each SuperNode's **node config** names its site and the rules it holds: ``site``,
  ``data-path``, optionally ``patient-column``, ``workspace`` (the hospital's fedprog workspace:
  its consent registry ``sites/<site>/consent.sqlite``, its witness key
  ``sites/<site>/witness.key``, its identity key, its approved studies and the ledger),
  ``identity-key`` (the site's 32-byte Ed25519 seed file; default
  ``<workspace>/sites/<site>/identity.key``), ``approved`` (one approved-study JSON file,
  :class:`~federated.disclosure.rules.StudyProtocol`, or a folder of them; default the workspace's
  ``sites/<site>/approved/``), ``floors`` (a JSON file of the operator's own
  :class:`~federated.disclosure.rules.SiteFloors`; default the built-in floors), ``transcript-dir``
  and how the site's CSV is written: ``delimiter`` (default detected), ``decimal`` (``.`` or ``,``),
  ``encoding`` (default UTF-8) — :class:`~federated.site.tables.TableFormat`.
  A node with no approved study refuses every request (``not-approved``);
* the **run config** holds the study: ``study`` (study file at the coordinator), ``protocol``
  (the approved study's JSON, as the sites approved it; default, with a ``workspace``, the
  workspace's protocol of the study), ``out`` (folder for the results), ``jobs`` (``cox``,
  ``km``, ``validate``, comma-separated), ``sites``, ``workspace``, ``model``, ``n-boot`` and the
  waits, each in seconds: ``connect-timeout`` (every site's SuperNode to join, default 120),
  ``probe-timeout`` (a node that joined to answer the request for its site, default the connect
  timeout) and ``round-timeout`` (each round's replies and each witness's cosignature, default the
  study's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from federated.disclosure.rules import SiteFloors, SiteIdentity, StudyProtocol
from federated.site import flower as flower_site
from federated.site.handler import Site
from federated.site.tables import TableFormat
from federated.study import first_error

Job = Literal["cox", "km", "validate"]


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def _csv(value: object) -> object:
    return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


class _FlowerConfig(BaseModel):
    """Settings read from a Flower config (kebab-case keys); errors are one line naming it."""

    model_config = ConfigDict(extra="forbid", alias_generator=_kebab, frozen=True)
    WHAT: ClassVar[str] = "config"

    @classmethod
    def _raw(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        return dict(config)

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Self:
        try:
            return cls.model_validate(cls._raw(config))
        except ValidationError as exc:
            raise ValueError(f"{cls.WHAT}: {first_error(exc)}") from None


class NodeSettings(_FlowerConfig):
    """A SuperNode's ``--node-config``: which site it serves, where that site's files are, and the
    rules its operator set (identity key, approved studies, floors)."""

    WHAT = "node config"

    site: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data_path: Path
    patient_column: str = "patient_id"
    workspace: Path | None = None
    identity_key: Path | None = None
    approved: Path | None = None
    floors: Path | None = None
    budget: Path | None = None
    transcript_dir: Path | None = None
    delimiter: str | None = None
    decimal: Literal[".", ","] = "."
    encoding: str | None = None

    @model_validator(mode="after")
    def _readable(self) -> Self:
        self.table_format()
        return self

    def table_format(self) -> TableFormat:
        """How the site's CSV is written (``delimiter``, ``decimal``, ``encoding``)."""
        return TableFormat(delimiter=self.delimiter, decimal=self.decimal, encoding=self.encoding)

    def identity(self) -> SiteIdentity | None:
        """The site's Ed25519 identity key (``None``: neither ``identity-key`` nor a workspace)."""
        if self.identity_key is not None:
            return read_setting(self, "identity-key", self.identity_key, SiteIdentity.from_file)
        if self.workspace is not None:
            from .workspace import Workspace

            return Workspace(self.workspace).identity(self.site)
        return None

    def approvals(self) -> list[StudyProtocol]:
        """The studies the site's operator approved (none: the site refuses every request)."""
        if self.approved is None:
            if self.workspace is None:
                return []
            from .workspace import Workspace

            return Workspace(self.workspace).approvals(self.site)
        where = self.approved
        files = sorted(where.glob("*.json")) if where.is_dir() else [where]
        return [read_setting(self, "approved", f, lambda p: StudyProtocol.model_validate_json(p.read_bytes()))
                for f in files]

    def site_floors(self) -> SiteFloors | None:
        if self.floors is None:
            return None
        return read_setting(self, "floors", self.floors,
                            lambda p: SiteFloors.model_validate_json(p.read_bytes()))

    def check(self) -> None:
        """Refuse (``ValueError``, one line) a node whose rules cannot work: a file that cannot be
        read, or an approved study that pins another identity key for this site than its own."""
        identity = self.identity()
        mine = identity.public if identity is not None else None
        for protocol in self.approvals():
            pinned = protocol.peers.get(self.site)
            if pinned is not None and pinned != mine:
                why = "another identity key" if mine else "an identity key, and the node has none " \
                      "(set identity-key or workspace)"
                raise ValueError(f"{self.WHAT}: approved study {protocol.study_id!r} "
                                 f"({protocol.sha256[:12]}) pins {why} for site {self.site!r}")
        self.site_floors()

    def budget_file(self) -> Path:
        """Where the site records the rounds and evaluations it spent per study: ``budget``, else in
        the workspace's site folder, else beside the data file (a ClientApp lives for one message,
        so a budget in memory would be no budget)."""
        if self.budget is not None:
            return self.budget
        if self.workspace is not None:
            return self.workspace / "sites" / self.site / "budget.json"
        return self.data_path.with_name(f"{self.data_path.stem}.fedprog-budget.json")

    def privacy_file(self) -> Path:
        """The site's differential-privacy accountant over all studies, beside its budget file
        (``<workspace>/sites/<site>/privacy.json`` in a workspace)."""
        budget = self.budget_file()
        name = budget.name.replace("budget", "privacy") if "budget" in budget.name \
            else f"{budget.stem}.privacy.json"
        return budget.with_name(name)

    def site_factory(self) -> flower_site.SiteFactory:
        identity, approved, floors = self.identity(), self.approvals(), self.site_floors()
        fmt = self.table_format()
        budget, privacy = self.budget_file(), self.privacy_file()

        def make(keygen: flower_site.KeyGen, append_transcript: bool, transcript: bool = True) -> Site:
            consent, witnessed = None, None
            if self.workspace is not None:  # its consent, as of its own witness's freshest checkpoint
                from .workspace import Workspace

                ws = Workspace(self.workspace)
                consent, witnessed = ws.registry(self.site), partial(ws.witnessed, self.site)
            return Site(self.site, self.data_path, transcript_dir=self.transcript_dir if transcript else None,
                        consent=consent, patient_column=self.patient_column, keygen=keygen,
                        append_transcript=append_transcript, identity=identity, approved=approved,
                        floors=floors, witnessed=witnessed, budget=budget, privacy=privacy, table_format=fmt)
        return make


T = TypeVar("T")


def read_setting(settings: _FlowerConfig, key: str, path: Path, load: Callable[[Path], T]) -> T:
    """``load(path)``, its failure as one line naming the config key and the file."""
    try:
        return load(path)
    except ValidationError as exc:
        raise ValueError(f"{settings.WHAT}: {key} {path}: {first_error(exc)}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{settings.WHAT}: {key} {path}: {exc}".splitlines()[0]) from None


class RunSettings(_FlowerConfig):
    """A run's ``--run-config`` (the ServerApp's settings); ``""`` means not set."""

    WHAT = "run config"

    study: Path
    protocol: Path | None = None
    out: Path
    jobs: list[Job] = Field(default=["cox"], min_length=1)
    sites: list[str] = Field(default_factory=list)
    connect_timeout: float = Field(default=120.0, gt=0)
    probe_timeout: float | None = Field(default=None, gt=0)
    round_timeout: float | None = Field(default=None, gt=0)
    workspace: Path | None = None
    model: str | None = None
    n_boot: int = Field(default=1000, ge=0)

    _split = field_validator("jobs", "sites", mode="before")(_csv)

    @classmethod
    def _raw(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if v != ""}


