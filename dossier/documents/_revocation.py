"""How the documents word a model's consent-revocation state (issue 15), in one place.

The state is the registry's (:class:`device.registry.ModelEntry`: ``affected_by_revocation``,
``status`` and the ``retrain`` flag of :mod:`device.revocation`), and the policy the model's
study declares (:attr:`dossier.spec.DossierInputs.revocation`); nothing is computed here. A
deadline is shown only once the ledger records it (a ``retrain-due`` entry): before that the
registry shows the window as opening now, which is the clock's, not the ledger's.
"""

from __future__ import annotations

from typing import Any


def _deadline(flag: Any) -> str:
    if flag.since is None:
        return "deadline not yet recorded: the window opens with its retrain-due ledger entry"
    return f"deadline {flag.deadline.strftime('%Y-%m-%d %H:%M UTC')}"


def _successor(entry: Any, history: list[Any]) -> bool:
    """Whether a released version names ``entry`` as its predecessor."""
    return any(m.predecessor == entry.ref and "released" in (s for _, s in m.history) for m in history)


def short(entry: Any) -> str:
    """A model's revocation state in a table cell: no, retrain due (n of k), AFFECTED, withdrawn."""
    if not entry.affected_by_revocation:
        return "no"
    if entry.lifecycle == "withdrawn":
        return "named; withdrawn"
    flag = entry.retrain
    if flag is not None and not flag.expired:
        return f"retrain due ({flag.revocations} of {flag.needed}); served"
    return "AFFECTED; not served"


def state(entry: Any, history: list[Any]) -> str:
    """A model's revocation state as a sentence (markup-free): whether a revocation names its
    training job and, if so, whether it is flagged retrain due and still served, or affected."""
    if not entry.affected_by_revocation:
        return "not affected: no consent revocation recorded in the ledger names its training job"
    if entry.lifecycle == "withdrawn":
        return "withdrawn; a consent revocation also names its training job"
    flag = entry.retrain
    if flag is not None and not flag.expired:
        due = ("a successor is due now" if flag.due else
               f"a successor is due at {flag.needed} revocations or at the deadline, whichever first")
        return (f"flagged RETRAIN DUE and still served: {flag.revocations} of {flag.needed} revocations "
                f"name its training job, {_deadline(flag)}; {due}")
    if flag is not None:
        return (f"AFFECTED and not served: the deadline of its revocation window "
                f"({flag.deadline.strftime('%Y-%m-%d %H:%M UTC')}) passed without a released successor")
    if entry.lifecycle != "released":
        return "AFFECTED: a consent revocation names its training job; it can be neither released nor served"
    if _successor(entry, history):
        return ("AFFECTED and not served: a released successor, retrained without the withdrawn data, "
                "replaced it")
    return ("AFFECTED and not served: a consent revocation names its training job and the immediate "
            "revocation policy applies")


def policy(terms: Any) -> str:
    """The revocation policy a study declares (``device.revocation.RevocationTerms``), as a phrase."""
    if terms is None:
        return ("not recorded beside the model (the registry then applies the defaults: window, 30 days, "
                "a successor due at the study's minimum cell count of withdrawals)")
    if terms.policy == "immediate":
        return "immediate (a model trained on a withdrawn patient's data is taken out of service at once)"
    return (f"window: {terms.window_days:g} days, a successor due at {terms.min_revocations} withdrawals "
            "or at the deadline, whichever first")
