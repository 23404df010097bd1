"""Redis key-value stores: where the entries live, and errors translated like the rest of the backend."""

from __future__ import annotations

import uuid

import pytest

from choreograph.brokers.redis import RedisBroker
from choreograph.core.errors import BrokerUnavailable
from tests.brokers.processes import free_port

from .server import RedisServer


async def test_a_namespace_is_two_hashes_in_one_cluster_slot_under_the_prefix(redis_server: RedisServer) -> None:
    prefix = f"kv{uuid.uuid4().hex[:6]}"
    broker = RedisBroker.from_url(f"{redis_server.url}?prefix={prefix}")
    try:
        store = broker.key_value("schemas")
        revision = await store.put("shop.order/v1", b"{}")
        await store.put("gone", b"x")
        await store.delete("gone")
        keys = sorted(k.decode() for k in await broker.client.keys(f"{prefix}:*"))
        assert keys == [f"{prefix}:{{kv:schemas}}:revisions", f"{prefix}:{{kv:schemas}}:values"]
        assert await broker.client.hgetall(keys[1]) == {b"shop.order/v1": b"{}"}
        # the deleted key keeps its last revision, so a re-created one continues above it
        assert await broker.client.hgetall(keys[0]) == {b"shop.order/v1": str(revision).encode(), b"gone": b"1"}
        assert await store.put("gone", b"again", expect=0) == 2
    finally:
        await broker.close()


async def test_an_unreachable_server_is_broker_unavailable() -> None:
    broker = RedisBroker.from_url(f"redis://127.0.0.1:{free_port()}/0?connect_timeout=0.5")
    store = broker.key_value("notes")
    try:
        for attempt in (store.get("k"), store.put("k", b"v", expect=0), store.delete("k"), store.keys()):
            with pytest.raises(BrokerUnavailable, match="redis unreachable"):
                await attempt
    finally:
        await broker.close()
