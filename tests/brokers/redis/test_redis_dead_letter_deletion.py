"""Redis: ``purge(delete=True)`` removes dead letters' hashes and index entries."""

from __future__ import annotations

import uuid

import pytest

from choreograph.brokers.redis import RedisBroker
from choreograph.core.broker import Record
from choreograph.core.clock import FakeClock
from choreograph.core.errors import NotFound
from tests.brokers.dead_letter_deletion import check_dead_letter_deletion, dead_letter_records

from .server import RedisServer


def _broker(server: RedisServer) -> RedisBroker:
    return RedisBroker.from_url(f"{server.url}?prefix=e{uuid.uuid4().hex[:8]}&partitions=2&poll_interval=0.05")


async def test_deleted_dead_letters_cannot_be_read_or_listed(redis_server: RedisServer) -> None:
    broker = _broker(redis_server)
    try:
        await check_dead_letter_deletion(broker)
    finally:
        await broker.close()


async def test_deleted_dead_letters_leave_no_key(redis_server: RedisServer) -> None:
    broker = _broker(redis_server)
    try:
        letters = await dead_letter_records(broker, [b"a", b"b"])
        keys = [broker.keys.dead_letter(letter.id) for letter in letters]
        assert await broker.client.exists(*keys) == 2
        assert await broker.purge(None, delete=True) == 2
        assert await broker.client.exists(*keys) == 0
        assert await broker.client.zcard(broker.keys.dead_letter_index) == 0
    finally:
        await broker.close()


async def test_dead_letter_retention_deletes_old_entries_whatever_their_status(redis_server: RedisServer) -> None:
    clock = FakeClock()
    url = f"{redis_server.url}?prefix=e{uuid.uuid4().hex[:8]}&partitions=1&dead_letter_retention=60"
    # retention_interval ~0: every publish runs the periodic trim
    broker = RedisBroker.from_url(f"{url}&retention_interval=0.000001", clock=clock)
    try:
        [old] = await dead_letter_records(broker, [b"old"])
        await broker.purge([old.id])  # marked purged: retention deletes it all the same
        clock.advance(30)
        [young] = await dead_letter_records(broker, [b"young"])
        clock.advance(31)  # old was stored 61 s ago, young 31 s ago
        await broker.publish("erase.tick", [Record(b"tick")])
        assert [d.id for d in await broker.dead_letters(status=None)] == [young.id]
        with pytest.raises(NotFound):
            await broker.dead_letter(old.id)
    finally:
        await broker.close()
