"""Shared pieces of the command layer: consoles, workspace, one-line user errors."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from federated.site.tables import TableFormat

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
        if type(exc).__name__ == "ValidationError" and type(exc).__module__.startswith("pydantic"):
            from federated.study import first_error

            raise fail(first_error(exc)) from None  # type: ignore[arg-type]
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
    "ledger.signatures": ("SignatureError",),
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


class Progress:
    """A live status line on stderr for a step that can take a while — what runs, the federated
    round (when called as ``on_round``) and the seconds elapsed; silent when stderr is not a
    terminal (scripts and CI see only the result)."""

    def __init__(self, what: str) -> None:
        from rich.console import Console
        from rich.progress import Progress as Live
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        console = Console(stderr=True)
        self.what = what
        self.live = Live(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                         console=console, transient=True) if console.is_terminal else None
        self.task = self.live.add_task(f"{what} …") if self.live is not None else None

    def __enter__(self) -> Progress:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def __call__(self, round_: int, kind: str) -> None:
        self.update(f"round {round_} ({kind})")

    def update(self, step: str) -> None:
        """Say which step runs now."""
        if self.live is not None and self.task is not None:
            self.live.update(self.task, description=f"{self.what}: {step}")


#: how a site's CSV is written (:class:`federated.site.tables.TableFormat`), the same flags everywhere
DelimiterOpt = Annotated[str | None, typer.Option(
    "--delimiter", help="Field separator of the CSV (default: detected among , ; tab |).")]
DecimalOpt = Annotated[str | None, typer.Option(
    "--decimal", help="Decimal mark of the CSV: . or , (default .)")]
EncodingOpt = Annotated[str | None, typer.Option(
    "--encoding", help="Text encoding of the CSV (default UTF-8, e.g. cp1252 or latin-1).")]


def table_format(delimiter: str | None, decimal: str | None, encoding: str | None) -> TableFormat:
    """The table format the flags give (exit 2, one line naming the flag, if unusable)."""
    from pydantic import ValidationError

    from federated.site.tables import TableFormat

    given = {k: v for k, v in (("delimiter", delimiter), ("decimal", decimal), ("encoding", encoding))
             if v is not None}
    try:
        return TableFormat.model_validate(given)
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = f"--{err['loc'][0]}" if err["loc"] else "--delimiter/--decimal"
        raise fail(f"{flag}: {err['msg'].removeprefix('Value error, ')}") from None
