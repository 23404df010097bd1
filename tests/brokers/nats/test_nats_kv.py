"""NATS key-value stores: bucket naming, key escaping, and errors translated like the rest of the backend."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from choreograph.brokers.nats import NatsBroker
from choreograph.brokers.nats.kv import decode_key, encode_key
from choreograph.core.errors import BrokerUnavailable
from choreograph.core.kv import MAX_KEY_LENGTH
from tests.brokers.processes import free_port

from .server import NatsServer

KEYS = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=MAX_KEY_LENGTH)


@given(KEYS)
def test_every_valid_key_maps_to_a_nats_key_and_back(key: str) -> None:
    encoded = encode_key(key)
    assert decode_key(encoded) == key
    # NATS's own rule (nats.js.kv._is_key_valid): these characters, no leading or trailing dot
    assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_/=")


@given(KEYS, KEYS)
def test_distinct_keys_stay_distinct(a: str, b: str) -> None:
    assert (encode_key(a) == encode_key(b)) == (a == b)


async def test_a_namespace_is_a_bucket_under_the_prefix(nats_server: NatsServer) -> None:
    prefix = f"kv{uuid.uuid4().hex[:6]}"
    broker = NatsBroker.from_url(f"{nats_server.url}?prefix={prefix}")
    try:
        store = broker.key_value("flows")
        await store.put("order 42".replace(" ", ":"), b"state")
        bucket = await broker.jetstream.key_value(f"{prefix}_kv_flows")
        assert await bucket.keys() == ["order=3A42"]
        status = await bucket.status()
        assert status.stream_info.config.max_msgs_per_subject == 1  # history 1: only the current entry is kept
    finally:
        await broker.close()


async def test_an_unreachable_server_is_broker_unavailable() -> None:
    broker = NatsBroker.from_url(f"nats://127.0.0.1:{free_port()}?connect_timeout=0.5")
    store = broker.key_value("notes")
    try:
        with pytest.raises(BrokerUnavailable):
            await store.put("k", b"v")
    finally:
        await broker.close()
