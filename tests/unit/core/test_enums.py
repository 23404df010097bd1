"""Start kinds, dead-letter status and reasons: members are their strings; every reason src writes is one."""

from __future__ import annotations

import json

import pytest

from choreograph.core.enums import DeadLetterReason, DeadLetterStatus, StartKind
from choreograph.runtime.parking import PARKED_REASON
from choreograph.security.errors import DecryptError, SecurityError, SignatureError, UnauthorizedError


@pytest.mark.parametrize("member", [*StartKind, *DeadLetterStatus, *DeadLetterReason])
def test_a_member_reads_writes_and_compares_as_its_string(member: StartKind) -> None:
    text = member.value
    assert member == text and str(member) == text and f"{member}" == text and "%s" % member == text  # noqa: UP031
    assert json.dumps({"v": member}) == json.dumps({"v": text})
    assert hash(member) == hash(text) and text in {member} and member in {text}


@pytest.mark.parametrize(
    "reason",
    [PARKED_REASON, SecurityError.reason, SignatureError.reason, UnauthorizedError.reason, DecryptError.reason],
)
def test_every_reason_written_outside_the_middleware_is_a_member(reason: str) -> None:
    assert isinstance(reason, DeadLetterReason), reason


def test_the_stored_words_are_unchanged() -> None:
    assert [m.value for m in DeadLetterStatus] == ["open", "resubmitted", "purged"]
    assert [m.value for m in StartKind] == ["earliest", "latest", "time", "offsets"]
    assert {m.value for m in DeadLetterReason} == {
        "error", "decode", "reject", "schema", "type", "parked", "security", "signature", "unauthorized", "decrypt"
    }  # fmt: skip
