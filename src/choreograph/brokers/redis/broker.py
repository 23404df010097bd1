"""The Redis Streams broker: topics, publishing, replay, lag and dead letters (the store: :mod:`.dead_letters`).

A topic is ``partitions`` streams; a record goes to ``partition_for(key)``,
so records with one key stay in one stream, in order. A consumer group is a
Redis consumer group on each of those streams, and its members split the
partitions with leases (see :mod:`.subscription`). The records of one publish
call are one call of a Lua script appending to every partition they go to:
atomic, and — with ``appendfsync always`` — on disk before the call returns.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any, Final

from redis import exceptions as redis_errors

from choreograph.core.broker import (
    Capabilities,
    Delivery,
    PartitionLag,
    Position,
    Record,
    TopicInfo,
)
from choreograph.core.clock import Clock, SystemClock
from choreograph.core.enums import StartKind
from choreograph.core.errors import (
    BrokerError,
    BrokerUnavailable,
)
from choreograph.core.names import check_group, check_topic
from choreograph.core.options import settings
from choreograph.core.retention import LogSize, Retention

from . import records as rec
from . import retention, scripts
from .config import RedisConfig, parse_url
from .dead_letters import DeadLetterShelf
from .health import RedisHealth
from .keys import entry_id, last_delivered_before, offset_of
from .kv import KeyValueHashes
from .reset import GroupReset
from .session import RedisSession
from .session import due_ms as due_ms  # its home before session.py
from .subscription import RedisSubscription
from .translation import text
from .translation import translated as translated  # settling and subscription import it from here

_EARLIEST: Final = Position.earliest()


class RedisBroker(DeadLetterShelf, KeyValueHashes, GroupReset, RedisHealth):
    """Redis Streams as a choreograph broker (redis-py asyncio, standalone Redis >= 6.2).

    Safe to use concurrently from one event loop. Every method translates
    redis-py errors into :class:`~choreograph.core.errors.BrokerError`.
    """

    capabilities = Capabilities(
        per_key_order=True,
        persistent=True,
        replay=True,
        lag=True,
        native_delay=True,
        atomic_settle=True,
        cross_process=True,
        dead_letter_store=True,
        fenced_reset=True,
        # A fetch adds to the held set and backlogs, a settle removes what it settled; a fetch that must
        # rebalance waits for the settle in flight (RedisSubscription.fetch).
        fetch_while_settling=True,
    )

    def __init__(self, config: RedisConfig | str | None = None, /, *, clock: Clock | None = None,
                 client: Any = None, **legacy: RedisConfig | None) -> None:  # fmt: skip
        """A broker on the server ``config.url``; connects on first use.

        The shape every broker shares: ``XBroker(config=None, *, clock=None, client=None)``.
        ``client``: a ``redis.asyncio.Redis`` to use instead of one made from ``config.url``
        (built with ``decode_responses=False``; the broker reads XREADGROUP replies raw on it,
        and leaves it open on :meth:`close`). The older ``RedisBroker(url, config=...)`` still works.
        """
        config = settings(RedisConfig, config, legacy, "url", str)
        url = config.url
        self.session = RedisSession(url, config, clock or SystemClock(), client)
        """The client, keys, scripts and topic sizes this broker shares with its subscriptions."""
        session = self.session
        self.config = session.config
        self.clock: Clock = session.clock
        self.keys = session.keys
        self._url = url
        self.client: Any = session.client
        self.heartbeat_script = session.heartbeat_script
        self.leave_script = session.leave_script
        self._resubmit_script = session.resubmit_script
        self._purge_script = session.purge_script
        self.keepalive = session.keepalive
        """Renews the leases of this broker's members off the event loop (see :mod:`.leases`)."""
        self._last_trim = 0.0

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None) -> RedisBroker:
        """Build a broker from ``redis://host:port/db?partitions=8&lease_timeout=10&...``."""
        return cls(parse_url(url)[1], clock=clock)

    # -- Broker ---------------------------------------------------------------

    async def publish(self, topic: str, records: Sequence[Record]) -> None:
        """Append ``records`` in order, atomically (one script call); durable per the server's AOF setting.

        Safe to call concurrently. Records with one key keep their order.
        """
        check_topic(topic)
        self.check_open()
        if not records:
            return
        session = self.session
        await session.storage.verify_if_due()  # a GET at most once per interval; StorageLost once lost
        missing = None
        async with translated(f"publish to {topic!r}"):
            arguments = await session.append_arguments(topic, records, expect=True)
            try:
                # EVAL with the text: see subscription.settle. One script is atomic without a MULTI around it.
                await self.client.eval(scripts.PUBLISH, *arguments)
            except redis_errors.ResponseError as exc:
                if not str(exc).startswith(scripts.STORAGE_LOST):
                    raise
                missing = str(exc).partition(" ")[2]
        if missing is not None:  # nothing was written: the partition we wrote to before lost its data
            await session.verify_quietly(f"a publish to {topic!r}")
            raise session.storage.vanished(f"the partition meta {missing} of topic {topic!r}", "a publish")
        session.wrote(arguments)
        await self._maybe_trim()

    async def append_arguments(self, topic: str, records: Sequence[Record]) -> list[Any]:
        """Arguments of one PUBLISH script call appending ``records`` (a settle runs it fenced in its MULTI)."""
        return await self.session.append_arguments(topic, records)

    async def subscribe(self, topic: str, group: str, *, start: Position = _EARLIEST) -> RedisSubscription:
        """Join ``group`` on ``topic`` (creating both if needed); ``start`` applies only to a new group."""
        check_topic(topic), check_group(group)
        self.check_open()
        partitions = await self.partitions(topic)
        await self.session.storage.verify(f"joining group {group!r}")  # a worker resubscribing after an error
        async with translated(f"subscribe {group!r} to {topic!r}"):
            starts = await self._start_ids(topic, partitions, start)
            for p, first in enumerate(starts):
                with contextlib.suppress(redis_errors.ResponseError):  # BUSYGROUP: the group exists
                    await self.client.xgroup_create(self.keys.stream(topic, p), group, id=first, mkstream=True)
            await self.client.sadd(self.keys.groups(topic), group)
        subscription = RedisSubscription(self.session, topic, group, partitions)
        self.session.subscriptions.add(subscription)
        await subscription.join()
        return subscription

    async def ping(self) -> None:
        """Return if Redis answers PING within ``connect_timeout``; raise BrokerUnavailable otherwise."""
        if self.session.closed:
            raise BrokerUnavailable("the redis broker is closed")
        try:
            async with translated("ping"):
                await self.client.ping()
        except BrokerError as exc:
            raise BrokerUnavailable(str(exc)) from exc

    async def close(self) -> None:
        """Close every subscription and the connection pool. Idempotent; publishes are never buffered."""
        if self.session.closed:
            return
        self.session.closed = True
        for subscription in list(self.session.subscriptions):
            with contextlib.suppress(BrokerError):
                await subscription.close()
        if self.session.owns_client:
            with contextlib.suppress(redis_errors.RedisError, OSError):
                await self.client.aclose()

    # -- LagReporter, TopicAdmin, LogReader -----------------------------------

    async def topics(self) -> list[TopicInfo]:
        """Return every topic, sorted by name, with retained records (XLEN) and end offset."""
        self.check_open()
        async with translated("list topics"):
            registry = await self.client.hgetall(self.keys.topics)
            out = []
            for name in sorted(text(t) for t in registry):
                partitions = int(registry[name.encode()])
                pipe = self.client.pipeline(transaction=False)
                for p in range(partitions):
                    pipe.xlen(self.keys.stream(name, p))
                    pipe.hget(self.keys.stream_meta(name, p), "n")
                answers = await pipe.execute()
                records = sum(int(n) for n in answers[0::2])
                end = sum(int(n or 0) for n in answers[1::2])
                out.append(TopicInfo(name, partitions, records, end))
        return out

    async def lag(self, group: str | None = None) -> list[PartitionLag]:
        """Return ``end - committed`` per (topic, group, partition); committed is the oldest unsettled offset."""
        self.check_open()
        out: list[PartitionLag] = []
        async with translated("read lag"):
            registry = await self.client.hgetall(self.keys.topics)
            for name in sorted(text(t) for t in registry):
                partitions = int(registry[name.encode()])
                groups = sorted(text(g) for g in await self.client.smembers(self.keys.groups(name)))
                for grp in groups:
                    if group is not None and grp != group:
                        continue
                    for p in range(partitions):
                        out.append(await self._partition_lag(name, grp, p))
        return out

    async def _partition_lag(self, topic: str, group: str, p: int) -> PartitionLag:
        stream = self.keys.stream(topic, p)
        pipe = self.client.pipeline(transaction=False)
        pipe.xinfo_groups(stream)
        pipe.xpending(stream, group)
        pipe.hget(self.keys.stream_meta(topic, p), "n")
        infos, pending, end = await pipe.execute(raise_on_error=False)
        end_offset = int(end or 0)
        committed = end_offset
        if isinstance(infos, list):
            for info in infos:
                if text(info["name"]) == group:
                    committed = offset_of(info["last-delivered-id"]) + 1
        if isinstance(pending, dict) and pending.get("pending"):
            committed = min(committed, offset_of(pending["min"]))
        return PartitionLag(topic, group, p, end_offset, max(0, committed))

    async def read(self, topic: str, start: Position = _EARLIEST, *, limit: int = 1000) -> list[Delivery]:
        """Return up to ``limit`` records from ``start`` in (partition, offset) order. Never blocks."""
        self.check_open()
        async with translated(f"read {topic!r}"):
            partitions = await self._existing_partitions(topic)
            firsts = await self.start_offsets(topic, partitions, start)
            out: list[Delivery] = []
            for p, first in enumerate(firsts):
                if len(out) >= limit:
                    break
                entries = await self.client.xrange(
                    self.keys.stream(topic, p), entry_id(first), "+", count=limit - len(out)
                )
                out.extend(rec.entry_delivery(topic, p, sid, fields) for sid, fields in entries)
        return out

    # -- DeadLetterStore: inherited from DeadLetterShelf (dead_letters.py) ------

    # -- internals used by the subscription -------------------------------------

    def check_open(self) -> None:
        """Raise BrokerClosed after :meth:`close`."""
        self.session.check_open()

    def forget(self, subscription: object) -> None:
        """Drop a closed subscription."""
        self.session.forget(subscription)

    def parked_counts(self) -> dict[tuple[str, str], int]:
        """Records parked since this broker opened, per (topic, group): the server refused their dead
        letters (see ``settling.Settler.write``; ``core.broker.ParkReporter``)."""
        return self.session.parked.counts()

    async def partitions(self, topic: str) -> int:
        """Return the partition count of ``topic``, registering it with the configured count if new."""
        return await self.session.partitions(topic)

    async def _existing_partitions(self, topic: str) -> int:
        return await self.session.existing_partitions(topic)

    async def start_offsets(self, topic: str, partitions: int, start: Position) -> list[int]:
        """Return the first offset to read per partition for ``start``."""
        return await self.session.start_offsets(topic, partitions, start)

    async def _start_ids(self, topic: str, partitions: int, start: Position) -> list[str]:
        if start.kind == StartKind.EARLIEST:
            return ["0"] * partitions
        return [last_delivered_before(o) for o in await self.start_offsets(topic, partitions, start)]

    async def _maybe_trim(self) -> None:
        """Trim entries older than ``retention`` on every topic (see :mod:`.retention`), and dead letters older
        than ``dead_letter_retention``, at most once per ``retention_interval``."""
        max_age, keep = self.config.retention, self.config.dead_letter_retention
        now = time.monotonic()
        if (max_age is None and keep is None) or now - self._last_trim < self.config.retention_interval:
            return
        self._last_trim = now
        if keep is not None:
            async with translated("expire old dead letters"):
                stored_before = self.clock.now() - keep
                old = await self.client.zrangebyscore(self.keys.dead_letter_index, "-inf", f"({stored_before!r}")
            if old:
                await self.purge([text(i) for i in old], delete=True)
        if max_age is not None:
            async with translated("trim old records"):
                await retention.trim_records(self, self.clock.now() - max_age)

    def describe_retention(self) -> Retention:
        """Return the retention in effect (``retention``, 7 days by default); no I/O."""
        return retention.describe(self.config)

    async def log_size(self) -> LogSize:
        """Return entries and memory per topic (XLEN, MEMORY USAGE); reads no entries."""
        self.check_open()
        async with translated("measure the log"):
            return await retention.size(self)

    async def resolve_position(self, topic: str, start: Position) -> dict[int, int]:
        """Return partition -> first offset to read for ``start``."""
        self.check_open()
        async with translated(f"resolve a position in {topic!r}"):
            return dict(enumerate(await self.start_offsets(topic, await self._existing_partitions(topic), start)))
