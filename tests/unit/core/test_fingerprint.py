"""Failure-group fingerprints: which frame counts, what is left out, and that grouping never raises."""

from __future__ import annotations

import traceback
from dataclasses import replace
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from choreograph.core.broker import DeadLetter
from choreograph.core.fingerprint import failure_groups, fingerprint, is_fingerprint, user_frame

STACK = """Traceback (most recent call last):
  File "/srv/app/.venv/lib/python3.12/site-packages/choreograph/runtime/middleware.py", line 70, in invoke
    return await handler(event, ctx)
  File "/srv/app/shop/payments.py", line 41, in charge
    amount = price(event)
  File "/srv/app/shop/pricing.py", line 12, in price
    return table[event.sku]
  File "/usr/lib/python3.12/json/decoder.py", line 337, in decode
    obj, end = self.raw_decode(s, idx=_w(s, 0).end())
  File "/srv/app/.venv/lib/python3.12/site-packages/pydantic/main.py", line 9, in validate
    raise KeyError(sku)
KeyError: 'sku-1'
"""


def letter(stack: str = STACK, **changes: object) -> DeadLetter:
    base = DeadLetter(
        id="d1", topic="t", group="payments.charge", handler="payments.charge", partition=0, offset=1,
        key=None, value=b"{}", headers={}, event_id="e1", event_type="x.y", reason="error",
        error_type="KeyError", error_message="'sku-1'", stack=stack, attempts=1, first_failure=1.0, last_failure=2.0,
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_innermost_user_frame_counts_not_library_or_choreograph_frames() -> None:
    assert user_frame(STACK) == "shop/pricing.py:price"


def test_choreograph_in_a_source_tree_is_library_but_its_examples_are_user_code() -> None:
    stack = (
        'Traceback (most recent call last):\n  File "/w/src/choreograph/examples/shop/app.py", line 3, in pay\n'
        '  File "/w/src/choreograph/runtime/consumer.py", line 9, in run\nValueError: x\n'
    )
    assert user_frame(stack) == "shop/app.py:pay"


def test_a_chained_cause_does_not_decide_the_frame() -> None:
    def cause() -> None:
        raise KeyError("inner")

    def outer() -> None:
        try:
            cause()
        except KeyError as exc:
            raise ValueError("outer") from exc

    try:
        outer()
    except ValueError as exc:
        stack = "".join(traceback.format_exception(exc))
    assert user_frame(stack) == "core/test_fingerprint.py:outer"


def test_line_numbers_paths_and_messages_do_not_split_a_group() -> None:
    moved = STACK.replace("line 12", "line 99").replace("/srv/app/", "/home/ci/build/")
    same = [letter(), letter(id="d2", stack=moved, error_message="'sku-2'", last_failure=5.0)]
    assert fingerprint(same[0]) == fingerprint(same[1])
    [group] = failure_groups(same)
    assert (group.count, group.first_seen, group.last_seen, group.sample_id) == (2, 1.0, 5.0, "d2")
    assert group.title == "KeyError at shop/pricing.py:price in payments.charge (error)"


def test_handler_reason_type_and_frame_each_split_a_group() -> None:
    base = fingerprint(letter())
    others = [
        letter(group="payments.refund"),
        letter(reason="reject"),
        letter(error_type="LookupError"),
        letter(stack=STACK.replace("in price", "in discount")),
    ]
    prints = {fingerprint(d) for d in others}
    assert base not in prints and len(prints) == 4
    assert all(is_fingerprint(p) for p in prints | {base})
    assert not is_fingerprint("payments.charge")


@given(stack=st.text(), reason=st.text(), error_type=st.text(), group=st.text())
def test_fingerprinting_never_raises_on_any_text(stack: str, reason: str, error_type: str, group: str) -> None:
    entry = letter(stack=stack, reason=reason, error_type=error_type, group=group)
    assert is_fingerprint(fingerprint(entry))
    assert failure_groups([entry])[0].count == 1


frame_lines = st.builds(
    lambda path, func, junk: f'  File "{path}", line 1, in {func}\n{junk}\n',
    st.text(),
    st.text(),
    st.text(),
)


@given(st.lists(frame_lines, max_size=8), st.booleans())
def test_tracebacks_of_arbitrary_frames_never_raise(frames: list[str], header: bool) -> None:
    stack = ("Traceback (most recent call last):\n" if header else "") + "".join(frames)
    result = user_frame(stack)
    assert result is None or ":" in result


def test_the_outbox_layer_is_choreograph_not_user_code() -> None:
    # Given a database error raised under a transactional handler, from choreograph's outbox middleware
    stack = (
        'Traceback (most recent call last):\n  File "/w/shop/ledger.py", line 3, in record\n'
        '  File "/w/.venv/lib/python3.12/site-packages/choreograph/outbox/inbox.py", line 9, in transactional\n'
        '  File "/w/.venv/lib/python3.12/site-packages/sqlalchemy/engine/base.py", line 9, in execute\n'
        "OperationalError: database is locked\n"
    )
    source_tree = stack.replace("/w/.venv/lib/python3.12/site-packages/choreograph/", "/w/src/choreograph/")
    # Then the frame that counts is the user's, installed or from a source tree
    assert user_frame(stack) == "shop/ledger.py:record"
    assert user_frame(source_tree) == "shop/ledger.py:record"


def test_every_package_of_choreograph_but_its_examples_is_skipped() -> None:
    import choreograph

    root = Path(choreograph.__file__).parent
    for package in sorted(p.name for p in root.iterdir() if (p / "__init__.py").exists() and p.name != "examples"):
        stack = (
            'Traceback (most recent call last):\n  File "/w/shop/app.py", line 3, in pay\n'
            f'  File "/w/src/choreograph/{package}/x.py", line 9, in inner\nValueError: x\n'
        )
        assert user_frame(stack) == "shop/app.py:pay", package
