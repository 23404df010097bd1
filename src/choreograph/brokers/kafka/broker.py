"""The Kafka broker: topics, publishing, replay, lag and dead letters on aiokafka.

A record goes to the partition ``partition_for(key, partitions)`` — the same
hash every choreograph backend uses — set explicitly on the producer, so
Kafka's own partitioner never decides. The producer is idempotent (unless
configured off) with ``acks=all``; a publish returns after every record was
acknowledged. Topics are auto-created with the configured partition count.
Inbox keys, retry attempts and dead letters live in the compacted state
topic (:mod:`.state`). The dead-letter store is in :mod:`.dead_letters`;
positions, topics, lag, reading the log and retention in :mod:`.log_admin`;
error and record translation in :mod:`.translation`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from choreograph.core.broker import Capabilities, ParkLedger, Position, Record
from choreograph.core.clock import Clock, SystemClock
from choreograph.core.errors import BrokerClosed, BrokerError, BrokerUnavailable, ConfigurationError, UnknownTopic
from choreograph.core.names import check_group, check_topic
from choreograph.core.options import settings
from choreograph.core.partitioning import RoundRobin

from . import retention
from .config import KafkaConfig, parse_url
from .dead_letters import DeadLetterShelf
from .health import KafkaHealth
from .kv import KafkaKeyValues
from .log_admin import LogAdmin
from .reset import GroupReset
from .state import StateTable
from .subscription import KafkaSubscription
from .translation import RESUBMIT_GROUP_HEADER as RESUBMIT_GROUP_HEADER  # kept importable from here
from .translation import RESUBMIT_OFFSET_HEADER as RESUBMIT_OFFSET_HEADER
from .translation import to_delivery as to_delivery
from .translation import translated as translated

_EARLIEST: Final = Position.earliest()
_TOPIC_EXISTS: Final = 36


class KafkaBroker(DeadLetterShelf, LogAdmin, KafkaKeyValues, GroupReset, KafkaHealth):
    """Apache Kafka (or a Kafka-protocol broker) as a choreograph broker.

    Safe to use concurrently from one event loop. Connects lazily on first use.
    """

    capabilities = Capabilities(
        per_key_order=True,
        persistent=True,
        replay=True,
        lag=True,
        native_delay=False,
        atomic_settle=False,
        cross_process=True,
        dead_letter_store=True,
    )

    def __init__(
        self, config: KafkaConfig | Sequence[str] | None = None, /, *, clock: Clock | None = None,
        client: None = None, **legacy: KafkaConfig | None,
    ) -> None:  # fmt: skip
        """A broker on the bootstrap servers ``config.servers``; connects on first use.

        The shape every broker shares: ``XBroker(config=None, *, clock=None, client=None)``.
        Kafka takes no ``client``: it makes its producer, consumers and admin client itself.
        The older ``KafkaBroker(servers, config=...)`` still works.
        """
        if client is not None:
            raise ConfigurationError("the kafka broker takes no client: it makes its producer, consumers and admin")
        self.config = settings(KafkaConfig, config, legacy, "servers", (list, tuple))
        self.servers = list(self.config.servers)
        self.capabilities = dataclasses.replace(KafkaBroker.capabilities, persistent=self.config.persistent)
        self.clock: Clock = clock or SystemClock()
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._state: StateTable | None = None
        self._partitions: dict[str, int] = {}
        self._round_robin = RoundRobin()
        self._subscriptions: set[Any] = set()
        self._start_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()
        self._resubmit_lock = asyncio.Lock()
        self.parked = ParkLedger()
        """Records whose dead letter could not be written, parked (see ``KafkaSubscription.settle``)."""
        self._sending = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False
        self._security = self.config.security_options()
        """TLS and SASL options of every client (one SSL context, the password read once, here)."""

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None) -> KafkaBroker:
        """Build a broker from ``kafka://host:port[,host:port]?partitions=8&idempotent=true&...``."""
        return cls(parse_url(url)[1], clock=clock)

    # -- connections ------------------------------------------------------------

    def client_options(self) -> dict[str, Any]:
        """Options shared by every aiokafka client of this broker."""
        return {
            "bootstrap_servers": self.servers,
            "client_id": self.config.client_id,
            "request_timeout_ms": int(self.config.request_timeout * 1000),
            **self._security,
        }

    def consumer_options(self) -> dict[str, Any]:
        """Options of every consumer: short fetch waits, so a fetch returns as soon as records arrive."""
        return {**self.client_options(), "enable_auto_commit": False, "fetch_max_wait_ms": 50}

    async def producer(self) -> AIOKafkaProducer:
        """Return the started producer (and state table), starting them on first use."""
        self.check_open()
        if self._producer is not None:
            return self._producer
        async with self._start_lock:
            if self._producer is None:
                async with translated("connect"):
                    admin = AIOKafkaAdminClient(**self.client_options())
                    await admin.start()
                    self._admin = admin
                    producer = AIOKafkaProducer(
                        **self.client_options(),
                        enable_idempotence=self.config.idempotent,
                        acks="all" if self.config.acks == "all" else int(self.config.acks),
                        linger_ms=1,
                    )
                    await producer.start()
                    self._reader = AIOKafkaConsumer(**self.consumer_options())
                    await self._reader.start()
                    await self._create(self.config.state_topic, 1, compacted=True)
                    self._state = StateTable(
                        self._reader,
                        producer,
                        self.config.state_topic,
                        clock=self.clock,
                        inbox_retention=self.config.inbox_retention,
                    )
                    self._producer = producer
        return self._producer

    async def state(self, *, fresh: bool = True) -> StateTable:
        """Return the state table.

        ``fresh``: up to date with every write any process made before this call
        (one ListOffsets round trip plus the read). Otherwise without waiting on
        the broker: this process's own writes, plus what the reader tailed so far
        (see :mod:`.state` for when that is enough).
        """
        await self.producer()
        assert self._state is not None
        async with translated("read the state topic"):
            if fresh:
                await self._state.refresh()
            else:
                await self._state.poll()
        return self._state

    async def _create(self, topic: str, partitions: int, *, compacted: bool = False) -> None:
        assert self._admin is not None
        configs = {"cleanup.policy": "compact"} if compacted else retention.topic_configs(self.config)
        response = await self._admin.create_topics(
            [NewTopic(topic, partitions, self.config.replication_factor, topic_configs=configs)]
        )
        for error in getattr(response, "topic_errors", []):
            code = error[1]
            if code not in (0, _TOPIC_EXISTS):
                raise BrokerError(f"kafka could not create topic {topic!r}: error {code} {error[-1]}")

    async def partitions(self, topic: str, *, create: bool = True) -> int:
        """Return the partition count of ``topic``, creating it with ``config.partitions`` if needed."""
        known = self._partitions.get(topic)
        if known is not None:
            return known
        producer = await self.producer()
        async with translated(f"look up topic {topic!r}"):
            if create:
                await self._create(topic, self.config.partitions)
            for _ in range(50):
                found = await producer.partitions_for(topic)
                if found:
                    self._partitions[topic] = len(found)
                    return len(found)
                if not create or self._closed:
                    break
                await asyncio.sleep(0.05)  # metadata of a new topic propagates
        raise UnknownTopic(f"topic {topic!r} does not exist")

    # -- Broker ---------------------------------------------------------------

    async def publish(self, topic: str, records: Sequence[Record]) -> None:
        """Send ``records`` in order and wait until every one is acknowledged (``acks``).

        Safe to call concurrently. Records with one key go to one partition, in order.
        """
        check_topic(topic)
        self.check_open()
        if not records:
            return
        await self.send(topic, records)

    async def send(self, topic: str, records: Sequence[Record], *, partition: int | None = None,
                   extra_headers: dict[str, str] | None = None) -> None:  # fmt: skip
        """Produce ``records`` (to ``partition`` if given) and wait for all acknowledgements."""
        self._sending += 1
        self._drained.clear()
        try:
            await self._send(topic, records, partition, extra_headers)
        finally:
            self._sending -= 1
            if not self._sending:
                self._drained.set()

    async def _send(
        self, topic: str, records: Sequence[Record], partition: int | None, extra_headers: dict[str, str] | None
    ) -> None:
        producer = await self.producer()
        count = await self.partitions(topic)
        self.check_open()
        placed = self._round_robin.assign(topic, [record.key for record in records], count)
        stamp = int(self.clock.now() * 1000)
        futures = []
        async with translated(f"publish to {topic!r}"):
            for placed_at, record in zip(placed, records, strict=True):
                if not isinstance(record.value, bytes):
                    raise ConfigurationError(f"a record value must be bytes, got {type(record.value).__name__}")
                p = partition if partition is not None else placed_at
                headers = [(k, v.encode()) for k, v in {**record.headers, **(extra_headers or {})}.items()]
                futures.append(
                    await producer.send(
                        topic,
                        record.value,
                        key=None if record.key is None else record.key.encode(),
                        partition=p,
                        timestamp_ms=stamp,
                        headers=headers,
                    )
                )
            await asyncio.gather(*futures)

    async def subscribe(self, topic: str, group: str, *, start: Position = _EARLIEST) -> KafkaSubscription:
        """Join ``group`` on ``topic`` (creating the topic); ``start`` applies to partitions without a commit."""
        check_topic(topic), check_group(group)
        self.check_open()
        await self.partitions(topic)
        state = await self.state()
        key = f"group|{topic}|{group}"
        if key not in state.rows:
            async with translated("register the group"):
                await state.write([(key, b"1")])
        subscription = KafkaSubscription(self, topic, group, start)
        await subscription.join()
        self._subscriptions.add(subscription)
        return subscription

    async def ping(self) -> None:
        """Return if the cluster answers a metadata request; raise BrokerUnavailable otherwise."""
        if self._closed:
            raise BrokerUnavailable("the kafka broker is closed")
        try:
            producer = await self.producer()
            async with translated("ping"):
                await asyncio.wait_for(producer.client.fetch_all_metadata(), self.config.request_timeout)
        except (BrokerError, TimeoutError) as exc:
            raise BrokerUnavailable(f"kafka is not reachable: {exc}") from exc

    async def close(self) -> None:
        """Close subscriptions, flush the producer and disconnect. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            with contextlib.suppress(BrokerError):
                await subscription.close()
        with contextlib.suppress(BrokerError):
            await self.close_key_values()
        with contextlib.suppress(TimeoutError):  # publishes in flight finish (or fail) before the producer stops
            await asyncio.wait_for(self._drained.wait(), self.config.request_timeout)
        for client in (self._producer, self._reader):
            if client is not None:
                with contextlib.suppress(kafka_errors.KafkaError, OSError):
                    await client.stop()
        if self._admin is not None:
            with contextlib.suppress(kafka_errors.KafkaError, OSError):
                await self._admin.close()

    def check_open(self) -> None:
        """Raise BrokerClosed after :meth:`close`."""
        if self._closed:
            raise BrokerClosed("the kafka broker is closed")

    def parked_counts(self) -> dict[tuple[str, str], int]:
        """Records parked since this broker opened, per (topic, group): see ``core.broker.ParkReporter``."""
        return self.parked.counts()

    def forget(self, subscription: object) -> None:
        """Drop a closed subscription."""
        self._subscriptions.discard(subscription)
