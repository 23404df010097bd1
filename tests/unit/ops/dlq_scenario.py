"""Dead-letter operations on any backend: failure groups, a paced group retry, edit-and-retry, archive, audit.

:func:`dead_letter_operations` runs the whole story against one broker URL
with a real App; the memory, SQLite and Redis tests call it. The handler fails
in three distinct ways (three failure groups) that differ in exception type,
reason and the user-code frame that raised.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from choreograph import App, Context, Event, Reject
from choreograph.core.broker import DeadLetter, DeadLetterStore
from choreograph.core.fingerprint import fingerprint
from choreograph.runtime.dead_letters import DeadLetterDesk, EditingDisabled
from choreograph.runtime.retry import RetryPolicy
from tests.conftest import wait_until

RUN = uuid.uuid4().hex[:8]


class Order(Event, type=f"dlqops.order.{RUN}"):
    n: int
    kind: str


def check_amount(n: int) -> None:
    raise ValueError(f"amount {n} is too large")


def lookup(n: int) -> str:
    return {"known": "x"}[f"sku-{n}"]


def order_app(url: str, handled: list[tuple[int, str | None]], fixed: set[str]) -> App:
    """An App whose ``orders.place`` fails by ``kind`` until the kind is in ``fixed``."""
    app = App("dlqops", broker=url)

    @app.service("orders").on(Order, retry=RetryPolicy(immediate=0, delayed=0))
    async def place(event: Order, ctx: Context) -> None:
        if event.kind not in fixed:
            if event.kind == "value":
                check_amount(event.n)
            if event.kind == "reject":
                raise Reject(f"order {event.n} refused \x1b[2J[red]x[/red]")  # hostile text for the CLI
            if event.kind == "key":
                lookup(event.n)
        handled.append((event.n, ctx.envelope.causationid))

    return app


async def _open(store: DeadLetterStore, count: int) -> list[DeadLetter]:
    async def enough() -> bool:
        return len(await store.dead_letters(limit=1000)) >= count

    await wait_until(enough, 60, f"{count} open dead letters")
    return await store.dead_letters(limit=1000)


async def dead_letter_operations(url: str) -> None:
    """Run the scenario against the broker at ``url``; raise AssertionError if anything goes wrong."""
    handled: list[tuple[int, str | None]] = []
    fixed: set[str] = set()
    app = order_app(url, handled, fixed)
    broker = app.broker
    assert isinstance(broker, DeadLetterStore)
    desk = DeadLetterDesk(broker, actor="tester")
    await app.start()
    try:
        # Given three orders failing in each of three ways
        kinds = {}
        for n in range(9):
            kind = ("value", "reject", "key")[n % 3]
            kinds[(await app.publish(Order(n=n, kind=kind))).id] = kind
        letters = await _open(broker, 9)
        by_kind: dict[str, set[str]] = {}
        for letter in letters:
            by_kind.setdefault(kinds[str(letter.event_id)], set()).add(letter.id)

        # Then dlq groups shows exactly three groups of three, by type and user frame
        groups = await desk.groups()
        assert sorted((g.error_type, g.reason, g.frame, g.count) for g in groups) == [
            ("KeyError", "error", "ops/dlq_scenario.py:lookup", 3),
            ("Reject", "reject", "ops/dlq_scenario.py:place", 3),
            ("ValueError", "error", "ops/dlq_scenario.py:check_amount", 3),
        ]
        fp = {g.error_type: g.fingerprint for g in groups}
        assert {frozenset(g.member_ids) for g in groups} == {frozenset(ids) for ids in by_kind.values()}
        assert all(g.sample_id in g.member_ids and g.first_seen <= g.last_seen for g in groups)

        # When the ValueError group is retried at 20/s with the handler still broken
        value_group = await desk.select(group=fp["ValueError"])
        progress: list[tuple[int, int]] = []
        started = time.monotonic()
        report = await desk.retry(
            value_group,
            rate=20,
            target="group",
            group=fp["ValueError"],
            on_progress=lambda d, t: progress.append((d, t)),
        )
        # Then exactly its members are resubmitted, paced, and they come back as a failed retry
        assert time.monotonic() - started >= 2 / 20
        assert set(report.retried) == by_kind["value"] and not report.skipped and report.failed_again == 0
        assert progress == [(1, 3), (2, 3), (3, 3)]
        still_open = {d.id for d in await broker.dead_letters(limit=1000)}
        assert by_kind["reject"] | by_kind["key"] <= still_open and not by_kind["value"] & still_open
        await _open(broker, 9)  # the three retried ones are back as new entries
        assert await desk.failed_again(report.retried) == 3
        again = await desk.select(group=fp["ValueError"])
        assert {d.predecessor for d in again} == by_kind["value"]
        # And retrying the original entries again skips them as already retried
        repeat = await desk.retry(value_group, target="ids")
        assert set(repeat.skipped) == by_kind["value"] and not repeat.retried

        # When the bug is fixed and the group retried, its events are handled
        fixed.add("value")
        fixed_report = await desk.retry(again, rate=100, target="group", group=fp["ValueError"])
        assert len(fixed_report.retried) == 3 and fixed_report.failed_again == 3
        await wait_until(lambda: {n for n, _ in handled} == {0, 3, 6}, 60, "the fixed group handled")

        # Edit and retry: refused while editing is off, refused when the payload breaks the schema
        reject_letter = (await desk.select(group=fp["Reject"]))[0]

        def validate(event_type: str, version: int, data: Any) -> None:
            assert event_type == Order.event_type() and version == 1
            Order.model_validate(data)

        with pytest.raises(EditingDisabled):
            await desk.edit(reject_letter, {"n": 100, "kind": "ok"}, validate=validate)
        await desk.set_editing(True)
        with pytest.raises(ValueError, match="valid integer"):
            await desk.edit(reject_letter, {"n": "not a number", "kind": "ok"}, validate=validate)
        assert (await broker.dead_letter(reject_letter.id)).status == "open"  # nothing was sent
        result = await desk.edit(reject_letter, {"n": 100, "kind": "ok"}, validate=validate)
        # Then the edited copy is handled with a new id caused by the original event
        await wait_until(lambda: any(n == 100 for n, _ in handled), 60, "the edited event handled")
        assert (100, reject_letter.event_id) in handled
        assert result.new_event_id != reject_letter.event_id
        assert (await broker.dead_letter(reject_letter.id)).status == "resubmitted"
        assert (await desk.edited(reject_letter.id) or {}).get("new_event_id") == result.new_event_id

        # Archive: the KeyError group leaves the listings, is not retried, and comes back on restore
        key_group = await desk.select(group=fp["KeyError"])
        assert await desk.archive(key_group, retention=3600, target="group", group=fp["KeyError"]) == 3
        assert fp["KeyError"] not in {g.fingerprint for g in await desk.groups()}
        assert [g.fingerprint for g in await desk.groups(archived=True)] == [fp["KeyError"]]
        assert len((await desk.retry(key_group, target="ids")).archived) == 3
        assert await desk.restore(key_group[:1], target="one") == 1
        assert await desk.expire(now=time.time() + 7200) == 2  # the two still archived, past retention
        assert {d.id for d in await broker.dead_letters(status=None, limit=1000)} & by_kind["key"] == {key_group[0].id}
        await desk.note(fp["KeyError"], "JIRA-1: missing SKUs")
        assert (await desk.notes())[fp["KeyError"]]["text"] == "JIRA-1: missing SKUs"

        # And the audit trail shows every action, by whom, with counts
        trail = [(r.action, r.count, r.actor) for r in await desk.audit.records()]
        assert trail == [
            ("retry", 3, "tester"),
            ("retry", 0, "tester"),
            ("retry", 3, "tester"),
            ("settings", 1, "tester"),
            ("edit", 1, "tester"),
            ("archive", 3, "tester"),
            ("retry", 0, "tester"),
            ("restore", 1, "tester"),
            ("expire", 2, "tester"),
            ("note", 1, "tester"),
        ]
        assert all(fingerprint(d) == fp["ValueError"] for d in again)
    finally:
        await app.close()


cli_app = order_app("memory://", [], set())
"""The App ``dlq edit --app tests.unit.ops.dlq_scenario:cli_app`` validates edits with (its models only)."""
