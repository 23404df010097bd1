"""The broker contract: a durable log of records with consumer groups.

A backend implements :class:`Broker` (publish, subscribe, ping, close) and a
:class:`Subscription` (fetch, settle, seen, close). Extra powers are separate
small protocols — :class:`LagReporter`, :class:`LogReader`,
:class:`TopicAdmin`, :class:`DeadLetterStore`, :class:`DeadLetterCounter` — and a :class:`Capabilities`
value says which guarantees hold, so the runtime and the conformance suite
can rely on them without guessing.

Delivery is at least once. A delivery stays in flight until it is settled;
one never settled (its consumer crashed or closed) is delivered again, to this
or another member of the group.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from choreograph.core.enums import DeadLetterStatus, StartKind
from choreograph.core.errors import BrokerError, ConfigurationError
from choreograph.core.partitioning import partition_for as partition_for  # its home before core.partitioning
from choreograph.core.slots import slot_setters

_START_KINDS = frozenset(StartKind)


@dataclass(frozen=True, slots=True)
class Record:
    """One message to append: an optional partition key, bytes, and headers."""

    value: bytes
    key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, init=False)
class Delivery:
    """One record handed to a consumer group member.

    ``attempt`` starts at 1 and is at least 1 + the number of failed attempts
    (retries requested through :meth:`Subscription.settle`); backends persist it
    so a restart does not reset it. Backends that count deliveries natively
    (NATS, Redis) or in memory also count a redelivery after a consumer crashed
    or left; the embedded SQLite log does not, to keep fetches free of writes.
    ``first_failure`` is the time of the first failed attempt, if any.
    ``fault`` is set when the backend could not translate its native record
    (a non-UTF-8 key or header, a malformed choreograph header, an id it did
    not assign): ``value`` then holds the record's original bytes, and the
    consumer dead-letters it with reason ``decode`` instead of handling it.
    Backends never raise out of ``fetch`` for such a record.
    """

    topic: str
    partition: int
    offset: int
    value: bytes
    key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timestamp: float = 0.0
    attempt: int = 1
    first_failure: float | None = None
    fault: str | None = None

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        value: bytes,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        timestamp: float = 0.0,
        attempt: int = 1,
        first_failure: float | None = None,
        fault: str | None = None,
    ) -> None:
        # Written out, as Envelope's: one delivery per record read, and the generated frozen __init__'s
        # object.__setattr__ per field cost twice what the slots' own setters (bound below) do.
        _set_topic(self, topic)
        _set_partition(self, partition)
        _set_offset(self, offset)
        _set_value(self, value)
        _set_key(self, key)
        _set_headers(self, {} if headers is None else headers)
        _set_timestamp(self, timestamp)
        _set_attempt(self, attempt)
        _set_first_failure(self, first_failure)
        _set_fault(self, fault)


(
    _set_topic,
    _set_partition,
    _set_offset,
    _set_value,
    _set_key,
    _set_headers,
    _set_timestamp,
    _set_attempt,
    _set_first_failure,
    _set_fault,
) = slot_setters(Delivery, "topic partition offset value key headers timestamp attempt first_failure fault")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record a group gave up on, with everything needed to diagnose and resubmit it."""

    id: str
    topic: str
    group: str
    handler: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: Mapping[str, str]
    event_id: str | None
    event_type: str | None
    reason: str
    """Why it was dead-lettered: ``error`` (retries exhausted), ``decode``, ``reject``, ``schema``."""
    error_type: str
    error_message: str
    stack: str
    attempts: int
    first_failure: float
    last_failure: float
    status: str = DeadLetterStatus.OPEN
    """``open``, ``resubmitted`` or ``purged``."""
    predecessor: str | None = None
    """The id of the dead letter whose resubmission this record was, if it was one (a retry that failed again).

    Backends' ``resubmit`` set header :data:`~choreograph.core.headers.DEAD_LETTER_ID_HEADER` on the
    record they hand back; the consumer copies it here when it gives up on that record again."""


