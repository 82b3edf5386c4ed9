"""The ``fedprog`` command: a thin typer layer wiring the fedprog packages together."""
