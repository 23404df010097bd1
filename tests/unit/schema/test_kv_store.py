"""The key-value schema store: compare-and-set races end with one history, on memory and on SQLite."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from choreograph.brokers import open_broker
from choreograph.core.broker import Broker
from choreograph.core.kv import KeyValueProvider, MemoryKeyValue
from choreograph.runtime.schema_store import close_schema_store, open_schema_store
from choreograph.schema import Compatibility, IncompatibleSchema, SchemaConflict, SchemaRegistry, SchemaStoreError
from choreograph.schema.kv_store import (
    KeyValueSchemaStore,
    LoopThread,
    decode_subject,
    encode_subject,
    subject_key,
)
from choreograph.schema.store import Subject
from tests.brokers.stores_scenarios import (
    ItemV1,
    ItemV2,
    ItemV3,
    assert_one_history,
    flow_store_agrees_with_reference,
    schema_for,
    schema_race,
)


class InterleavedKeyValue(MemoryKeyValue):
    """A real in-memory store where another writer's change lands between our read and our first write."""

    def __init__(self, meanwhile: Callable[[MemoryKeyValue], Any]) -> None:
        super().__init__("schemas")
        self._meanwhile: Callable[[MemoryKeyValue], Any] | None = meanwhile

    async def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        if self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            await meanwhile(self)
        return await super().put(key, value, expect=expect)


@pytest.fixture
def loop() -> Any:
    thread = LoopThread()
    yield thread
    thread.close()


def _other_writer_registers(event: type[Any], event_type: str) -> Callable[[MemoryKeyValue], Any]:
    async def write(kv: MemoryKeyValue) -> None:
        # Another process's registry, on the same namespace, wins the race.
        other = KeyValueSchemaStore(kv, _direct)
        await other._change(event_type, lambda s: _add(s, event, event_type))

    return write


async def _direct_await(coro: Any) -> Any:
    return await coro


def _direct(coro: Any) -> Any:
    # The interleaved writer awaits _change itself, on the loop already running; it never needs a runner.
    raise AssertionError("not used")


def _add(subject: Subject, event: type[Any], event_type: str) -> Subject:
    from choreograph.schema.derive import fingerprint
    from choreograph.schema.store import SchemaRecord

    schema = schema_for(event, event_type)
    record = SchemaRecord(event_type, event.event_version(), schema, fingerprint(schema), 1.0)
    return Subject(event_type, subject.mode, (*subject.records, record))


def test_a_version_incompatible_with_what_won_the_race_is_refused(loop: LoopThread) -> None:
    # Given v1, and another process that registers v2 (note: str) between our read and our write
    kv = InterleavedKeyValue(_other_writer_registers(ItemV2, "race.a"))
    store = KeyValueSchemaStore(kv, loop.run)
    registry = SchemaRegistry(store)
    store.add(_add(Subject("race.a"), ItemV1, "race.a").records[0])
    # When we register v3 (note: int), checked against v1 only when we read
    with pytest.raises(IncompatibleSchema, match="note"):
        registry.register(schema_for(ItemV3, "race.a"))
    # Then the write lost, the check ran again on v1+v2 and refused: one history, v1 and v2
    assert store.conflicts == 1
    assert registry.versions("race.a") == [1, 2]


def test_a_compatible_version_is_added_after_what_won_the_race(loop: LoopThread) -> None:
    # Given another process that sets the mode of the type while we register v2
    async def set_mode(kv: MemoryKeyValue) -> None:
        await KeyValueSchemaStore(kv, _direct)._change(
            "race.b", lambda s: Subject(s.event_type, Compatibility.NONE, s.records)
        )

    store = KeyValueSchemaStore(InterleavedKeyValue(set_mode), loop.run)
    store.add(_add(Subject("race.b"), ItemV1, "race.b").records[0])
    # When v2 is registered
    SchemaRegistry(store).register(schema_for(ItemV2, "race.b"))
    # Then both changes stand
    subject = store.subject("race.b")
    assert [r.version for r in subject.records] == [1, 2]
    assert subject.mode is Compatibility.NONE