@dataclass(slots=True)
class Settlement:
    """The outcome of handling a batch, applied by :meth:`Subscription.settle`.

    Each delivery appears in exactly one of ``acks``, ``retries`` (with a
    delay in seconds) or ``dead_letters``. ``outputs`` are records the handlers
    emitted, and ``inbox`` the dedupe keys to remember for this group.
    """

    acks: list[Delivery] = field(default_factory=list)
    retries: list[tuple[Delivery, float]] = field(default_factory=list)
    dead_letters: list[tuple[Delivery, DeadLetter]] = field(default_factory=list)
    outputs: list[tuple[str, Record]] = field(default_factory=list)
    inbox: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.acks) + len(self.retries) + len(self.dead_letters)

    def deliveries(self) -> list[Delivery]:
        """Every delivery this settlement settles: acks, then retries, then dead letters."""
        return [*self.acks, *(d for d, _ in self.retries), *(d for d, _ in self.dead_letters)]

    def check(self, topic: str, held: Container[tuple[int, int]], group: str) -> list[Delivery]:
        """Validate before applying anything; return :meth:`deliveries`.

        Raises BrokerError if a delivery is of another topic, not held
        (``held`` contains (partition, offset) pairs) or settled twice, and
        ConfigurationError for a negative retry delay. For backends' ``settle``.
        """
        deliveries = self.deliveries()
        seen: set[tuple[int, int]] = set()
        for delivery in deliveries:
            where = (delivery.partition, delivery.offset)
            if delivery.topic != topic or where not in held:
                raise BrokerError(
                    f"delivery {delivery.topic}[{delivery.partition}]@{delivery.offset} is not held by "
                    f"this member of group {group!r}; it was settled already or never fetched here"
                )
            if where in seen:
                raise BrokerError(f"delivery {delivery.topic}[{where[0]}]@{where[1]} appears twice in a settlement")
            seen.add(where)
        for _, delay in self.retries:
            if delay < 0:
                raise ConfigurationError(f"a retry delay must be >= 0 seconds, got {delay}")
        return deliveries


@dataclass(frozen=True, slots=True)
class Position:
    """Where a new consumer group starts reading, or where a replay begins.

    Exactly one of the forms: ``earliest``, ``latest``, ``at_time`` (epoch
    seconds; the first record at or after it) or ``offsets`` (partition ->
    first offset to read).
    """

    kind: str = StartKind.EARLIEST
    time: float | None = None
    offsets: Mapping[int, int] | None = None

    @classmethod
    def earliest(cls) -> Position:
        """Start from the oldest retained record."""
        return cls(StartKind.EARLIEST)

    @classmethod
    def latest(cls) -> Position:
        """Start after the newest record: only records published from now on."""
        return cls(StartKind.LATEST)

    @classmethod
    def at_time(cls, when: float) -> Position:
        """Start from the first record published at or after ``when``."""
        return cls(StartKind.TIME, time=when)

    @classmethod
    def at_offsets(cls, offsets: Mapping[int, int]) -> Position:
        """Start each partition at the given offset."""
        return cls(StartKind.OFFSETS, offsets=dict(offsets))

    def __post_init__(self) -> None:
        if self.kind not in _START_KINDS:
            raise ConfigurationError(f"unknown start position {self.kind!r}")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend guarantees. The conformance suite asserts exactly these.

    A missing capability selects a weaker assertion, never a silent skip.
    """

    per_key_order: bool = True
    """Records with the same key are delivered to a group in publish order."""
    persistent: bool = False
    """Acknowledged publishes survive a restart of the broker / process."""
    replay: bool = False
    """A group can start at an offset or a time (:class:`Position`)."""
    lag: bool = False
    """The backend implements :class:`LagReporter`."""
    native_delay: bool = False
    """Delayed retries are held by the broker, not by the consumer process."""
    atomic_settle: bool = False
    """A settlement (acks, retries, dead letters, outputs, inbox) commits atomically."""
    cross_process: bool = False
    """Members of one group may live in different OS processes."""
    dead_letter_store: bool = False
    """The backend implements :class:`DeadLetterStore`."""
    fetch_while_settling: bool = False
    """A subscription's ``fetch`` and ``seen`` may run while its previous batch's ``settle`` is in flight.

    The runtime never reads past a settle that schedules retries.
    """
    fenced_reset: bool = False
    """A group reset (:mod:`choreograph.core.group_admin`) fences live members: a settle of what they fetched
    before it applies nothing. Without it, stop a group's workers before resetting it."""


