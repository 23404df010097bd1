"""Redis: a dead letter stored in the hash layout of earlier versions stays readable, countable and resubmittable."""

from __future__ import annotations

import uuid

from choreograph.brokers.redis import RedisBroker
from choreograph.core.broker import DeadLetter
from choreograph.core.enums import DeadLetterStatus

from .server import RedisServer

_ID = "0190c0de-0000-7000-8000-00000000abcd"


def _legacy_fields(letter: DeadLetter) -> dict[str, bytes | str]:
    """The hash fields earlier versions wrote (one per attribute), kept here as they were."""
    return {
        "id": letter.id,
        "topic": letter.topic,
        "group": letter.group,
        "handler": letter.handler,
        "partition": str(letter.partition),
        "offset": str(letter.offset),
        "key": b"" if letter.key is None else b"=" + letter.key.encode(),
        "value": letter.value,
        "headers": b'{"h":"1"}',
        "event_id": "",
        "event_type": "=shop.order",
        "reason": letter.reason,
        "error_type": letter.error_type,
        "error_message": letter.error_message,
        "stack": letter.stack,
        "attempts": str(letter.attempts),
        "first_failure": repr(letter.first_failure),
        "last_failure": repr(letter.last_failure),
        "status": letter.status,
    }


async def test_a_dead_letter_in_the_old_hash_layout_is_read_counted_and_purged(redis_server: RedisServer) -> None:
    broker = RedisBroker.from_url(f"{redis_server.url}?prefix=f{uuid.uuid4().hex[:8]}&partitions=2")
    letter = DeadLetter(
        _ID, "orders", "billing", "charge", 1, 7, "k", b"\x00\xff raw", {"h": "1"}, None, "shop.order",
        "error", "ValueError", "boom", "Traceback", 3, 10.5, 12.25,
    )  # fmt: skip
    try:
        await broker.client.hset(broker.keys.dead_letter(_ID), mapping=_legacy_fields(letter))
        await broker.client.zadd(broker.keys.dead_letter_index, {_ID: 12.25})
        assert await broker.dead_letter(_ID) == letter
        assert await broker.dead_letters(status=None) == [letter]
        assert await broker.dead_letter_counts() == {("orders", "billing", "error"): 1}
        assert await broker.purge([_ID]) == 1
        assert (await broker.dead_letter(_ID)).status == DeadLetterStatus.PURGED
    finally:
        await broker.close()
