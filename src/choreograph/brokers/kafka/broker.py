"""The Kafka broker: topics, publishing, replay, lag and dead letters on aiokafka.

A record goes to the partition ``partition_for(key, partitions)`` — the same
hash every choreograph backend uses — set explicitly on the producer, so
Kafka's own partitioner never decides. The producer is idempotent (unless
configured off) with ``acks=all``; a publish returns after every record was
acknowledged. Topics are auto-created with the configured partition count.
Inbox keys, retry attempts and dead letters live in the compacted state
topic (:mod:`.state`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from choreograph.core.broker import (
    Capabilities,
    DeadLetter,
    Delivery,
    PartitionLag,
    Position,
    Record,
    TopicInfo,
    partition_for,
)
from choreograph.core.clock import Clock, SystemClock
from choreograph.core.credentials import explain_tls_failure
from choreograph.core.errors import (
    BrokerClosed,
    BrokerError,
    BrokerUnavailable,
    ConfigurationError,
    NotFound,
    UnknownTopic,
)
from choreograph.core.headers import DEAD_LETTER_ID_HEADER
from choreograph.core.names import check_group, check_topic
from choreograph.core.retention import LogSize, Retention

from . import retention
from .config import KafkaConfig, parse_url
from .letters import chunk_keys, decode_letter, letter_rows
from .state import StateTable

RESUBMIT_GROUP_HEADER: Final = "choreograph-resubmitted-for"
"""Header of a resubmitted dead letter: only this group handles it, every other group skips it."""

RESUBMIT_OFFSET_HEADER: Final = "choreograph-resubmitted-offset"
"""Header of a resubmitted dead letter: the offset of the original record, reported as the delivery's offset."""

_EARLIEST: Final = Position.earliest()
_TOPIC_EXISTS: Final = 36


_REFUSED_CREDENTIALS: Final = (
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.AuthenticationFailedError,
    kafka_errors.AuthenticationMethodNotSupported,
    kafka_errors.UnsupportedSaslMechanismError,
    kafka_errors.IllegalSaslStateError,
)


@contextlib.asynccontextmanager
async def translated(what: str) -> AsyncIterator[None]:
    """Translate aiokafka errors raised inside the block into choreograph BrokerErrors."""
    try:
        yield
    except _REFUSED_CREDENTIALS as exc:  # retrying cannot help: say which options to fix
        raise ConfigurationError(
            f"kafka refused the SASL authentication while trying to {what}: {type(exc).__name__}: {exc}; "
            "check sasl_mechanism, sasl_username and the password (sasl_password_file or sasl_password_env)"
        ) from exc
    except (kafka_errors.KafkaConnectionError, kafka_errors.NodeNotReadyError, OSError) as exc:
        tls = explain_tls_failure(exc, "kafka")
        if tls is not None:
            raise ConfigurationError(tls) from exc
        raise BrokerUnavailable(f"kafka unreachable while trying to {what}: {exc}") from exc
    except kafka_errors.KafkaTimeoutError as exc:
        raise BrokerUnavailable(f"kafka timed out while trying to {what}: {exc}") from exc
    except kafka_errors.KafkaError as exc:
        raise BrokerError(f"kafka failed to {what}: {exc!r}") from exc


def to_delivery(
    message: Any, *, attempt: int = 1, first_failure: float | None = None, log_offset: bool = False
) -> Delivery:
    """Return the delivery of an aiokafka ConsumerRecord; never raises.

    A resubmitted dead letter reports its original record's offset to its
    group (``log_offset`` false), but its own position in the log to a
    reader of the log (``log_offset`` true): a reader pages on by offsets.

    A record another client wrote that we cannot translate — a key or header
    value that is not UTF-8, a resubmitted-offset header that is not a
    number — is a delivery with ``fault`` saying what is wrong, its key and
    headers as far as they could be read (undecodable bytes as ``\\xNN``).
    """
    try:
        raw = dict(message.headers or ())
        headers = {k: v.decode() for k, v in raw.items() if k not in _RESUBMIT_HEADERS}
        original = None if log_offset else raw.get(RESUBMIT_OFFSET_HEADER)
        return Delivery(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset if original is None else int(original),
            value=message.value if message.value is not None else b"",
            key=None if message.key is None else message.key.decode(),
            headers=headers,
            timestamp=message.timestamp / 1000,
            attempt=attempt,
            first_failure=first_failure,
        )
    except (ValueError, TypeError, AttributeError):  # UnicodeDecodeError is a ValueError
        return _faulty_delivery(message, attempt, first_failure, log_offset)