def test_the_same_version_with_another_schema_is_a_conflict(loop: LoopThread) -> None:
    store = KeyValueSchemaStore(MemoryKeyValue("schemas"), loop.run)
    v2 = _add(Subject("race.c"), ItemV2, "race.c").records[0]
    other = _add(Subject("race.c"), ItemV3, "race.c").records[0]
    assert store.add(v2)
    with pytest.raises(SchemaConflict):
        store.add(type(v2)(v2.event_type, 2, other.schema, other.fingerprint))


def test_long_type_names_and_unreadable_documents(loop: LoopThread) -> None:
    kv = MemoryKeyValue("schemas")
    store = KeyValueSchemaStore(kv, loop.run)
    long_type = "t" * 240
    store.add(_add(Subject(long_type), ItemV1, long_type).records[0])
    assert store.event_types() == [long_type]
    assert subject_key(long_type).startswith("h.")
    assert decode_subject("k", encode_subject(store.subject(long_type))) == store.subject(long_type)
    loop.run(kv.put("t.broken", b"{not json"))
    with pytest.raises(SchemaStoreError, match=r"t\.broken"):
        store.subject("broken")


def test_loop_thread_refuses_to_wait_for_itself(loop: LoopThread) -> None:
    async def inner() -> None:
        loop.run(_direct_await(None))

    with pytest.raises(RuntimeError, match="own loop"):
        loop.run(inner())


def test_two_sqlite_broker_instances_racing_end_with_one_history(tmp_path: Path) -> None:
    # Given two SQLite brokers on one file (two processes, as far as the file can tell), each with a store
    url = f"sqlite:///{tmp_path}/kv.db"
    threads = [LoopThread() for _ in range(2)]

    async def opened() -> Broker:
        return open_broker(url)

    brokers = [t.run(opened()) for t in threads]

    async def key_value(broker: Broker) -> Any:
        assert isinstance(broker, KeyValueProvider)
        return broker.key_value("schemas")

    stores = [
        KeyValueSchemaStore(t.run(key_value(b)), t.run, on_close=b.close) for t, b in zip(threads, brokers, strict=True)
    ]
    try:
        SchemaRegistry(stores[0]).register(schema_for(ItemV1, "race.d"))
        barrier, outcomes = threading.Barrier(2), {}

        def contend(which: int) -> None:
            barrier.wait(30)
            try:
                SchemaRegistry(stores[which]).register(schema_for((ItemV2, ItemV3)[which], "race.d"))
                outcomes[which] = "registered"
            except (IncompatibleSchema, SchemaConflict) as exc:
                outcomes[which] = type(exc).__name__

        workers = [threading.Thread(target=contend, args=(i,)) for i in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        # Then exactly one won, and both read the same history
        assert sorted(outcomes.values()) == ["IncompatibleSchema", "registered"]
        assert stores[0].subject("race.d") == stores[1].subject("race.d")
        assert len(stores[0].subject("race.d").records) == 2
    finally:
        for store, thread in zip(stores, threads, strict=True):
            store.close()
            thread.close()


def test_two_processes_on_a_sqlite_file_end_with_one_history(tmp_path: Path) -> None:
    # The SQLite log keeps its schemas table (SqliteSchemaStore); check and add are one write transaction.
    result = schema_race(f"sqlite:///{tmp_path}/race.db", rounds=3)
    assert_one_history(result)


def test_broker_store_is_chosen_by_capability(tmp_path: Path) -> None:
    from choreograph.core.errors import ConfigurationError
    from choreograph.schema.stores import SqliteSchemaStore

    store = open_schema_store(f"sqlite:///{tmp_path}/cap.db")
    assert isinstance(store, SqliteSchemaStore)
    close_schema_store(store)
    with pytest.raises(ConfigurationError, match="no broker database"):
        open_schema_store(f"sqlite:///{tmp_path}/absent.db", must_exist=True)
    with pytest.raises(ConfigurationError, match="holds no schema registry"):
        open_schema_store("memory://")


def test_flow_store_on_the_sqlite_key_value_store_answers_as_the_reference(tmp_path: Path) -> None:
    flow_store_agrees_with_reference(f"sqlite:///{tmp_path}/flows.db")
