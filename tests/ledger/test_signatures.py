"""Signed approvals (ledger.signatures): a pinned person's Ed25519 signature over a statement."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from ledger.signatures import Approval, SignatureError, load_private_key, new_key, people_from, sign, verify
from tests.conftest import new_approver

pytestmark = pytest.mark.req("SRS-REG-004")

SUBJECT = {"action": "approve-document", "document": "FP-SRS", "content_sha256": "ab" * 32}
AT = "2026-12-07T10:00:00Z"


def test_an_approval_verifies_only_under_the_pinned_key_role_and_subject() -> None:
    person, key = new_approver("Dr. R. Reviewer", roles=("reviewer", "author"))
    people = {person.name: person}
    approval = sign(key, person, "reviewer", SUBJECT, AT)
    assert verify(approval, people, SUBJECT) == []
    assert approval.statement == {**SUBJECT, "name": person.name, "role": "reviewer", "at": AT}
    assert verify(approval.model_dump(mode="json"), people) == []  # as stored in a ledger body
    # the statement edited after signing (another document, another role, another time)
    for change in ({"document": "FP-RMF"}, {"role": "author"}, {"at": "2027-01-01T00:00:00Z"}):
        edited = Approval(statement={**approval.statement, **change}, key_id=approval.key_id,
                          signature=approval.signature)
        assert any("does not verify" in p for p in verify(edited, people))
    assert "is for another document" in verify(approval, people, {**SUBJECT, "document": "FP-RMF"})[0]
    assert "not a pinned approver" in verify(approval, {})[0]
    demoted = person.model_copy(update={"roles": ("author",)})
    assert "does not hold the role 'reviewer'" in verify(approval, {person.name: demoted})[0]
    assert verify({"statement": "x"}, people)[0].startswith("not an approval record")


def test_nobody_signs_for_someone_else_or_in_a_role_they_do_not_hold() -> None:
    """Adversary: a colleague who knows the name of an approver but holds only their own key."""
    person, _ = new_approver("Dr. A. Approver")
    colleague, colleague_key = new_approver("Dr. C. Colleague")
    with pytest.raises(SignatureError, match="not the one pinned for Dr. A. Approver"):
        sign(colleague_key, person, "approver", SUBJECT, AT)
    forged = sign(colleague_key, colleague, "approver", SUBJECT, AT)
    relabelled = Approval(statement={**forged.statement, "name": person.name}, key_id=person.key_id,
                          signature=forged.signature)
    assert "does not verify" in verify(relabelled, {person.name: person, colleague.name: colleague})[0]
    with pytest.raises(SignatureError, match="does not hold the role 'author'"):
        sign(colleague_key, colleague, "author", SUBJECT, AT)


def test_a_private_key_is_written_once_for_its_owner_only(tmp_path: Path) -> None:
    from ledger.signatures import write_private_key

    pem, person = new_key("Dr. K. Keeper", ["approver"])
    path = tmp_path / "keys" / "keeper.pem"
    write_private_key(path, pem)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(SignatureError, match="never overwritten"):
        write_private_key(path, pem)
    key = load_private_key(path)
    assert verify(sign(key, person, "approver", SUBJECT, AT), {person.name: person}) == []
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(SignatureError, match="not an unencrypted PEM private key"):
        load_private_key(tmp_path / "bad.pem")
    with pytest.raises(SignatureError, match="cannot read the signing key"):
        load_private_key(tmp_path / "missing.pem")
    pinned = {person.name: json.loads(person.model_dump_json(exclude={"name"}))}
    assert set(people_from(pinned)) == {person.name}
    with pytest.raises(SignatureError, match="pinned person 'x' is malformed"):
        people_from({"x": {"roles": []}})