_RESUBMIT_HEADERS: Final = (RESUBMIT_GROUP_HEADER, RESUBMIT_OFFSET_HEADER)


def _text(raw: object) -> tuple[str, bool]:
    """(text, whether ``raw`` was proper UTF-8 bytes or text) for a key or header value read from the wire."""
    if raw is None:  # a null header value (none of ours): read as empty
        return "", True
    if isinstance(raw, str):
        return raw.encode("utf-8", "backslashreplace").decode(), True
    if isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
        try:
            return data.decode(), True
        except UnicodeDecodeError:
            return data.decode("utf-8", "backslashreplace"), False
    return repr(raw), False


def _faulty_delivery(message: Any, attempt: int, first_failure: float | None, log_offset: bool) -> Delivery:
    """The delivery of a record :func:`to_delivery` cannot translate: best-effort fields and a fault."""
    faults: list[str] = []
    headers: dict[str, str] = {}
    original: str | None = None
    try:
        pairs = list(message.headers or ())
    except TypeError:
        pairs, faults = [], ["headers are not a list of pairs"]
    for pair in pairs:
        try:
            name, raw = pair
        except (TypeError, ValueError):
            faults.append("a header is not a (name, value) pair")
            continue
        name, _ = _text(name)
        value, ok = _text(raw)
        if not ok:
            faults.append(f"header {name!r} is not UTF-8")
        if name == RESUBMIT_OFFSET_HEADER:
            original = None if log_offset else value
        elif name != RESUBMIT_GROUP_HEADER:
            headers[name] = value
    key: str | None = None
    if message.key is not None:
        key, ok = _text(message.key)
        if not ok:
            faults.append("key is not UTF-8")
    offset = message.offset if isinstance(message.offset, int) else -1
    if original is not None:
        if original.isascii() and original.isdigit():
            offset = int(original)
        else:
            faults.append(f"header {RESUBMIT_OFFSET_HEADER} is not an offset: {original[:40]!r}")
    payload = message.value
    body = bytes(payload) if isinstance(payload, bytes | bytearray | memoryview) else b""
    stamp = message.timestamp / 1000 if isinstance(message.timestamp, int | float) else 0.0
    return Delivery(
        topic=str(message.topic),
        partition=message.partition if isinstance(message.partition, int) else -1,
        offset=offset,
        value=body,
        key=key,
        headers=headers,
        timestamp=stamp,
        attempt=attempt,
        first_failure=first_failure,
        fault="; ".join(faults) or None,
    )


