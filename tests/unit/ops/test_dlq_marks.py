"""Dead-letter marks (archive, edit) for ids that are not valid key-value keys: hostile or very long ids."""

from __future__ import annotations

from choreograph.brokers.memory import MemoryBroker
from choreograph.core.broker import DeadLetter, Record, Settlement
from choreograph.core.kv import check_key
from choreograph.runtime.dead_letters import DeadLetterDesk, entry_key

ODD_IDS = ["dl-\x1b[2J \u202eevil/\n", "x" * 400, "plain-0190c1d2"]


def test_every_id_gives_a_valid_distinct_key() -> None:
    keys = [entry_key("archived/", i) for i in ODD_IDS]
    assert all(check_key(k) for k in keys) and len(set(keys)) == len(keys)
    assert keys[2] == "archived/plain-0190c1d2"


async def test_archive_and_restore_entries_with_odd_ids() -> None:
    broker = MemoryBroker()
    try:
        await broker.publish("odd", [Record(b"{}", f"k{n}") for n in range(len(ODD_IDS))])
        subscription = await broker.subscribe("odd", "svc.odd")
        deliveries = list(await subscription.fetch(10, 5.0))
        letters = [
            DeadLetter(
                id=dead_letter_id,
                topic="odd",
                group="svc.odd",
                handler="svc.odd",
                partition=d.partition,
                offset=d.offset,
                key=d.key,
                value=d.value,
                headers={},
                event_id=None,
                event_type=None,
                reason="decode",
                error_type="",
                error_message="",
                stack="",
                attempts=1,
                first_failure=1.0,
                last_failure=1.0,
            )
            for dead_letter_id, d in zip(ODD_IDS, deliveries, strict=True)
        ]
        await subscription.settle(Settlement(dead_letters=list(zip(deliveries, letters, strict=True))))
        desk = DeadLetterDesk(broker, actor="t")
        # When all are archived, the marks name them exactly, and expiry deletes exactly them
        assert await desk.archive(letters, retention=60, target="odd") == 3
        assert await desk.archived() == set(ODD_IDS)
        assert await desk.entries() == []
        assert await desk.restore(letters[:2], target="odd") == 2
        assert await desk.archived() == {ODD_IDS[2]}
        assert await desk.expire(now=1e12) == 1
        assert {d.id for d in await broker.dead_letters(status=None)} == set(ODD_IDS[:2])
    finally:
        await broker.close()
