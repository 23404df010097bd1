"""The NATS broker's log admin: lag, topics, reading the log, retention, log size and positions.

A mixin of :class:`~choreograph.brokers.nats.NatsBroker` (the ``LagReporter``,
``TopicAdmin`` and ``LogReader`` halves), kept apart so the broker module stays readable.
"""

from __future__ import annotations

from typing import Any, Final

from nats.aio.client import Client
from nats.js.client import JetStreamContext

from choreograph.brokers.nats import direct, retention
from choreograph.brokers.nats import naming as n
from choreograph.brokers.nats.config import NatsConfig
from choreograph.brokers.nats.native import translate as translate_headers
from choreograph.brokers.nats.translation import translated
from choreograph.core.broker import Delivery, PartitionLag, Position, TopicInfo
from choreograph.core.enums import StartKind
from choreograph.core.retention import LogSize, Retention

_EARLIEST: Final = Position.earliest()


class LogAdmin:
    """The lag, topic and log-reading half of :class:`NatsBroker`."""

    config: NatsConfig
    names: n.Names

    @property
    def connection(self) -> Client:
        raise NotImplementedError  # provided by NatsBroker

    async def _ready(self) -> JetStreamContext:
        raise NotImplementedError  # provided by NatsBroker

    async def _topic(self, topic: str, *, create: bool = True) -> int:
        raise NotImplementedError  # provided by NatsBroker

    async def _streams(self) -> list[Any]:
        js = await self._ready()
        with translated("list streams"):
            infos = await js.streams_info()
        return sorted(
            (
                i
                for i in infos
                if (i.config.metadata or {}).get(n.META_TOPIC)
                and (i.config.name or "").startswith(self.names.stream_prefix)
            ),
            key=lambda i: i.config.metadata[n.META_TOPIC],
        )

    async def _partition_records(self, js: JetStreamContext, info: Any) -> dict[int, int]:
        """Records stored per partition of a topic's stream (its partition subjects; resubmits not counted)."""
        topic = info.config.metadata[n.META_TOPIC]
        base = self.names.partition_subject(topic, 0).rpartition(".")[0]
        with translated("stream subjects"):
            detail = await js.stream_info(info.config.name, subjects_filter=f"{base}.*")
        counts = dict.fromkeys(range(int(info.config.metadata.get(n.META_PARTITIONS, 1))), 0)
        for subject, count in (detail.state.subjects or {}).items():
            tail = subject.rpartition(".")[2]
            if tail.isdigit() and int(tail) in counts:
                counts[int(tail)] = int(count)
        return counts

    async def lag(self, group: str | None = None) -> list[PartitionLag]:
        """Return lag per (topic, group, partition) in per-partition positions, as every backend does.

        A topic's partitions share one stream, whose sequence numbers count all
        of them, so positions are not stream sequences: ``end_offset`` is the
        number of records stored in the partition, and ``committed`` is that
        minus the records the group has not settled yet (pending, or delivered
        but not acknowledged) — the position of the next record to consume.
        ``oldest_offset`` is the consumer's ack floor + 1: every record of the
        partition before that stream sequence is acknowledged, so the first one
        at or after it (:meth:`read_partition`) is the oldest the group has not
        handled — unless a resubmitted dead letter (on its own subject, not read)
        holds the floor: then it is the partition's first record after that one.
        """
        js = await self._ready()
        out = []
        for info in await self._streams():
            topic = info.config.metadata[n.META_TOPIC]
            with translated("consumer info"):
                consumers = await js.consumers_info(info.config.name)
            ours = []
            for consumer in consumers:
                meta = consumer.config.metadata or {}
                name = meta.get(n.META_GROUP)
                if name is not None and (group is None or name == group):
                    behind = (consumer.num_pending or 0) + (consumer.num_ack_pending or 0)
                    floor = consumer.ack_floor.stream_seq if consumer.ack_floor is not None else 0
                    ours.append((name, int(meta.get(n.META_PARTITION, 0)), behind, int(floor or 0) + 1))
            if not ours:
                continue
            records = await self._partition_records(js, info)
            for name, partition, behind, oldest in ours:
                end = records.get(partition, 0)
                out.append(PartitionLag(topic, name, partition, end, max(0, end - behind), oldest))
        return sorted(out, key=lambda lag: (lag.topic, lag.group, lag.partition))

    async def topics(self) -> list[TopicInfo]:
        """Return every topic of this prefix, sorted by name; records and end are summed over its partitions.

        As with :meth:`lag`, a partition's end is its number of stored records, not a stream sequence.
        """
        js = await self._ready()
        out = []
        for info in await self._streams():
            stored = sum((await self._partition_records(js, info)).values())
            partitions = int(info.config.metadata.get(n.META_PARTITIONS, 1))
            out.append(TopicInfo(info.config.metadata[n.META_TOPIC], partitions, stored, stored))
        return out

    async def read(self, topic: str, start: Position = _EARLIEST, *, limit: int = 1000) -> list[Delivery]:
        """Return up to ``limit`` records from ``start`` in (partition, offset) order. Does not block."""
        partitions = await self._topic(topic, create=False)
        nc, stream, timeout = self.connection, self.names.stream(topic), self.config.request_timeout
        out: list[Delivery] = []
        for p in range(partitions):
            if len(out) >= limit or start.kind == StartKind.LATEST:
                break
            subject = self.names.partition_subject(topic, p)
            with translated("read"):
                if start.kind == StartKind.TIME:
                    found = await direct.scan_from_time(
                        nc, stream, subject, start_time=start.time or 0.0, limit=limit - len(out), timeout=timeout
                    )
                else:
                    first = (start.offsets or {}).get(p, 1) if start.kind == StartKind.OFFSETS else 1
                    found = await direct.scan(
                        nc, stream, subject, start_seq=first, limit=limit - len(out), timeout=timeout
                    )
            for stored in found:
                headers, key, _, fault = translate_headers(stored.headers, stored.seq, stored.subject)
                out.append(Delivery(topic, p, stored.seq, stored.data, key, headers, stored.timestamp, fault=fault))
        return out

    async def read_partition(self, topic: str, partition: int, offset: int, *, limit: int = 1) -> list[Delivery]:
        """Return up to ``limit`` records of ``partition`` from stream sequence ``offset``; one direct get."""
        await self._topic(topic, create=False)
        subject = self.names.partition_subject(topic, partition)
        with translated("read"):
            found = await direct.scan(
                self.connection,
                self.names.stream(topic),
                subject,
                start_seq=offset,
                limit=limit,
                timeout=self.config.request_timeout,
            )
        out = []
        for stored in found:
            headers, key, _, fault = translate_headers(stored.headers, stored.seq, stored.subject)
            out.append(Delivery(topic, partition, stored.seq, stored.data, key, headers, stored.timestamp, fault=fault))
        return out

    # -- retention (see .retention) ----------------------------------------------------

    def describe_retention(self) -> Retention:
        """Return the retention of the streams this broker creates (``retention``, 7 days by default); no I/O."""
        return retention.describe(self.config)

    async def log_size(self) -> LogSize:
        """Return messages and bytes per topic from one stream listing; reads no messages."""
        return retention.size(await self._streams())

    async def resolve_position(self, topic: str, start: Position) -> dict[int, int]:
        """Return partition -> first stream sequence to read for ``start``."""
        partitions = await self._topic(topic, create=False)
        js = await self._ready()
        with translated(f"resolve a position in {topic!r}"):
            last = (await js.stream_info(self.names.stream(topic))).state.last_seq
            return await retention.resolve(
                self.connection, self.names, topic, partitions, last, start, self.config.request_timeout
            )
