"""Kafka key-value stores on a real broker: the log decides, a stale write is ignored by every reader."""

from __future__ import annotations

import uuid

import pytest

from choreograph.brokers.kafka import KafkaBroker
from choreograph.brokers.kafka.kv_view import COPY_OF_HEADER, EXPECT_HEADER
from choreograph.core.errors import BrokerUnavailable
from tests.brokers.processes import free_port

from .server import TansuServer

OPTIONS = "idempotent=false&persistent=false"


def _url(server: TansuServer, state: str) -> str:
    return f"kafka://{server.bootstrap}?{OPTIONS}&state_topic={state}"


async def test_a_write_with_a_stale_expectation_in_the_log_changes_nothing(kafka_server: TansuServer) -> None:
    state = f"__kv_{uuid.uuid4().hex[:8]}"
    writer, reader = KafkaBroker.from_url(_url(kafka_server, state)), KafkaBroker.from_url(_url(kafka_server, state))
    try:
        store = writer.key_value("notes")
        first = await store.put("k", b"one", expect=0)
        second = await store.put("k", b"two", expect=first)
        # Another client appends a write that expects the first revision: it lost the race in the log.
        producer = await writer.producer()
        await producer.send_and_wait(
            store.topic, b"stale", key=b"k", partition=0, headers=[(EXPECT_HEADER, str(first).encode())]
        )
        for kv in (store, reader.key_value("notes")):  # this process's view, and a fresh reader from offset 0
            entry = await kv.get("k")
            assert entry is not None
            assert (entry.value, entry.revision) == (b"two", second)
        assert await store.put("k", b"three", expect=second) > second
    finally:
        await writer.close()
        await reader.close()


async def test_the_namespace_topic_is_named_after_the_state_topic(kafka_server: TansuServer) -> None:
    state = f"__kv_{uuid.uuid4().hex[:8]}"
    broker = KafkaBroker.from_url(_url(kafka_server, state))
    try:
        store = broker.key_value("schemas")
        assert store.topic == f"{state}.kv.schemas"
        await store.put("a", b"1")
        producer = await broker.producer()
        assert await producer.partitions_for(store.topic) == {0}  # one partition: one order
    finally:
        await broker.close()


async def test_an_unreachable_cluster_is_broker_unavailable() -> None:
    broker = KafkaBroker.from_url(f"kafka://127.0.0.1:{free_port()}?{OPTIONS}&request_timeout=1")
    store = broker.key_value("notes")
    try:
        with pytest.raises(BrokerUnavailable):
            await store.get("k")
    finally:
        await broker.close()


async def test_a_closed_store_reads_the_topic_again_when_used(kafka_server: TansuServer) -> None:
    broker = KafkaBroker.from_url(_url(kafka_server, f"__kv_{uuid.uuid4().hex[:8]}"))
    try:
        store = broker.key_value("notes")
        revision = await store.put("k", b"v")
        await store.close()
        await store.close()
        entry = await store.get("k")
        assert entry is not None
        assert (entry.value, entry.revision) == (b"v", revision)
    finally:
        await broker.close()


async def test_a_lost_write_its_writer_left_unrepaired_is_repaired_by_a_later_reader(kafka_server: TansuServer) -> None:
    broker = KafkaBroker.from_url(_url(kafka_server, f"__kv_{uuid.uuid4().hex[:8]}"))
    try:
        store = broker.key_value("notes")
        first = await store.put("k", b"one")
        # A writer appends a write that loses, then dies before appending its copy.
        producer = await broker.producer()
        stale = [(EXPECT_HEADER, str(first + 5).encode())]
        await producer.send_and_wait(store.topic, b"lost", key=b"k", partition=0, headers=stale)
        reader = broker.key_value("notes")
        reader.repair_after = 0.0  # the writer is long gone
        entry = await reader.get("k")
        assert entry is not None
        assert (entry.value, entry.revision) == (b"one", first)
        *_, last = await broker.read(store.topic)
        assert (last.key, last.value, last.headers[COPY_OF_HEADER]) == ("k", b"one", str(first))
        await store.close()
        assert await store.get("k") == entry  # read again from the start, the copy included
    finally:
        await broker.close()
