"""The NATS JetStream broker: topics are streams, groups are durable pull consumers per partition.

See :mod:`choreograph.brokers.nats.naming` for the full mapping and
``docs/backends/nats.md`` for the guarantees and their trade-offs. Publishing
is in :mod:`.publishing`; lag, topics, reading the log and retention in
:mod:`.log_admin`; the dead-letter store in :mod:`.dead_letter_store`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any, Final

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import api
from nats.js.client import JetStreamContext

from choreograph.brokers.nats import naming as n
from choreograph.brokers.nats import retention
from choreograph.brokers.nats.config import NatsConfig, parse_url
from choreograph.brokers.nats.connect import connect
from choreograph.brokers.nats.dead_letter_store import DeadLetterShelf
from choreograph.brokers.nats.dead_letters import DeadLetterBucket
from choreograph.brokers.nats.health import NatsHealth
from choreograph.brokers.nats.keepalive import Keepalive
from choreograph.brokers.nats.kv import KeyValueBuckets
from choreograph.brokers.nats.log_admin import LogAdmin
from choreograph.brokers.nats.publisher import ATOMIC_LIMIT, FAST_LIMIT, BatchPublisher
from choreograph.brokers.nats.publishing import Publishing, Send
from choreograph.brokers.nats.reset import GroupReset
from choreograph.brokers.nats.subscription import NatsSubscription
from choreograph.brokers.nats.translation import translated
from choreograph.core.broker import Capabilities, ParkLedger, Position
from choreograph.core.clock import Clock, SystemClock
from choreograph.core.enums import StartKind
from choreograph.core.errors import BrokerClosed, BrokerError, BrokerUnavailable, StorageLost, UnknownTopic
from choreograph.core.names import check_group, check_topic
from choreograph.core.partitioning import RoundRobin
from choreograph.core.redaction import redact_text
from choreograph.core.storage_marker import StorageMarker

_EARLIEST: Final = Position.earliest()
_STREAM_IN_USE: Final = 10058
_EPOCH_KEY: Final = "epoch"


# Publishing comes before DeadLetterShelf: its send_acked must win over the shelf's placeholder.
class NatsBroker(Publishing, DeadLetterShelf, LogAdmin, KeyValueBuckets, GroupReset, NatsHealth):
    """A broker on NATS JetStream. Connects on first use; safe to share between tasks of one event loop."""

    capabilities = Capabilities(
        # Partition leases keep a key's records with one member; a handover
        # hands records back only once no pull of the old owner can deliver, so
        # the next owner gets them first, in stream order (docs/backends/nats.md).
        per_key_order=True,
        persistent=True,
        replay=True,
        lag=True,
        native_delay=True,
        atomic_settle=False,
        cross_process=True,
        dead_letter_store=True,
        fenced_reset=True,
        # A fetch only takes from buffers and the held set it adds to; a settle only removes from it.
        fetch_while_settling=True,
    )

    def __init__(
        self, config: NatsConfig | None = None, *, clock: Clock | None = None, client: Client | None = None
    ) -> None:
        """A broker on the servers ``config.servers``; connects on first use.

        The shape every broker shares: ``XBroker(config=None, *, clock=None, client=None)``.
        ``clock`` is kept as ``self.clock`` for callers; NATS itself stamps records and times
        redeliveries on the server. ``client``: a connected ``nats.aio.client.Client`` to use
        instead of connecting (the broker sets it to reconnect forever, and leaves it open on
        :meth:`close`); the lease keepalive still connects to ``config.servers`` on its own.
        """
        self.config = config or NatsConfig()
        self.clock: Clock = clock or SystemClock()
        self._client = client
        self.names = n.Names(self.config.prefix)
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._partitions: dict[str, int] = {}
        self._batched: dict[str, bool] = {}
        """Topics whose stream takes fast-ingest batches (``allow_batched``)."""
        self._groups: set[tuple[str, str]] = set()
        self._subscriptions: set[NatsSubscription] = set()
        self._round_robin = RoundRobin()
        self._dlq: DeadLetterBucket | None = None
        self.parked = ParkLedger()
        """Records parked because their dead letter could not be stored (see NatsSubscription.settle)."""
        self._publisher: BatchPublisher | None = None
        self._inbox_batches: tuple[Send, int] | None = None
        """How inbox keys go in batches (fast-ingest, else atomic), with the batch limit; None: one by one."""
        self.keepalive = Keepalive(self.config)
        """Renews the partition leases of this broker's members off the event loop (see :mod:`.keepalive`)."""
        self._meta_bucket = f"{self.config.prefix}_meta"
        self.storage = StorageMarker(
            self._read_epoch,
            self._create_epoch,
            broker=f"NATS at {redact_text(', '.join(self.config.servers))}",
            where=f"key {_EPOCH_KEY!r} of bucket {self._meta_bucket}",
        )
        """The deployment marker: StorageLost once the server lost its JetStream data under this broker."""
        self._reconnects_seen = 0

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None) -> NatsBroker:
        """Build a broker from ``nats://host:port[,host:port...][?option=value...]``. Does not connect."""
        return cls(parse_url(url), clock=clock)

    # -- connection -----------------------------------------------------------

    @property
    def connection(self) -> Client:
        """The NATS connection (after the first operation)."""
        if self._nc is None:
            raise BrokerClosed("the NATS broker is not connected")
        return self._nc

    @property
    def jetstream(self) -> JetStreamContext:
        """The JetStream context (after the first operation)."""
        if self._js is None:
            raise BrokerClosed("the NATS broker is not connected")
        return self._js

    async def _ready(self) -> JetStreamContext:
        if self._closed:
            raise BrokerClosed("the NATS broker is closed")
        if self._js is not None:
            return self._js
        async with self._lock:
            if self._js is None:
                await self._connect()
        assert self._js is not None
        return self._js

    async def _connect(self) -> None:
        config = self.config
        nc = self._client if self._client is not None else await connect(config)
        nc.options["max_reconnect_attempts"] = -1  # from now on, ride out server restarts and failovers
        js = nc.jetstream(timeout=config.request_timeout)
        publisher = BatchPublisher(nc)
        try:
            await self._buckets(js)
            self._inbox_batches = await _inbox_batching(js, publisher, f"KV_{self.names.inbox_bucket}")
        except BaseException:
            if self._client is None:
                await nc.close()
            raise
        self._nc, self._js = nc, js
        self._publisher = publisher
        self._dlq = DeadLetterBucket(nc, js, self.names.dlq_bucket, config.request_timeout)
        self._reconnects_seen = nc.stats["reconnects"]
        await self.storage.ensure()

    async def check_storage(self, why: str = "periodic check") -> None:
        """Raise StorageLost if the server lost its data: the marker is read after a reconnect, else when due.

        Cheap: an integer comparison and a clock reading, unless a check is due.
        """
        storage = self.storage
        storage.check()
        nc = self._nc
        if nc is not None and nc.stats["reconnects"] != self._reconnects_seen:
            reconnects = nc.stats["reconnects"]
            await storage.verify("a reconnect")
            self._reconnects_seen = reconnects  # only once read: an outage meanwhile leaves it for the next call
        elif storage.due():
            await storage.verify_if_due(why)

    async def lost_storage(self, failure: Exception, why: str) -> bool:
        """After ``failure`` (a lease renewal, a pull): whether the server lost its data (see :attr:`storage`).

        The marker is read when the periodic check is due, or at once when something was not found;
        never more than that during an outage (each read would wait out the request timeout).
        """
        storage = self.storage
        if storage.lost is not None:
            return True
        if not (storage.due() or "not found" in str(failure).lower()):
            return False
        try:
            await storage.verify(f"{why} ({failure})")
        except StorageLost:
            return True
        except BrokerError:
            pass  # unreachable: an outage, not a loss; the next round tries again
        return False

    async def _read_epoch(self) -> str | None:
        js = self.jetstream
        with translated(f"read the deployment marker in {self._meta_bucket}"):
            try:
                entry = await (await js.key_value(self._meta_bucket)).get(_EPOCH_KEY)
            except (nats.js.errors.BucketNotFoundError, nats.js.errors.KeyNotFoundError, nats.js.errors.NotFoundError):
                return None
        return None if entry.value is None else entry.value.decode()

    async def _create_epoch(self, epoch: str) -> str:
        js = self.jetstream
        config = self.config
        storage = api.StorageType.FILE if config.storage == "file" else api.StorageType.MEMORY
        with translated(f"store the deployment marker in {self._meta_bucket}"):
            try:
                kv = await js.create_key_value(
                    api.KeyValueConfig(bucket=self._meta_bucket, history=1, storage=storage, replicas=config.replicas)
                )
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _STREAM_IN_USE:
                    raise
                kv = await js.key_value(self._meta_bucket)
            with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
                await kv.create(_EPOCH_KEY, epoch.encode())  # only if absent: concurrent first starts agree
            entry = await kv.get(_EPOCH_KEY)
        return epoch if entry.value is None else entry.value.decode()

    async def _buckets(self, js: JetStreamContext) -> None:
        config = self.config
        storage = api.StorageType.FILE if config.storage == "file" else api.StorageType.MEMORY
        common: dict[str, Any] = {"replicas": config.replicas, "storage": storage, "direct": True, "history": 1}
        specs = (
            (self.names.inbox_bucket, config.inbox_retention),
            (self.names.lease_bucket, config.lease_timeout),
            (self.names.dlq_bucket, config.dead_letter_retention),
        )
        for bucket, ttl in specs:
            with translated(f"create bucket {bucket}"):
                try:
                    await js.create_key_value(api.KeyValueConfig(bucket=bucket, ttl=ttl, **common))
                except nats.js.errors.BadRequestError as exc:
                    if exc.err_code != _STREAM_IN_USE:
                        raise
                    await js.key_value(bucket)  # exists with other settings: use it as it is

    async def ping(self) -> None:
        """Return if a JetStream-enabled server answers; raise BrokerUnavailable otherwise.

        Takes at most ``request_timeout`` seconds (plus ``connect_timeout`` on first use).
        """
        if self._closed:
            raise BrokerUnavailable("the NATS broker is closed")
        try:
            js = await self._ready()
        except BrokerClosed as exc:
            raise BrokerUnavailable(str(exc)) from exc
        nc = self.connection
        if not nc.is_connected:
            raise BrokerUnavailable(f"not connected to NATS ({', '.join(self.config.servers)}); reconnecting")
        try:
            await asyncio.wait_for(js.account_info(), self.config.request_timeout)
        except Exception as exc:
            raise BrokerUnavailable(f"NATS JetStream health check failed: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        """Close subscriptions and the connection. Publishes are awaited, so nothing is buffered. Idempotent."""
        if self._closed:
            return
        for subscription in list(self._subscriptions):
            await subscription.close()
        self._closed = True
        if self._nc is not None:
            with contextlib.suppress(Exception):  # the server may be gone: closing is all that is left
                await self._nc.flush(timeout=int(self.config.request_timeout))
            if self._client is None:  # a client handed in stays its owner's
                await self._nc.close()

    # -- topics ---------------------------------------------------------------

    async def _topic(self, topic: str, *, create: bool = True) -> int:
        """Return the partition count of ``topic``, creating its stream if needed."""
        known = self._partitions.get(topic)
        if known is not None:
            return known
        js = await self._ready()
        name = self.names.stream(topic)
        config = self.config
        with translated(f"prepare topic {topic!r}"):
            try:
                info = await js.stream_info(name)
            except nats.js.errors.NotFoundError:
                if not create:
                    raise UnknownTopic(f"topic {topic!r} does not exist") from None
                stream = api.StreamConfig(
                    name=name,
                    subjects=self.names.stream_subjects(topic),
                    retention=api.RetentionPolicy.LIMITS,
                    storage=api.StorageType.FILE if config.storage == "file" else api.StorageType.MEMORY,
                    num_replicas=config.replicas,
                    max_age=config.retention,
                    duplicate_window=retention.duplicate_window(config),
                    allow_direct=True,
                    allow_batched=True,  # fast-ingest batches (nats-server 2.14+; older ones drop it)
                    metadata={n.META_TOPIC: topic, n.META_PARTITIONS: str(config.partitions)},
                )
                try:
                    info = await js.add_stream(stream)
                except nats.js.errors.BadRequestError as exc:
                    if exc.err_code != _STREAM_IN_USE:
                        raise
                    info = await js.stream_info(name)
        metadata = info.config.metadata or {}
        partitions = int(metadata.get(n.META_PARTITIONS, config.partitions))
        self._batched[topic] = bool(info.config.allow_batched)
        self._partitions[topic] = partitions
        return partitions

    # -- consuming ------------------------------------------------------------------

    async def subscribe(self, topic: str, group: str, *, start: Position = _EARLIEST) -> NatsSubscription:
        """Join ``group`` on ``topic``: create its durable consumers if new (at ``start``), lease partitions."""
        check_topic(topic), check_group(group)
        js = await self._ready()
        await self.storage.verify(f"joining group {group!r}")  # a worker resubscribing after an error
        partitions = await self._topic(topic)
        if (topic, group) not in self._groups:
            await asyncio.gather(*(self._consumer(js, topic, group, p, start) for p in range(partitions)))
            self._groups.add((topic, group))
        member = uuid.uuid4().hex
        subscription = NatsSubscription(self, topic, group, partitions, member)
        self._subscriptions.add(subscription)
        try:
            await subscription.start()
        except BaseException:
            await subscription.close()
            raise
        return subscription

    async def _consumer(self, js: JetStreamContext, topic: str, group: str, partition: int, start: Position) -> None:
        stream, name = self.names.stream(topic), self.names.consumer(group, partition)
        with translated(f"prepare consumer {name}"):
            try:
                await js.consumer_info(stream, name)
                return
            except nats.js.errors.NotFoundError:
                pass
            config = api.ConsumerConfig(
                name=name,
                durable_name=name,
                filter_subjects=[
                    self.names.partition_subject(topic, partition),
                    self.names.resubmit_subject(topic, partition, group),
                ],
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=self.config.ack_wait,
                max_deliver=-1,
                max_ack_pending=max(1000, 4 * self.config.prefetch),
                max_waiting=512,
                metadata={n.META_GROUP: group, n.META_PARTITION: str(partition), n.META_TOPIC: topic},
                **_start_policy(start, partition),
            )
            try:
                await js.add_consumer(stream, config)
            except nats.js.errors.BadRequestError:
                await js.consumer_info(stream, name)  # created concurrently by another member: fine

    def forget(self, subscription: object) -> None:
        """Drop a closed subscription (it calls this from its ``close``)."""
        self._subscriptions.discard(subscription)

    @property
    def dead_letters_parked(self) -> int:
        """Records parked in all because their dead letter could not be stored (see :meth:`parked_counts`)."""
        return self.parked.total

    def parked_counts(self) -> dict[tuple[str, str], int]:
        """Records parked since this broker opened, per (topic, group): see ``core.broker.ParkReporter``."""
        return self.parked.counts()


async def _inbox_batching(js: JetStreamContext, publisher: BatchPublisher, stream: str) -> tuple[Send, int] | None:
    """Pick the cheapest batch kind the server lets the inbox bucket take, with its size limit.

    Fast-ingest batches (2.14+) store a settle's keys in about half the time
    of an atomic batch (2.12+: measured 4 ms against 8 ms for 470 keys), and
    the server answers a few times per batch instead of once per key.
    """
    if await _allow(js, stream, "allow_batched"):
        return publisher.publish_fast, FAST_LIMIT
    if await _allow(js, stream, "allow_atomic"):
        return publisher.publish_atomic, ATOMIC_LIMIT
    return None


async def _allow(js: JetStreamContext, stream: str, setting: str) -> bool:
    """Turn on the batch publish ``setting`` (``allow_batched``, ``allow_atomic``) of ``stream``; whether it is on.

    Servers that do not know the setting (before 2.14 and 2.12) drop it or
    refuse the update; keys then go another way.
    """
    with translated(f"configure stream {stream}"):
        config = (await js.stream_info(stream)).config
        if getattr(config, setting, False):
            return True
        setattr(config, setting, True)
        try:
            updated = await js.update_stream(config)
        except nats.js.errors.BadRequestError:
            return False
    return bool(getattr(updated.config, setting, False))


def _start_policy(start: Position, partition: int) -> dict[str, Any]:
    if start.kind == StartKind.LATEST:
        return {"deliver_policy": api.DeliverPolicy.NEW}
    if start.kind == StartKind.TIME:
        return {
            "deliver_policy": api.DeliverPolicy.BY_START_TIME,
            "opt_start_time": datetime.fromtimestamp(start.time or 0.0, UTC),
        }
    if start.kind == StartKind.OFFSETS and start.offsets and partition in start.offsets:
        return {
            "deliver_policy": api.DeliverPolicy.BY_START_SEQUENCE,
            "opt_start_seq": max(1, start.offsets[partition]),
        }
    return {"deliver_policy": api.DeliverPolicy.ALL}


async def _noop() -> None:
    return None
