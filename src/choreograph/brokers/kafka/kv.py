"""Key-value namespaces in compacted Kafka topics (the :class:`~choreograph.core.kv.KeyValueProvider` capability).

A namespace ``N`` is the topic ``<state_topic>.kv.N``: one partition (one
order), ``cleanup.policy=compact``, created on first use. Each store reads it
with its own consumer into a :class:`~.kv_view.KeyValueView` and catches up to
the topic's end before every read and every write, so a read sees every write
that returned before it, in any process. Compare-and-set is decided by log
order (the rules are in :mod:`.kv_view`):

1. catch up, and refuse a write whose expectation already fails
   (:class:`~choreograph.core.kv.KeyConflict`, nothing produced);
2. produce the record with the expected revision in a header;
3. read up to that record: if a concurrent write came first and the
   expectation failed there, every reader ignores the record — this writer
   appends a copy of the winning entry (so compaction cannot keep the loser
   as the key's state) and raises KeyConflict.

A revision is the offset of the record that won plus one, so it only grows. Costs per
write: two catch-ups (a ListOffsets round trip each) and one produce.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from choreograph.core.errors import BrokerError, BrokerUnavailable
from choreograph.core.kv import Entry, KeyConflict, check_key, check_namespace, check_value

from .config import KafkaConfig
from .kv_view import EXPECT_HEADER, ORPHAN_AGE, KeyValueView, headers_of
from .translation import translated

_TOPIC_EXISTS: Final = 36
COMPACTION_LAG_MS: Final = 24 * 3600 * 1000
"""``min.compaction.lag.ms`` of a namespace topic: the cleaner leaves the last day alone (see :mod:`.kv_view`)."""
_REPAIRS: Final = 5
"""Copies a writer that lost appends at most before it gives up repairing (another writer keeps racing)."""


class KafkaKeyValue:
    """A :class:`~choreograph.core.kv.KeyValueStore` for one namespace, a compacted single-partition topic."""

    def __init__(self, broker: KafkaKeyValues, namespace: str) -> None:
        self.namespace = check_namespace(namespace)
        self.topic = f"{broker.config.state_topic}.kv.{namespace}"
        self._broker = broker
        self._tp = TopicPartition(self.topic, 0)
        self._view = KeyValueView()
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    repair_after: float = ORPHAN_AGE
    """Seconds after which this store repairs a lost write its writer left unrepaired (see :mod:`.kv_view`)."""

    async def get(self, key: str) -> Entry | None:
        check_key(key)
        await self._fresh()
        state = self._view.live(key)
        return None if state is None or state.value is None else Entry(key, state.value, state.revision)

    async def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        check_value(check_key(key), value)
        await self._fresh()
        self._refuse(key, expect)
        offset, _ = await self._write(key, bytes(value), expect)
        return offset + 1  # the revision a plain record that won gives its key (see .kv_view)

    async def delete(self, key: str, *, expect: int | None = None) -> bool:
        check_key(key)
        await self._fresh()
        self._refuse(key, expect)
        if self._view.revision(key) == 0:
            return False  # nothing to delete: no record needed
        _, before = await self._write(key, None, expect)
        return before != 0

    async def keys(self, prefix: str = "") -> list[str]:
        await self._fresh()
        return sorted(k for k, s in self._view.keys.items() if s.value is not None and k.startswith(prefix))

    async def close(self) -> None:
        """Stop this store's consumer; the broker stays open. Idempotent.

        Using the store again afterwards reads the topic again from its start,
        as a new store would (so it behaves as the other backends' stores do).
        """
        async with self._lock:
            consumer, self._consumer = self._consumer, None
            self._view = KeyValueView()
        if consumer is not None:
            async with translated(f"close the reader of {self.topic!r}"):
                await consumer.stop()

    # ---------------------------------------------------------------- private

    def _refuse(self, key: str, expect: int | None) -> None:
        actual = self._view.revision(key)
        if expect is not None and expect != actual:
            raise KeyConflict(self.namespace, key, expect, actual)

    async def _write(self, key: str, value: bytes | None, expect: int | None) -> tuple[int, int]:
        """Produce and learn the outcome: (offset, live revision before) if it won; raise KeyConflict if not."""
        headers = {} if expect is None else {EXPECT_HEADER: str(expect)}
        offset = await self._produce(key, value, headers)
        await self._catch_up(through=offset)
        outcome = self._view.outcomes.pop(offset, None)
        if outcome is None:  # thousands of records applied meanwhile: its outcome was forgotten
            raise BrokerError(f"lost track of a write to {self.topic!r} at offset {offset}; read the key again")
        applied, before = outcome
        if applied:
            return offset, before
        await self._repair(key)
        raise KeyConflict(self.namespace, key, expect or 0, self._view.revision(key))

    async def _repair(self, key: str, *, lost: bool = True) -> None:
        """Append copies of the key's current entry until its last record states it (see :mod:`.kv_view`).

        ``lost``: this process's write lost, so one copy goes out whatever the log says now.
        """
        for attempt in range(_REPAIRS):
            await self._catch_up()
            if (attempt or not lost) and self._view.settled(key):
                return
            value, headers = self._view.copy(key)
            await self._produce(key, value, headers)

    async def _produce(self, key: str, value: bytes | None, headers: dict[str, str]) -> int:
        producer = await self._broker.producer()
        await self._reader()
        async with translated(f"write key {key!r} of {self.topic!r}"):
            sent = await producer.send_and_wait(
                self.topic, value, key=key.encode(), partition=0, headers=[(k, v.encode()) for k, v in headers.items()]
            )
        offset: int = sent.offset
        if offset < 0:
            raise BrokerError(f"kafka did not report the offset of a write to {self.topic!r}; cannot tell if it won")
        return offset

    async def _catch_up(self, through: int | None = None) -> None:
        """Apply every record up to the topic's end as of now (or through ``through``)."""
        consumer = await self._reader()
        async with self._lock, translated(f"read {self.topic!r}"):
            end = through + 1 if through is not None else (await consumer.end_offsets([self._tp]))[self._tp]
            if await consumer.position(self._tp) >= end:
                return
            # Paused between catch-ups: an idle store sends no fetches, and a resumed one fetches at once
            # instead of waiting for a long poll in flight to come back empty.
            consumer.resume(self._tp)
            try:
                while await consumer.position(self._tp) < end:
                    batch = await consumer.getmany(self._tp, timeout_ms=200, max_records=10_000)
                    for message in batch.get(self._tp, []):
                        key = _key_of(message)
                        if key is not None:
                            at = message.timestamp / 1000
                            self._view.apply(message.offset, key, message.value, headers_of(message), at)
            finally:
                consumer.pause(self._tp)

    async def _fresh(self) -> None:
        """Catch up, then repair what writers that are gone left unrepaired (see :mod:`.kv_view`)."""
        await self._catch_up()
        if self._view.unsettled:
            for key in self._view.orphans(time.time() - self.repair_after):
                await self._repair(key, lost=False)

    async def _reader(self) -> AIOKafkaConsumer:
        self._broker.check_open()
        if self._consumer is None:
            async with self._lock:
                if self._consumer is None:
                    await self._broker.producer()  # connects the broker (and its admin client)
                    await self._create()
                    consumer = AIOKafkaConsumer(**self._broker.consumer_options())
                    async with translated(f"read {self.topic!r}"):
                        await consumer.start()
                        consumer.assign([self._tp])
                        await consumer.seek_to_beginning(self._tp)
                        consumer.pause(self._tp)
                    self._consumer = consumer
                    self._broker.key_value_opened(self)
        return self._consumer

    async def _create(self) -> None:
        admin = self._broker.admin
        configs = {"cleanup.policy": "compact", "min.compaction.lag.ms": str(COMPACTION_LAG_MS)}
        topic = NewTopic(self.topic, 1, self._broker.config.replication_factor, topic_configs=configs)
        async with translated(f"create topic {self.topic!r}"):
            response = await admin.create_topics([topic])
            for error in getattr(response, "topic_errors", []):
                if error[1] not in (0, _TOPIC_EXISTS):
                    raise BrokerError(f"kafka could not create topic {self.topic!r}: error {error[1]} {error[-1]}")
            for _ in range(100):
                if await (await self._broker.producer()).partitions_for(self.topic):
                    return
                await asyncio.sleep(0.05)  # the new topic's metadata propagates
        raise BrokerUnavailable(f"kafka created topic {self.topic!r} but its metadata did not appear")


def _key_of(message: Any) -> str | None:
    """The record's key, or None for a record no store wrote (no key, or a key not UTF-8): it is skipped."""
    try:
        return None if message.key is None else str(message.key.decode())
    except UnicodeDecodeError:
        return None


class KafkaKeyValues:
    """The :class:`~choreograph.core.kv.KeyValueProvider` half of :class:`KafkaBroker`."""

    config: KafkaConfig
    _admin: AIOKafkaAdminClient | None

    def check_open(self) -> None:
        raise NotImplementedError  # provided by KafkaBroker

    async def producer(self) -> AIOKafkaProducer:
        raise NotImplementedError  # provided by KafkaBroker

    def consumer_options(self) -> dict[str, Any]:
        raise NotImplementedError  # provided by KafkaBroker

    @property
    def admin(self) -> AIOKafkaAdminClient:
        """The started admin client (after :meth:`producer`)."""
        assert self._admin is not None, "the kafka broker is not connected"
        return self._admin

    def key_value(self, namespace: str) -> KafkaKeyValue:
        """The store for ``namespace``: the compacted topic ``<state_topic>.kv.<namespace>``."""
        return KafkaKeyValue(self, namespace)

    def key_value_opened(self, store: KafkaKeyValue) -> None:
        """Remember a store holding a consumer, so :meth:`close_key_values` stops it."""
        self.__dict__.setdefault("_key_value_stores", set()).add(store)

    async def close_key_values(self) -> None:
        """Stop the consumers of every store of this broker (the broker's close calls it)."""
        stores: set[KafkaKeyValue] = self.__dict__.pop("_key_value_stores", set())
        for store in stores:
            await store.close()
