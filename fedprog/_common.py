"""Shared pieces of the command layer: consoles, workspace, one-line user errors."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

#: exit codes of every command (DESIGN.md)
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print ``fedprog: error: message`` on stderr and return the Exit to raise."""
    print(f"fedprog: error: {message}", file=sys.stderr)
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the packages' typed errors into one line on stderr and exit code 2 (or 1)."""
    from federated.exceptions import ConvergenceError, FederatedError
    from federated.protocol.secagg import SecAggOverflow

    try:
        yield
    except ConvergenceError as exc:
        raise fail(str(exc), EXIT_CHECK_FAILED) from None
    except (FederatedError, SecAggOverflow) as exc:
        raise fail(str(exc)) from None
    except ValueError as exc:
        if isinstance(exc, _package_errors()):
            raise fail(str(exc)) from None
        raise
    except OSError as exc:
        raise fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) from None
    except sqlite3.DatabaseError as exc:  # a damaged database file: one line, never a traceback
        raise fail(f"a database file is damaged or not a database ({exc})") from None


#: user-facing error types of the packages, by module (checked only once a module is loaded,
#: so a command never imports a package just to be able to catch its errors)
_USER_ERRORS = {
    "consent.fhir": ("ConsentError",), "consent.registry": ("ConsentRegistryError",),
    "device.registry": ("RegistryError",), "ledger.checkpoint": ("CheckpointError",),
    "ledger.log": ("LedgerError",), "ledger.merkle": ("InvalidProof",),
    "ledger.witness": ("ForkDetected", "WitnessStateError"), "fedprog.workspace": ("WorkspaceError",),
}


def _package_errors() -> tuple[type[Exception], ...]:
    """The user-facing error classes of every package module loaded so far."""
    return tuple(getattr(sys.modules[mod], name) for mod, names in _USER_ERRORS.items()
                 if mod in sys.modules for name in names)


def workspace(path: Path | None) -> Path:
    """``--workspace``, else ``$FEDPROG_WORKSPACE``, else ``./fedprog-workspace``."""
    if path is not None:
        return path
    env = os.environ.get("FEDPROG_WORKSPACE")
    return Path(env) if env else Path("fedprog-workspace")
