"""``fedprog person add|list``: the people who sign approvals (documents, model releases).

Each person's private Ed25519 key is written once, to a file only they hold; the workspace pins the
public key and the roles (``trust.people`` in ``workspace.json``), outside the ledger it vouches for
(:mod:`ledger.signatures`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import fail, user_errors, workspace

app = typer.Typer(help="People who sign approvals, and their pinned keys.", no_args_is_help=True)
WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", help="Workspace folder.")]


@app.command("add")
def add(name: Annotated[str, typer.Argument(help="The person's full name, as approvals will show it.")],
        role: Annotated[list[str], typer.Option("--role", help="author, reviewer or approver (repeatable).")],
        key_out: Annotated[Path, typer.Option("--key-out", help="Where to write the person's private key "
                                                                "(a new file only they can read).")],
        workspace_dir: WorkspaceOpt = None) -> None:
    """Pin a new person with their roles; write their new private signing key to --key-out."""
    from ledger.signatures import ROLES

    from .workspace import Workspace

    bad = [r for r in role if r not in ROLES]
    if bad:
        raise fail(f"unknown role {bad[0]!r}: one of {', '.join(ROLES)}")
    with user_errors():
        person = Workspace(workspace(workspace_dir)).add_person(name, role, key_out)  # type: ignore[arg-type]
    print(f"{person.name}: {', '.join(person.roles)} (key {person.key_id}; private key written to {key_out})")


@app.command("list")
def list_(workspace_dir: WorkspaceOpt = None,
          as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False) -> None:
    """The pinned people, their roles and key ids."""
    from .workspace import Workspace

    with user_errors():
        people = Workspace(workspace(workspace_dir)).people()
    if as_json:
        print(json.dumps({n: {"roles": list(p.roles), "key_id": p.key_id} for n, p in people.items()},
                         sort_keys=True))
        return
    for p in people.values():
        print(f"{p.name}  {', '.join(p.roles)}  key {p.key_id}")
    if not people:
        print("no people pinned (fedprog person add NAME --role approver --key-out FILE)")
