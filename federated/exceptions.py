"""Typed errors of the federated engine; each message names the site, file, field or rule."""

from __future__ import annotations


class FederatedError(Exception):
    """Base class: every error the engine raises on purpose derives from it."""


class DataError(FederatedError, ValueError):
    """A site's data or a study setting is unusable (missing file, unknown column, …)."""


class ProtocolError(FederatedError, ValueError):
    """A message failed validation: wrong schema version, shape, NaN/inf, unknown field."""


class SiteError(FederatedError):
    """A site refused a request or answered with an error; ``site`` names it."""

    def __init__(self, site: str, message: str, code: str = "refused",
                 refusals: dict[str, tuple[str, str]] | None = None) -> None:
        super().__init__(f"site {site!r}: {message}")
        self.site = site
        self.reason = message
        self.code = code
        #: every site that refused in the same round: site -> (code, message)
        self.refusals = refusals if refusals is not None else {site: (code, message)}


class SingularDesignError(FederatedError, ValueError):
    """The information matrix is singular: collinear or constant covariates."""


class ConvergenceError(FederatedError):
    """Newton–Raphson could not make progress (non-finite step or likelihood)."""
