"""The state topic: a compacted Kafka topic read into memory as a key -> value table.

Kafka has no key-value store, so the broker keeps its own small state in one
compacted topic (one partition, so one order): inbox keys of each group,
attempt counts and retry due times of records that failed, dead letters, and
which groups read which topics. Every process reads the whole topic once and
then tails it. A ``None`` value is a tombstone.

Freshness, from cheapest to strongest:

- a process sees its own acknowledged writes at once (:meth:`StateTable.write`
  applies them locally; the same records read back later change nothing);
- :meth:`StateTable.poll` applies what the reader has fetched already, without
  a round trip — other processes' writes arrive this way, a little later;
- :meth:`StateTable.refresh` catches up to the end offset (one ``ListOffsets``
  round trip plus the read), so what follows sees every write any process made
  before the call. Subscriptions call it when they are assigned partitions,
  which is what lets a new owner see every inbox key and retry state the
  previous owner wrote; admin reads (dead letters, lag) call it too.

The table follows the topic's order even though local writes are applied
early: a record read back that is older than a local write of the same key
(by state-topic offset) is ignored.

Key namespaces: ``inboxes|<group>|<id>`` (a JSON list of dedupe keys, one
record per settled batch), ``inbox|<group>|<dedupe key>`` (one key; written by
earlier versions, still read), ``retry|<group>|<topic>|<p>|<offset>``,
``dl|<id>``, ``group|<topic>|<group>``. Inbox records are kept apart from
:attr:`StateTable.rows`, as key -> time written.

Inbox retention: a dedupe key counts as seen for ``inbox_retention`` seconds
after its record was written (the record's timestamp, set from the broker's
clock). Past that it is forgotten in memory, and :meth:`StateTable.expire`
deletes the old inbox records from the topic with tombstones, so neither the
table nor the topic grows without bound.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from choreograph.core.clock import Clock, SystemClock
from choreograph.core.ids import new_id

INBOX_BATCH: str = "inboxes|"
INBOX_ONE: str = "inbox|"


class StateTable:
    """The state topic as a dict, kept up to date on demand. Safe to use concurrently from one event loop."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: Any,
        topic: str,
        *,
        clock: Clock | None = None,
        inbox_retention: float = 7 * 24 * 3600.0,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._tp = TopicPartition(topic, 0)
        self.topic = topic
        self._clock: Clock = clock or SystemClock()
        self.inbox_retention = inbox_retention
        self.rows: dict[str, bytes] = {}
        """Every row but inbox keys, as of the last read (plus this process's own writes)."""
        self._inbox: dict[str, float] = {}
        """``<group>|<dedupe key>`` -> when its newest inbox record was written."""
        self._inbox_records: dict[str, tuple[float, list[str]]] = {}
        """Row key of every inbox record not deleted yet -> when it was written, and its ``<group>|<key>``s."""
        self._next_expiry = 0.0
        self._ahead: dict[str, int] = {}
        """Keys written by this process and applied before being read back: key -> state-topic offset."""
        self._lock = asyncio.Lock()
        self._started = False

    async def refresh(self) -> None:
        """Read every write made before this call (by any process): one ListOffsets round trip plus the read."""
        async with self._lock:
            await self._start()
            end = (await self._consumer.end_offsets([self._tp]))[self._tp]
            while await self._consumer.position(self._tp) < end:
                batch = await self._consumer.getmany(self._tp, timeout_ms=200, max_records=10_000)
                self._apply(batch.get(self._tp, []))

    async def poll(self) -> None:
        """Apply what the reader fetched in the background; never waits on the broker.

        Does nothing before the first :meth:`refresh` or while another read is in progress.
        """
        if not self._started or self._lock.locked():
            return
        async with self._lock:
            batch = await self._consumer.getmany(self._tp, timeout_ms=0, max_records=10_000)
            self._apply(batch.get(self._tp, []))

    async def _start(self) -> None:
        if not self._started:
            self._consumer.assign([self._tp])
            await self._consumer.seek_to_beginning(self._tp)
            self._started = True

    def _apply(self, messages: Sequence[Any]) -> None:
        rows, ahead = self.rows, self._ahead
        for message in messages:
            key = message.key.decode()
            if key.startswith((INBOX_BATCH, INBOX_ONE)):
                self._apply_inbox(key, message.value, message.timestamp / 1000)
                continue
            mine = ahead.get(key)
            if mine is not None:
                if message.offset < mine:
                    continue  # older than what this process wrote (and applied) already
                del ahead[key]
            if message.value is None:
                rows.pop(key, None)
            else:
                rows[key] = message.value

    def _apply_inbox(self, key: str, value: bytes | None, written: float) -> None:
        inbox = self._inbox
        if value is None:  # a tombstone: the record expired, and its keys with it (unless written again since)
            when, names = self._inbox_records.pop(key, (0.0, []))
            for name in names:
                if inbox.get(name) == when:
                    del inbox[name]
            return
        if key.startswith(INBOX_BATCH):
            group = key[len(INBOX_BATCH) :].rpartition("|")[0]
            names = [f"{group}|{k}" for k in json.loads(value)]
        else:
            names = [key[len(INBOX_ONE) :]]
        self._inbox_records[key] = (written, names)
        for name in names:
            if inbox.get(name, written) <= written:
                inbox[name] = written

    def seen(self, group: str, keys: Iterable[str]) -> set[str]:
        """Return which of ``keys`` are in ``group``'s inbox, as far as this table knows (no I/O).

        A key counts for ``inbox_retention`` seconds after it was written.
        """
        inbox, cutoff = self._inbox, self._clock.now() - self.inbox_retention
        return {key for key in keys if inbox.get(f"{group}|{key}", cutoff - 1) >= cutoff}

    async def expire_if_due(self) -> int:
        """Run :meth:`expire` once per tenth of ``inbox_retention`` (at most hourly); return what it deleted."""
        now = self._clock.now()
        if now < self._next_expiry:
            return 0
        self._next_expiry = now + min(3600.0, self.inbox_retention / 10)
        return await self.expire()

    async def expire(self) -> int:
        """Forget inbox keys past ``inbox_retention`` and delete their records from the topic; return how many.

        Any process may run it; deleting a record twice is harmless. Other
        rows (retry state, dead letters, groups) never expire.
        """
        cutoff = self._clock.now() - self.inbox_retention
        old_keys = [name for name, written in self._inbox.items() if written < cutoff]
        for name in old_keys:
            del self._inbox[name]
        old_records = [key for key, (written, _) in self._inbox_records.items() if written < cutoff]
        if old_records:
            futures = [
                await self._producer.send(self.topic, None, key=key.encode(), partition=0) for key in old_records
            ]
            await asyncio.gather(*futures)
            for key in old_records:
                self._inbox_records.pop(key, None)
        return len(old_records)

    async def write(
        self, rows: Iterable[tuple[str, bytes | None]], *, group: str | None = None, inbox: Sequence[str] = ()
    ) -> None:
        """Append ``rows`` (``None`` deletes) and ``group``'s ``inbox`` keys; wait until all are acknowledged.

        The inbox keys go in one record, so a settled batch costs one record
        however many events it holds. On return the writes are durable (per
        the producer's ``acks``) and visible in this table; if it raises, none
        of them was applied locally (some may still have reached the topic).
        """
        rows = list(rows)
        futures = [await self._producer.send(self.topic, value, key=key.encode(), partition=0) for key, value in rows]
        stamp = int(self._clock.now() * 1000)  # the record's timestamp (ms): applied locally as read back later
        batch_key = ""
        if inbox:
            if group is None:
                raise ValueError("inbox keys need their group")
            batch_key = f"{INBOX_BATCH}{group}|{new_id()}"  # unique: compaction keeps it until it expires
            keys = json.dumps(list(inbox)).encode()
            futures.append(
                await self._producer.send(self.topic, keys, key=batch_key.encode(), partition=0, timestamp_ms=stamp)
            )
        if not futures:
            return
        written = await asyncio.gather(*futures)
        for (key, value), meta in zip(rows, written, strict=False):
            if value is None:
                self.rows.pop(key, None)
            else:
                self.rows[key] = value
            if meta.offset >= 0:
                self._ahead[key] = max(meta.offset, self._ahead.get(key, -1))
        if inbox:
            self._apply_inbox(batch_key, keys, stamp / 1000)
