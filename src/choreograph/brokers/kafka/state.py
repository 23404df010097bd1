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
``dl|<id>``, ``group|<topic>|<group>``. Inbox records are kept in a set,
not in :attr:`StateTable.rows`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from choreograph.core.ids import new_id

INBOX_BATCH: str = "inboxes|"
INBOX_ONE: str = "inbox|"


class StateTable:
    """The state topic as a dict, kept up to date on demand. Safe to use concurrently from one event loop."""

    def __init__(self, consumer: AIOKafkaConsumer, producer: Any, topic: str) -> None:
        self._consumer = consumer
        self._producer = producer
        self._tp = TopicPartition(topic, 0)
        self.topic = topic
        self.rows: dict[str, bytes] = {}
        """Every row but inbox keys, as of the last read (plus this process's own writes)."""
        self._inbox: set[str] = set()
        """``<group>|<dedupe key>`` of every inbox key read or written."""
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
            if key.startswith(INBOX_BATCH):
                group = key[len(INBOX_BATCH) :].rpartition("|")[0]
                self._inbox.update(f"{group}|{k}" for k in json.loads(message.value))
                continue
            if key.startswith(INBOX_ONE):
                self._inbox.add(key[len(INBOX_ONE) :])
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

    def seen(self, group: str, keys: Iterable[str]) -> set[str]:
        """Return which of ``keys`` are in ``group``'s inbox, as far as this table knows (no I/O)."""
        inbox = self._inbox
        return {key for key in keys if f"{group}|{key}" in inbox}

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
        if inbox:
            if group is None:
                raise ValueError("inbox keys need their group")
            batch_key = f"{INBOX_BATCH}{group}|{new_id()}".encode()  # unique: compaction never drops a batch
            keys = json.dumps(list(inbox)).encode()
            futures.append(await self._producer.send(self.topic, keys, key=batch_key, partition=0))
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
            self._inbox.update(f"{group}|{k}" for k in inbox)
