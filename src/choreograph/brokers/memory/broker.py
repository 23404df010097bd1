"""The in-memory broker itself: topics, consumer groups, fetch and settlement.

See :mod:`choreograph.brokers.memory` for the guarantees; the dead-letter store
lives in :mod:`.dead_letters`, a group member in :mod:`.subscription`.
"""

from __future__ import annotations

from collections.abc import Sequence

from choreograph.brokers.memory._state import (
    _EARLIEST,
    DEFAULT_PARTITIONS,
    _delivery,
    _Entry,
    _Group,
    _Pending,
    _Stored,
    _Topic,
)
from choreograph.brokers.memory.config import MemoryConfig, parse_url
from choreograph.brokers.memory.dead_letters import DeadLetterShelf
from choreograph.brokers.memory.kv import KeyValueShelf
from choreograph.brokers.memory.reset import GroupReset
from choreograph.brokers.memory.subscription import MemorySubscription
from choreograph.core.broker import (
    Capabilities,
    Delivery,
    PartitionLag,
    Position,
    Record,
    Settlement,
    TopicInfo,
)
from choreograph.core.clock import Clock, SystemClock
from choreograph.core.enums import StartKind
from choreograph.core.errors import (
    BrokerClosed,
    BrokerError,
    BrokerUnavailable,
    ConfigurationError,
    UnknownTopic,
)
from choreograph.core.names import check_group, check_topic
from choreograph.core.partitioning import RoundRobin
from choreograph.core.retention import LogSize, Retention


