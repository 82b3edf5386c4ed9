"""Typed errors of the validation run; each message names the file, rule or setting."""

from __future__ import annotations


class ValidationRunError(ValueError):
    """The validation cannot run as asked (bad settings, no criteria, no source checkout)."""


class CriteriaError(ValidationRunError):
    """The acceptance criteria cannot be read (missing folder, invalid requirement YAML)."""


class VerificationError(ValidationRunError):
    """The software verification step cannot run (no checkout, no pytest, a timeout)."""