class KafkaBroker:
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
        self, servers: Sequence[str] = ("localhost:9092",), *, config: KafkaConfig | None = None,
        clock: Clock | None = None,
    ) -> None:  # fmt: skip
        self.servers = list(servers)
        self.config = config or KafkaConfig()
        self.capabilities = dataclasses.replace(KafkaBroker.capabilities, persistent=self.config.persistent)
        self.clock: Clock = clock or SystemClock()
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._state: StateTable | None = None
        self._partitions: dict[str, int] = {}
        self._round_robin: dict[str, int] = {}
        self._subscriptions: set[Any] = set()
        self._start_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()
        self._resubmit_lock = asyncio.Lock()
        self._sending = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False
        self._security = self.config.security_options()
        """TLS and SASL options of every client (one SSL context, the password read once, here)."""

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None) -> KafkaBroker:
        """Build a broker from ``kafka://host:port[,host:port]?partitions=8&idempotent=true&...``."""
        servers, config = parse_url(url)
        return cls(servers, config=config, clock=clock)

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
        turn = self._round_robin.get(topic, 0)
        stamp = int(self.clock.now() * 1000)
        futures = []
        async with translated(f"publish to {topic!r}"):
            for record in records:
                if not isinstance(record.value, bytes):
                    raise ConfigurationError(f"a record value must be bytes, got {type(record.value).__name__}")
                p = partition if partition is not None else partition_for(record.key, count, turn)
                if record.key is None:
                    turn += 1
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
            self._round_robin[topic] = turn
            await asyncio.gather(*futures)

    async def subscribe(self, topic: str, group: str, *, start: Position = _EARLIEST) -> Any:
        """Join ``group`` on ``topic`` (creating the topic); ``start`` applies to partitions without a commit."""
        from .subscription import KafkaSubscription

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

    def forget(self, subscription: object) -> None:
        """Drop a closed subscription."""
        self._subscriptions.discard(subscription)

    # -- positions ------------------------------------------------------------

    async def start_offsets(
        self, consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], start: Position
    ) -> dict[TopicPartition, int]:
        """Return the first offset to read per partition for ``start``."""
        begin = await consumer.beginning_offsets(list(tps))
        end = await consumer.end_offsets(list(tps))
        if start.kind == "earliest":
            return dict(begin)
        if start.kind == "latest":
            return dict(end)
        if start.kind == "offsets":
            offsets = start.offsets or {}
            return {tp: min(max(begin[tp], offsets.get(tp.partition, 0)), end[tp]) for tp in tps}
        when = start.time if start.time is not None else 0.0
        wanted = math.ceil(when * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(tps, wanted))
        out = {}
        for tp in tps:
            answer = found.get(tp)
            if answer is None:
                out[tp] = end[tp]
            elif await self._first_at_or_after(consumer, tp, answer.offset, wanted, begin[tp], end[tp]):
                out[tp] = answer.offset
            else:  # the broker has no time index (Tansu answers offset 0): binary-search the log
                out[tp] = await self._search(consumer, tp, wanted, begin[tp], end[tp])
        return out

    async def _first_at_or_after(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, wanted: int, low: int, high: int
    ) -> bool:
        """Return whether ``offset`` is the first record with timestamp >= ``wanted``, checked by reading.

        The broker's answer alone is not trusted: Tansu answers offset 0 with an
        unrelated timestamp (its own clock, or -1) whatever the time asked.
        """
        if offset < low or offset > high:
            return False
        if offset < high:
            at = await self._record_from(consumer, tp, offset)
            if at is None or at.timestamp < wanted:
                return False
        if offset > low:
            before = await self._record_from(consumer, tp, offset - 1)
            if before is not None and before.offset < offset and before.timestamp >= wanted:
                return False
        return True

    @staticmethod
    async def _record_from(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> Any:
        """Return the first record at or after ``offset``, or None if none came within a second."""
        consumer.seek(tp, offset)
        batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
        messages = batch.get(tp, [])
        return messages[0] if messages else None

    async def _search(self, consumer: AIOKafkaConsumer, tp: TopicPartition, wanted: int, low: int, high: int) -> int:
        """Return the first offset in [low, high) with timestamp >= ``wanted`` (timestamps assumed ordered)."""
        while low < high:
            middle = (low + high) // 2
            found = await self._record_from(consumer, tp, middle)
            if found is None:
                high = middle
            elif found.timestamp >= wanted:
                high = min(middle, found.offset)
            else:
                low = found.offset + 1
        return low

    # -- LagReporter, TopicAdmin, LogReader -----------------------------------

    async def topics(self) -> list[TopicInfo]:
        """Return every topic except internal ones (``__`` prefix), sorted by name."""
        await self.producer()
        assert self._reader is not None
        async with translated("list topics"), self._read_lock:
            names = sorted(t for t in await self._reader.topics() if not t.startswith("__"))
            out = []
            for name in names:
                tps = [TopicPartition(name, p) for p in range(await self.partitions(name, create=False))]
                begin = await self._reader.beginning_offsets(tps)
                end = await self.end_offsets(tps)
                out.append(TopicInfo(name, len(tps), sum(end[tp] - begin[tp] for tp in tps), sum(end.values())))
        return out

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Return the offset after the last record of each partition.

        Checked by reading the last record batch: Tansu answers ``ListOffsets(latest)``
        with the base offset of the last batch + 1, which undercounts batched records.
        """
        consumer = AIOKafkaConsumer(**self.consumer_options())
        await consumer.start()
        try:
            consumer.assign(list(tps))
            end = dict(await consumer.end_offsets(list(tps)))
            for tp in tps:
                if end[tp] > 0:
                    consumer.seek(tp, end[tp] - 1)
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    end[tp] = max([end[tp], *(m.offset + 1 for m in batch.get(tp, []))])
            return end
        finally:
            await consumer.stop()

    async def lag(self, group: str | None = None) -> list[PartitionLag]:
        """Return ``end offset - committed offset`` per (topic, group, partition) of registered groups."""
        state = await self.state()
        pairs = sorted(tuple(k.split("|", 2)[1:]) for k in state.rows if k.startswith("group|"))
        out: list[PartitionLag] = []
        for topic, name in pairs:
            if group is not None and name != group:
                continue
            count = await self.partitions(topic, create=False)
            tps = [TopicPartition(topic, p) for p in range(count)]
            consumer = AIOKafkaConsumer(**self.consumer_options(), group_id=name)
            async with translated(f"read lag of {name!r}"):
                await consumer.start()
                try:
                    end = await self.end_offsets(tps)
                    for tp in tps:
                        committed = await consumer.committed(tp)
                        out.append(PartitionLag(topic, name, tp.partition, end[tp], committed or 0))
                finally:
                    await consumer.stop()
        return out

    async def read(self, topic: str, start: Position = _EARLIEST, *, limit: int = 1000) -> list[Delivery]:
        """Return up to ``limit`` records from ``start`` in (partition, offset) order. Does not wait for new ones.

        Offsets are positions in the log, a resubmitted dead letter's too, so a
        read continued from the last offset + 1 always moves forward.
        """
        count = await self.partitions(topic, create=False)
        tps = [TopicPartition(topic, p) for p in range(count)]
        consumer = AIOKafkaConsumer(**self.consumer_options())
        out: list[Delivery] = []
        async with translated(f"read {topic!r}"):
            await consumer.start()
            try:
                consumer.assign(tps)
                firsts = await self.start_offsets(consumer, tps, start)
                end = await consumer.end_offsets(tps)
                deadline = asyncio.get_running_loop().time() + self.config.request_timeout
                for tp in tps:
                    consumer.seek(tp, firsts[tp])
                    while len(out) < limit and await consumer.position(tp) < end[tp]:
                        if asyncio.get_running_loop().time() > deadline:
                            raise BrokerUnavailable(f"kafka did not return {topic!r} records up to the end offsets")
                        batch = await consumer.getmany(tp, timeout_ms=200, max_records=limit - len(out))
                        # not cut at the end offset: Tansu reports the base offset of the last batch + 1
                        out.extend(to_delivery(m, log_offset=True) for m in batch.get(tp, [])[: limit - len(out)])
            finally:
                await consumer.stop()
        return out

    # -- retention (see .retention) ---------------------------------------------

    def describe_retention(self) -> Retention:
        """Return the retention of the topics this broker creates (``retention``, 7 days by default); no I/O."""
        return retention.describe(self.config)

    async def log_size(self) -> LogSize:
        """Return retained records per topic (end minus beginning offsets); reads no payloads but the last batch."""
        return LogSize({info.name: info.records for info in await self.topics()})

    async def resolve_position(self, topic: str, start: Position) -> dict[int, int]:
        """Return partition -> first offset to read for ``start``."""
        tps = [TopicPartition(topic, p) for p in range(await self.partitions(topic, create=False))]
        if start.kind == "latest":
            async with translated(f"resolve a position in {topic!r}"):
                return {tp.partition: offset for tp, offset in (await self.end_offsets(tps)).items()}
        consumer = AIOKafkaConsumer(**self.consumer_options())
        async with translated(f"resolve a position in {topic!r}"):
            await consumer.start()
            try:
                consumer.assign(tps)
                firsts = await self.start_offsets(consumer, tps, start)
            finally:
                await consumer.stop()
        return {tp.partition: offset for tp, offset in firsts.items()}

    # -- DeadLetterStore --------------------------------------------------------

    async def store_dead_letters(self, letters: Sequence[DeadLetter]) -> list[tuple[str, bytes | None]]:
        """Return the state rows that store ``letters``."""
        return [row for letter in letters for row in letter_rows(letter)]

    async def dead_letters(
        self, *, group: str | None = None, status: str | None = "open", limit: int = 100
    ) -> list[DeadLetter]:
        """Return dead letters, oldest first, filtered by group and status (``None``: any)."""
        state = await self.state()
        out = []
        for key, raw in list(state.rows.items()):
            if not key.startswith("dl|"):
                continue
            letter = decode_letter(raw, state.rows)
            if (group is None or letter.group == group) and (status is None or letter.status == status):
                out.append(letter)
                if len(out) >= limit:
                    break
        return out

    async def dead_letter_counts(self, *, status: str | None = "open") -> dict[tuple[str, str, str], int]:
        """Return how many dead letters have ``status`` (``None``: any) per (topic, group, reason).

        The state table already holds the entries; each is parsed in turn and none is kept.
        """
        state = await self.state()
        counts: dict[tuple[str, str, str], int] = {}
        for key, raw in list(state.rows.items()):
            if key.startswith("dl|"):
                doc = json.loads(raw)
                if status is None or doc["status"] == status:
                    where = (doc["topic"], doc["group"], doc["reason"])
                    counts[where] = counts.get(where, 0) + 1
        return counts

    async def dead_letter(self, dead_letter_id: str) -> DeadLetter:
        """Return one dead letter; raise NotFound if absent."""
        state = await self.state()
        raw = state.rows.get(f"dl|{dead_letter_id}")
        if raw is None:
            raise NotFound(f"no dead letter with id {dead_letter_id!r}")
        return decode_letter(raw, state.rows)

    async def resubmit(self, dead_letter_id: str, value: bytes | None = None) -> bool:
        """Append the record again to its partition, for its group only; False unless the entry is open.

        Serialised within this process; Kafka has no compare-and-set, so two
        processes resubmitting the same letter at the same instant can both
        succeed — the group's inbox then drops the second copy (same event id).
        """
        async with self._resubmit_lock:
            letter = await self.dead_letter(dead_letter_id)
            if letter.status != "open":
                return False
            headers = {**letter.headers, DEAD_LETTER_ID_HEADER: letter.id}  # its next dead letter names this one
            record = Record(letter.value if value is None else value, letter.key, headers)
            marks = {RESUBMIT_GROUP_HEADER: letter.group, RESUBMIT_OFFSET_HEADER: str(letter.offset)}
            await self.send(letter.topic, [record], partition=letter.partition, extra_headers=marks)
            state = await self.state()
            async with translated("mark a dead letter resubmitted"):
                await state.write(letter_rows(dataclasses.replace(letter, status="resubmitted")))
            return True

    async def purge(self, dead_letter_ids: Sequence[str] | None = None, *, delete: bool = False) -> int:
        """Mark open entries purged (all of them if ``None``); return how many changed.

        With ``delete``, remove the entries instead (any status; all if
        ``None``): a tombstone per entry on the compacted state topic. Readers
        stop seeing them at once; the broker drops the old records at its next
        compaction of the topic (``delete.retention.ms`` and segment rolling decide when).
        """
        state = await self.state()
        rows: list[tuple[str, bytes | None]] = []
        wanted = None if dead_letter_ids is None else set(dead_letter_ids)
        for key, raw in list(state.rows.items()):
            if not key.startswith("dl|") or (wanted is not None and key[3:] not in wanted):
                continue
            if delete:
                rows += [(chunk, None) for chunk in chunk_keys(state.rows, key[3:])]  # the value's chunks, if any
                rows.append((key, None))
                continue
            letter = decode_letter(raw, state.rows)
            if letter.status == "open":
                rows += letter_rows(dataclasses.replace(letter, status="purged"))
        async with translated("purge dead letters"):
            await state.write(rows)
        return sum(1 for key, _ in rows if key.startswith("dl|"))