class MemoryBroker(DeadLetterShelf, KeyValueShelf, GroupReset):
    """A partitioned log with consumer groups, retries and dead letters, held in memory.

    Not thread-safe: use it from one event loop. Data lives as long as the object.
    """

    capabilities = Capabilities(
        per_key_order=True,
        persistent=False,
        replay=True,
        lag=True,
        native_delay=True,
        atomic_settle=True,
        cross_process=False,
        dead_letter_store=True,
        fenced_reset=True,
    )

    def __init__(
        self,
        config: MemoryConfig | None = None,
        *,
        clock: Clock | None = None,
        client: None = None,
        partitions: int | None = None,
        dead_letter_retention: float | None = None,
    ) -> None:
        """An empty broker.

        The shape every broker shares: ``XBroker(config=None, *, clock=None, client=None)``; the
        memory broker has no client. ``partitions`` and ``dead_letter_retention`` are short for
        ``config=MemoryConfig(...)`` (the older form, kept).
        """
        if client is not None:
            raise ConfigurationError("the memory broker takes no client")
        if config is None:
            config = MemoryConfig(partitions if partitions is not None else DEFAULT_PARTITIONS, dead_letter_retention)
        elif partitions is not None or dead_letter_retention is not None:
            raise ConfigurationError("give the settings in config or as keywords, not both")
        self.config = config
        self.partitions = config.partitions
        self.dead_letter_retention = config.dead_letter_retention
        """Seconds a dead letter is kept after it was stored, whatever its status; then it is deleted."""
        self.clock: Clock = clock or SystemClock()
        self._topics: dict[str, _Topic] = {}
        self._round_robin = RoundRobin()
        self._groups: dict[tuple[str, str], _Group] = {}
        self._inbox: dict[str, set[str]] = {}
        self._dead: dict[str, _Stored] = {}
        self._closed = False
        self._wakes = 0

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None) -> MemoryBroker:
        """Build a broker from ``memory://`` or ``memory://?partitions=N&dead_letter_retention=SECONDS``."""
        return cls(parse_url(url), clock=clock)

    # -- Broker ---------------------------------------------------------------

    async def publish(self, topic: str, records: Sequence[Record]) -> None:
        """Append ``records`` in order; visible to fetches when it returns. Atomic, never blocks."""
        check_topic(topic)
        self._check_open()
        self._append(topic, records)

    async def subscribe(self, topic: str, group: str, *, start: Position = _EARLIEST) -> MemorySubscription:
        """Join ``group`` on ``topic``; the group's partitions are re-split among its members."""
        check_topic(topic), check_group(group)
        self._check_open()
        state = self._groups.get((topic, group))
        if state is None:
            log = self._topic(topic)
            cursors = self._start(log, start)
            state = _Group(log, group, cursors, [{} for _ in cursors])
            self._groups[(topic, group)] = state
        member = MemorySubscription(self, state)
        state.members.append(member)
        state.topic.notify()
        return member

    async def ping(self) -> None:
        """Return while the broker is open; raise BrokerUnavailable after :meth:`close`."""
        if self._closed:
            raise BrokerUnavailable("the memory broker is closed")

    async def close(self) -> None:
        """Close every subscription and refuse further work. Idempotent; nothing is buffered."""
        if self._closed:
            return
        self._closed = True
        for state in self._groups.values():
            for member in list(state.members):
                member._leave()
        for log in self._topics.values():
            log.notify()

    # -- LagReporter, TopicAdmin, LogReader -----------------------------------

    async def lag(self, group: str | None = None) -> list[PartitionLag]:
        """Return ``end - committed`` per (topic, group, partition), sorted."""
        out = []
        for (topic, name), state in sorted(self._groups.items()):
            if group is not None and name != group:
                continue
            for p, entries in enumerate(state.topic.log):
                out.append(PartitionLag(topic, name, p, len(entries), state.committed(p)))
        return out

    async def topics(self) -> list[TopicInfo]:
        """Return every topic, sorted by name."""
        out = []
        for name in sorted(self._topics):
            size = sum(len(entries) for entries in self._topics[name].log)
            out.append(TopicInfo(name, len(self._topics[name].log), size, size))
        return out

    async def read(self, topic: str, start: Position = _EARLIEST, *, limit: int = 1000) -> list[Delivery]:
        """Return up to ``limit`` records from ``start`` in (partition, offset) order. Never blocks."""
        self._check_open()
        log = self._topics.get(topic)
        if log is None:
            raise UnknownTopic(f"topic {topic!r} does not exist")
        out: list[Delivery] = []
        for p, first in enumerate(self._start(log, start)):
            for entry in log.log[p][first:]:
                if len(out) >= limit:
                    return out
                out.append(_delivery(topic, p, entry))
        return out

    async def resolve_position(self, topic: str, start: Position) -> dict[int, int]:
        """Return partition -> first offset to read for ``start``."""
        log = self._topics.get(topic)
        return {} if log is None else dict(enumerate(self._start(log, start)))

    def describe_retention(self) -> Retention:
        """Memory keeps every record until the process exits: no retention (it is for tests and demos)."""
        return Retention(
            "memory", None, True, "records live in this process's memory until it exits", configurable=False
        )

    async def log_size(self) -> LogSize:
        """Return records per topic (bytes are not counted: Python objects have no cheap size)."""
        return LogSize({name: sum(map(len, t.log)) for name, t in self._topics.items()})

    # -- DeadLetterStore: inherited from DeadLetterShelf (dead_letters.py) ------

    # -- for test harnesses -------------------------------------------------------

    def ready_at(self, topic: str, group: str) -> float | None:
        """Return the earliest clock time at which ``group`` has a record of ``topic`` to work on. Never blocks.

        ``None`` when the group has settled every record (or does not exist).
        A time at or before ``clock.now()`` means it has work now: records in
        flight, or records it can be handed. A later time means all it has left
        are retries due then, with any records of the same keys queued behind
        them. For harnesses deciding whether an app has gone idle.
        """
        state = self._groups.get((topic, group))
        if state is None:
            return None
        now = self.clock.now()
        earliest: float | None = None
        for p, pending in enumerate(state.pending):
            queued = [(item.key, now if item.holder is not None else item.due) for _, item in sorted(pending.items())]
            queued += [(entry.key, now) for entry in state.topic.log[p][state.cursors[p] :]]
            first: dict[str, float] = {}  # key -> when its earliest unsettled record can go out
            for key, at in queued:
                if key is not None:
                    at = max(at, first.setdefault(key, at))  # per-key order: not before the records ahead of it
                earliest = at if earliest is None else min(earliest, at)
        return earliest

    def wake(self) -> None:
        """Make every waiting fetch read the clock again and return what it then has, even nothing. Never blocks.

        For harnesses: after a test moved a manual clock, or so that stopping
        consumers need not wait out their fetch timeout.
        """
        self._wakes += 1
        for log in self._topics.values():
            log.notify()

    # -- internals --------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosed("the memory broker is closed")

    def _topic(self, name: str) -> _Topic:
        log = self._topics.get(name)
        if log is None:
            log = self._topics[name] = _Topic(name, [[] for _ in range(self.partitions)])
        return log

    def _append(self, topic: str, records: Sequence[Record]) -> None:
        log = self._topic(topic)
        now = self.clock.now()
        for record in records:
            if not isinstance(record.value, bytes):
                raise ConfigurationError(f"a record value must be bytes, got {type(record.value).__name__}")
            p = self._round_robin.partition(topic, record.key, len(log.log))
            entries = log.log[p]
            entries.append(_Entry(len(entries), record.key, record.value, dict(record.headers), now))
        if records:
            log.notify()

    def _start(self, log: _Topic, start: Position) -> list[int]:
        if start.kind == StartKind.EARLIEST:
            return [0 for _ in log.log]
        if start.kind == StartKind.LATEST:
            return [len(entries) for entries in log.log]
        if start.kind == StartKind.OFFSETS:
            offsets = start.offsets or {}
            return [min(max(0, offsets.get(p, 0)), len(e)) for p, e in enumerate(log.log)]
        when = start.time if start.time is not None else 0.0
        return [next((e.offset for e in entries if e.timestamp >= when), len(entries)) for entries in log.log]

    def _take(self, member: MemorySubscription, max_records: int) -> list[Delivery]:
        state, now = member._state, self.clock.now()
        out: list[Delivery] = []
        partitions = state.assigned(member)
        if not partitions:
            return out
        turn = member._turn % len(partitions)
        member._turn += 1
        for p in partitions[turn:] + partitions[:turn]:
            if len(out) >= max_records:
                break
            self._take_partition(member, p, now, max_records, out)
        return out

    def _take_partition(
        self, member: MemorySubscription, p: int, now: float, max_records: int, out: list[Delivery]
    ) -> None:
        state = member._state
        pending = state.pending[p]
        blocked: set[str] = set()  # keys with an earlier record that cannot go out now
        for offset in sorted(pending):
            if len(out) >= max_records:
                return
            item = pending[offset]
            if item.key is not None and item.key in blocked:
                continue
            if item.holder is not None or item.due > now:
                if item.key is not None:
                    blocked.add(item.key)
                continue
            out.append(self._hand_out(member, p, item))
        entries = state.topic.log[p]
        while len(out) < max_records and state.cursors[p] < len(entries):
            entry = entries[state.cursors[p]]
            state.cursors[p] += 1
            item = pending[entry.offset] = _Pending(entry.offset, entry.key)
            if entry.key is None or entry.key not in blocked:
                out.append(self._hand_out(member, p, item))

    def _hand_out(self, member: MemorySubscription, p: int, item: _Pending) -> Delivery:
        entry = member._state.topic.log[p][item.offset]
        item.attempt += 1
        item.holder = member
        member._held.add((p, item.offset))
        return Delivery(
            topic=member._state.topic.name,
            partition=p,
            offset=item.offset,
            value=entry.value if item.value is None else item.value,
            key=entry.key,
            headers=dict(entry.headers if item.headers is None else item.headers),
            timestamp=entry.timestamp,
            attempt=item.attempt,
            first_failure=item.first_failure,
        )

    def _next_due(self, member: MemorySubscription) -> float | None:
        """The earliest future due time of a retry in ``member``'s partitions.

        Records already due but blocked behind an earlier record of their key
        are not counted: the settle or close that unblocks them wakes the fetch.
        """
        state, now = member._state, self.clock.now()
        dues = [
            item.due
            for p in state.assigned(member)
            for item in state.pending[p].values()
            if item.holder is None and item.due > now
        ]
        return min(dues, default=None)

    def _settle(self, member: MemorySubscription, settlement: Settlement) -> None:
        state = member._state
        # validate everything before changing anything
        settlement.check(state.topic.name, member._held, state.name)
        letter_ids = [letter.id for _, letter in settlement.dead_letters]
        if len(set(letter_ids)) != len(letter_ids) or any(i in self._dead for i in letter_ids):
            raise BrokerError("a dead letter id in this settlement is already stored")
        now = self.clock.now()
        for delivery in settlement.acks:
            self._release(member, delivery)
        for delivery, delay in settlement.retries:
            item = state.pending[delivery.partition][delivery.offset]
            member._held.discard((delivery.partition, delivery.offset))
            item.holder = None
            item.due = now + delay
            item.first_failure = item.first_failure if item.first_failure is not None else now
        for delivery, letter in settlement.dead_letters:
            item = self._release(member, delivery)
            self._dead[letter.id] = _Stored(
                letter, state.topic.name, state.name, delivery.partition, delivery.offset, item.key, delivery.value, now
            )
        by_topic: dict[str, list[Record]] = {}
        for topic, record in settlement.outputs:
            by_topic.setdefault(topic, []).append(record)
        for topic, records in by_topic.items():
            self._append(topic, records)
        self._inbox.setdefault(state.name, set()).update(settlement.inbox)
        if settlement.retries:
            state.topic.notify()

    def _release(self, member: MemorySubscription, delivery: Delivery) -> _Pending:
        member._held.discard((delivery.partition, delivery.offset))
        return member._state.pending[delivery.partition].pop(delivery.offset)