@runtime_checkable
class Subscription(Protocol):
    """One member of a consumer group reading one topic."""

    async def fetch(self, max_records: int, timeout: float) -> Sequence[Delivery]:
        """Wait up to ``timeout`` seconds for up to ``max_records`` deliveries.

        Returns an empty sequence on timeout. Deliveries of one partition come
        in offset order, and a record is handed out again only after it was
        retried (nacked) or its holder left the group (closed, crashed, lease
        expired). Callers settle a batch before fetching the next one — or,
        with ``fetch_while_settling``, fetch the next one (and look it up with
        ``seen``) while that settle runs. Not safe to call concurrently with
        itself.
        """
        ...

    async def settle(self, settlement: Settlement) -> None:
        """Apply ``settlement``: ack, schedule retries, store dead letters, publish outputs.

        With ``atomic_settle`` all of it commits in one transaction or none
        does; otherwise outputs and dead letters are written before the acks,
        so a crash in between redelivers rather than loses. Raises BrokerError
        if it could not be applied; the deliveries then stay unsettled and will
        be delivered again.
        """
        ...

    async def seen(self, keys: Sequence[str]) -> set[str]:
        """Return which of the dedupe ``keys`` this group's inbox already holds."""
        ...

    async def close(self) -> None:
        """Leave the group. Unsettled deliveries go back to the group. Idempotent."""
        ...


