"""Entries another client wrote into our streams: delivered as faults, settled, and no partition breaks.

Checked on a real redis-server. The pure translation is fuzzed in
``test_redis_translation.py``; here the entries are written with raw XADDs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest

from choreograph.brokers.redis import RedisBroker
from choreograph.core.broker import DeadLetter, Delivery, Record, Settlement
from choreograph.core.ids import new_id

from .server import RedisServer


@pytest.fixture
async def broker(redis_server: RedisServer) -> AsyncIterator[RedisBroker]:
    """A broker with its own key prefix and one partition (every record lands in the stream we poke at)."""
    broker = RedisBroker.from_url(f"{redis_server.url}?prefix=f{uuid.uuid4().hex[:8]}&partitions=1&poll_interval=0.05")
    yield broker
    await broker.close()


def _letter(delivery: Delivery) -> DeadLetter:
    now = time.time()
    return DeadLetter(
        id=new_id(), topic=delivery.topic, group="g", handler="h", partition=delivery.partition,
        offset=delivery.offset, key=delivery.key, value=delivery.value, headers=dict(delivery.headers),
        event_id=None, event_type=None, reason="decode", error_type="", error_message=delivery.fault or "",
        stack="", attempts=delivery.attempt, first_failure=now, last_failure=now,
    )  # fmt: skip


async def _drain(broker: RedisBroker, topic: str, count: int) -> list[Delivery]:
    """Fetch ``count`` deliveries of group g, dead-letter the faults and ack the rest, batch by batch."""
    sub = await broker.subscribe(topic, "g")
    got: list[Delivery] = []
    try:
        deadline = time.monotonic() + 10
        while len(got) < count and time.monotonic() < deadline:
            batch = list(await sub.fetch(100, 0.2))
            settlement = Settlement(
                acks=[d for d in batch if d.fault is None],
                dead_letters=[(d, _letter(d)) for d in batch if d.fault is not None],
            )
            if batch:
                await sub.settle(settlement)
            got += batch
        assert await sub.fetch(100, 0.2) == []  # nothing comes back: every settle held
    finally:
        await sub.close()
    return got


async def test_publishes_continue_above_a_foreign_auto_id_and_its_entry_is_a_fault(broker: RedisBroker) -> None:
    # Given a partition with records, then an entry another client added with an auto id
    await broker.publish("t", [Record(b"a", key="k"), Record(b"b", key="k")])
    stream = broker.keys.stream("t", 0)
    foreign_id = await broker.client.xadd(stream, {"payload": b"\xff\xfeforeign"})
    # When we publish again (before the fix, every later publish to the partition failed)
    await broker.publish("t", [Record(b"c", key="k")])
    await broker.publish("t", [Record(b"d", key="k"), Record(b"e")])
    # Then the consumer gets everything in stream order, offsets increasing, the foreign entry as a fault
    got = await _drain(broker, "t", 6)
    assert [d.value for d in got if d.fault is None] == [b"a", b"b", b"c", b"d", b"e"]
    offsets = [d.offset for d in got]
    assert offsets == sorted(offsets) and len(set(offsets)) == 6
    (fault,) = [d for d in got if d.fault is not None]
    assert "missing field" in fault.fault and "v" in fault.fault  # type: ignore[operator]
    assert fault.value == b"payload: \xff\xfeforeign"
    assert int(foreign_id.split(b"-")[0]) - 1 == fault.offset
    # And the dead letter keeps the original bytes
    (letter,) = await broker.dead_letters()
    assert letter.value == fault.value and letter.reason == "decode"


async def test_entries_no_translation_can_read_are_faults_that_settle(broker: RedisBroker) -> None:
    # Given our own records around entries of our layout that are broken in each way, and foreign ids
    await broker.publish("t", [Record(b"good-0", key="k")])
    stream = broker.keys.stream("t", 0)
    now = b"1700000000.5"
    broken: list[tuple[str, dict[bytes, bytes]]] = [
        ("2-0", {b"v": b"key", b"t": now, b"k": b"\xc3\x28"}),  # key not UTF-8
        ("3-0", {b"v": b"hdr", b"t": now, b"h": b'{"a": "\xff"}'}),  # headers not UTF-8
        ("4-0", {b"v": b"hdr2", b"t": now, b"h": b"[1, 2]"}),  # headers not an object
        ("5-0", {b"v": b"hdr3", b"t": now, b"h": b'{"a": 1}'}),  # header value not a string
        ("6-0", {b"v": b"stamp", b"t": b"yesterday"}),  # timestamp not a number
        ("7-0", {b"t": now}),  # no value
        ("8-1", {b"v": b"seq", b"t": now}),  # an id we never assign
        ("8-2", {b"v": b"seq2", b"t": now}),  # and another one in the same millisecond
    ]
    for sid, fields in broken:
        await broker.client.xadd(stream, fields, id=sid)
    await broker.client.hset(broker.keys.stream_meta("t", 0), "n", 1)  # our counter never saw them
    await broker.publish("t", [Record(b"good-1", key="k")])
    # When a member reads them all, dead-letters the faults and acks the rest
    got = await _drain(broker, "t", 2 + len(broken))
    # Then each broken entry is a fault, every one settled (no redelivery), and our records arrive in order
    faults = [d for d in got if d.fault is not None]
    assert [d.value for d in got if d.fault is None] == [b"good-0", b"good-1"]
    assert sorted(d.value for d in faults) == sorted([b"key", b"hdr", b"hdr2", b"hdr3", b"stamp", b"t: " + now,
                                                       b"seq", b"seq2"])  # fmt: skip
    assert len({(d.partition, d.offset) for d in got}) == len(got)
    by_value = {d.value: d for d in faults}
    assert by_value[b"key"].key == "\\xc3("
    assert "not UTF-8" in (by_value[b"key"].fault or "")
    assert "not assigned by choreograph" in (by_value[b"seq2"].fault or "")
    assert len(await broker.dead_letters(limit=100)) == len(broken)


async def test_a_dead_lettered_foreign_entry_can_be_resubmitted(broker: RedisBroker) -> None:
    # Given a foreign entry with an id we never assign, dead-lettered by group g
    stream = broker.keys.stream("t", 0)
    await broker.publish("t", [Record(b"first")])
    await broker.client.xadd(stream, {b"v": b"fixed-later", b"t": b"1"}, id="9-3")
    await _drain(broker, "t", 2)
    (letter,) = await broker.dead_letters()
    # When an operator resubmits it
    assert await broker.resubmit(letter.id)
    # Then group g gets it again at the same offset, and can settle it
    (again,) = await _drain(broker, "t", 1)
    assert (again.offset, again.value) == (letter.offset, b"fixed-later")