@runtime_checkable
class Broker(Protocol):
    """A durable, partitioned log with consumer groups."""

    capabilities: Capabilities

    async def publish(self, topic: str, records: Sequence[Record]) -> None:
        """Append ``records`` to ``topic`` in order; durable (per the backend's setting) once it returns.

        Safe to call concurrently; records of one call with the same key keep
        their order. Creates the topic if needed.
        """
        ...

    async def subscribe(self, topic: str, group: str, *, start: Position = Position()) -> Subscription:
        """Join ``group`` on ``topic``. ``start`` applies only when the group is new."""
        ...

    async def ping(self) -> None:
        """Return if the broker is reachable and healthy; raise BrokerUnavailable otherwise."""
        ...

    async def close(self) -> None:
        """Flush buffered publishes and release resources. Idempotent."""
        ...


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """Lag of one group on one partition: ``end_offset - committed``."""

    topic: str
    group: str
    partition: int
    end_offset: int
    committed: int
    oldest_offset: int | None = None
    """The :class:`LogReader` offset of the oldest record the group has not handled, where the
    backend's lag positions are not read offsets (NATS: the consumer's ack floor + 1, a stream
    sequence); ``None``: read it at ``committed``."""

    @property
    def lag(self) -> int:
        """Records published but not yet committed by the group."""
        return max(0, self.end_offset - self.committed)


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic, its partition count and number of retained records."""

    name: str
    partitions: int
    records: int
    end_offset: int


@runtime_checkable
class LagReporter(Protocol):
    """Reports consumer lag."""

    async def lag(self, group: str | None = None) -> list[PartitionLag]:
        """Return lag per (topic, group, partition), for one group or all."""
        ...


@runtime_checkable
class TopicAdmin(Protocol):
    """Lists topics."""

    async def topics(self) -> list[TopicInfo]:
        """Return every topic, sorted by name."""
        ...


@runtime_checkable
class LogReader(Protocol):
    """Reads a topic without joining a group (tail, replay, trace)."""

    async def read(self, topic: str, start: Position = Position(), *, limit: int = 1000) -> Sequence[Delivery]:
        """Return up to ``limit`` records from ``start`` in (partition, offset) order. Does not block."""
        ...


@runtime_checkable
class PartitionReader(Protocol):
    """Reads one partition of a topic from an offset, touching no other partition (lag in seconds)."""

    async def read_partition(self, topic: str, partition: int, offset: int, *, limit: int = 1) -> Sequence[Delivery]:
        """Return up to ``limit`` records of ``partition`` at or after ``offset``, in offset order. Does not block."""
        ...


@runtime_checkable
class DeadLetterStore(Protocol):
    """Keeps dead letters and resubmits them to the group that gave up."""

    async def dead_letters(
        self, *, group: str | None = None, status: str | None = DeadLetterStatus.OPEN, limit: int = 100
    ) -> list[DeadLetter]:
        """Return dead letters, oldest first."""
        ...

    async def dead_letter(self, dead_letter_id: str) -> DeadLetter:
        """Return one dead letter; raise NotFound if absent."""
        ...

    async def resubmit(self, dead_letter_id: str, value: bytes | None = None) -> bool:
        """Hand the record back to its group (``value`` replaces the bytes for edit-and-retry).

        Atomic and idempotent: returns False, doing nothing, if the entry was
        already resubmitted or purged. Raises NotFound if absent.
        """
        ...

    async def purge(self, dead_letter_ids: Sequence[str] | None = None, *, delete: bool = False) -> int:
        """Mark entries purged (all open entries if ``None``); return how many.

        A purged entry is kept, with its bytes, for audit. With ``delete`` the
        entries are removed instead, whatever their status (every entry if
        ``None``), so their bytes — personal data, perhaps — leave the store:
        :meth:`dead_letter` then raises NotFound and no listing shows them.
        Returns how many were removed; an absent id counts 0 (idempotent).
        How soon the bytes leave the disk is the backend's (see its docs).
        """
        ...


@runtime_checkable
class DeadLetterCounter(Protocol):
    """Counts dead letters without reading their bytes (for metrics scrapes)."""

    async def dead_letter_counts(
        self, *, status: str | None = DeadLetterStatus.OPEN
    ) -> dict[tuple[str, str, str], int]:
        """Return how many dead letters have ``status`` (``None``: any), per (topic, group, reason).

        Reads no payloads where the backend can avoid it (an index or the entries' metadata
        only); where it cannot, it holds at most one page of entries at a time.
        """
        ...


PARK_DELAY = 300.0
"""Seconds a parked record (its dead letter could not be stored) waits before it is delivered again."""


@runtime_checkable
class ParkReporter(Protocol):
    """A broker that parks a record whose dead letter it cannot store, instead of failing the settle.

    Parked: not acknowledged (so never lost) and handed back after
    :data:`PARK_DELAY`, while the rest of its partition moves on; the backend
    logs each one at error level. Exported as ``choreograph_dead_letters_parked_total``.
    """

    def parked_counts(self) -> dict[tuple[str, str], int]:
        """Return how many records this broker instance parked since it opened, per (topic, group)."""
        ...


class ParkLedger:
    """What a broker parked, per (topic, group): a broker keeps one and answers ``parked_counts`` from it."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, topic: str, group: str, count: int = 1) -> None:
        """Count ``count`` records of ``group`` on ``topic`` parked."""
        self._counts[(topic, group)] = self._counts.get((topic, group), 0) + count

    @property
    def total(self) -> int:
        """Records parked in all."""
        return sum(self._counts.values())

    def counts(self) -> dict[tuple[str, str], int]:
        """A copy of the counts per (topic, group)."""
        return dict(self._counts)
