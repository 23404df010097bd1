"""The history recorder: every publish, delivery, handling and settlement, in order.

A scenario records what it observed through :class:`Recorder` (which wraps a
broker's publish and a subscription's fetch/settle), or adds events from a
child process with :meth:`History.merge`. :func:`choreograph.testing.checker.check`
reads the history afterwards and names the anomalies.

Messages are identified by the :data:`MESSAGE_ID_HEADER` header the harness puts
on every record it publishes (or, without it, by the record's bytes).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from choreograph.core.broker import Broker, Delivery, Position, Record, Settlement, Subscription

MESSAGE_ID_HEADER: Final = "conformance-id"
"""Header carrying the harness's identity of a message."""

PUBLISH: Final = "publish"
DELIVER: Final = "deliver"
HANDLE: Final = "handle"
ACK: Final = "ack"
RETRY: Final = "retry"
DEAD_LETTER: Final = "dead_letter"
RESUBMIT: Final = "resubmit"
KINDS: Final = (PUBLISH, DELIVER, HANDLE, ACK, RETRY, DEAD_LETTER, RESUBMIT)

_EARLIEST: Final = Position.earliest()


def message_id(headers: Mapping[str, str], value: bytes) -> str:
    """Return the harness identity of a record: its id header, else its bytes."""
    return headers.get(MESSAGE_ID_HEADER) or "bytes:" + value.decode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One observation. ``seq`` orders events; the rest says what, where and to whom."""

    seq: int
    kind: str
    message: str
    topic: str
    group: str | None = None
    member: str | None = None
    key: str | None = None
    partition: int | None = None
    offset: int | None = None
    attempt: int | None = None
    delay: float | None = None

    def to_json(self) -> str:
        """Encode as one JSON line (``seq`` is reassigned by whoever merges it)."""
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> HistoryEvent:
        """Decode a line written by :meth:`to_json`."""
        doc: dict[str, Any] = json.loads(line)
        return cls(**doc)

    def __str__(self) -> str:
        where = f"{self.topic}[{self.partition}]@{self.offset}" if self.partition is not None else self.topic
        parts = [f"#{self.seq}", self.kind, repr(self.message), where]
        if self.group is not None:
            parts.append(f"group={self.group}")
        if self.member is not None:
            parts.append(f"member={self.member}")
        if self.key is not None:
            parts.append(f"key={self.key!r}")
        if self.attempt is not None:
            parts.append(f"attempt={self.attempt}")
        if self.delay is not None:
            parts.append(f"delay={self.delay}")
        return " ".join(parts)


class History:
    """An append-only list of :class:`HistoryEvent`, with running tallies for wait conditions.

    Not thread-safe; fine to share between tasks of one event loop.
    """

    def __init__(self, listener: Callable[[HistoryEvent], None] | None = None) -> None:
        self.events: list[HistoryEvent] = []
        self._seq = itertools.count(1)
        self._listener = listener
        self._finished: dict[tuple[str, str], set[str]] = {}
        self._delivered: dict[tuple[str, str], set[str]] = {}

    def add(self, kind: str, message: str, topic: str, **fields: Any) -> HistoryEvent:
        """Append one event and return it."""
        event = HistoryEvent(next(self._seq), kind, message, topic, **fields)
        self.events.append(event)
        if event.group is not None:
            where = (event.group, event.topic)
            if kind in (ACK, DEAD_LETTER):
                self._finished.setdefault(where, set()).add(message)
            elif kind == RESUBMIT:
                self._finished.setdefault(where, set()).discard(message)
            elif kind == DELIVER:
                self._delivered.setdefault(where, set()).add(message)
        if self._listener is not None:
            self._listener(event)
        return event

    def merge(self, events: Iterable[HistoryEvent]) -> None:
        """Append events observed elsewhere (a child process), renumbered in arrival order."""
        for event in events:
            fields = asdict(event)
            del fields["seq"], fields["kind"], fields["message"], fields["topic"]
            self.add(event.kind, event.message, event.topic, **fields)

    def published(self, topic: str, records: Sequence[Record]) -> list[str]:
        """Record acknowledged publishes; return their message ids."""
        ids = []
        for record in records:
            mid = message_id(record.headers, record.value)
            self.add(PUBLISH, mid, topic, key=record.key)
            ids.append(mid)
        return ids

    def delivered(self, group: str, member: str, deliveries: Sequence[Delivery]) -> None:
        """Record deliveries handed to ``member`` of ``group``."""
        for d in deliveries:
            self.add(DELIVER, _mid(d), d.topic, **_where(d), group=group, member=member, attempt=d.attempt)

    def handled(self, group: str, member: str, delivery: Delivery) -> None:
        """Record that the handler ran for ``delivery`` (after any inbox dedupe)."""
        d = delivery
        self.add(HANDLE, _mid(d), d.topic, **_where(d), group=group, member=member, attempt=d.attempt)

    def settled(self, group: str, member: str, settlement: Settlement) -> None:
        """Record a settlement that the broker accepted (call only after ``settle`` returned)."""
        for d in settlement.acks:
            self.add(ACK, _mid(d), d.topic, **_where(d), group=group, member=member, attempt=d.attempt)
        for d, delay in settlement.retries:
            self.add(RETRY, _mid(d), d.topic, **_where(d), group=group, member=member, attempt=d.attempt, delay=delay)
        for d, _ in settlement.dead_letters:
            self.add(DEAD_LETTER, _mid(d), d.topic, **_where(d), group=group, member=member, attempt=d.attempt)
        for topic, record in settlement.outputs:
            self.published(topic, [record])

    def resubmitted(self, group: str, topic: str, message: str) -> None:
        """Record that an operator resubmitted ``message`` to ``group``."""
        self.add(RESUBMIT, message, topic, group=group)

    def finished(self, group: str, topic: str) -> set[str]:
        """Messages ``group`` acked or dead-lettered on ``topic`` (and not resubmitted since)."""
        return self._finished.get((group, topic), set())

    def delivered_to(self, group: str, topic: str) -> set[str]:
        """Messages delivered at least once to ``group`` on ``topic``."""
        return self._delivered.get((group, topic), set())

    def of(self, kind: str, *, group: str | None = None, topic: str | None = None) -> list[HistoryEvent]:
        """Events of one kind, optionally for one group and topic."""
        return [
            e
            for e in self.events
            if e.kind == kind and (group is None or e.group == group) and (topic is None or e.topic == topic)
        ]


def _mid(delivery: Delivery) -> str:
    return message_id(delivery.headers, delivery.value)


def _where(delivery: Delivery) -> dict[str, Any]:
    return {"key": delivery.key, "partition": delivery.partition, "offset": delivery.offset}


class RecordingSubscription:
    """A :class:`Subscription` that records what passes through it into a :class:`History`."""

    def __init__(self, inner: Subscription, history: History, group: str, member: str) -> None:
        self.inner = inner
        self.history = history
        self.group = group
        self.member = member

    async def fetch(self, max_records: int, timeout: float) -> Sequence[Delivery]:
        """Fetch from the wrapped subscription and record the deliveries."""
        batch = await self.inner.fetch(max_records, timeout)
        self.history.delivered(self.group, self.member, batch)
        return batch

    async def settle(self, settlement: Settlement) -> None:
        """Settle through the wrapped subscription; record it only if that succeeded."""
        await self.inner.settle(settlement)
        self.history.settled(self.group, self.member, settlement)

    async def seen(self, keys: Sequence[str]) -> set[str]:
        """Ask the wrapped subscription's inbox."""
        return await self.inner.seen(keys)

    async def close(self) -> None:
        """Close the wrapped subscription."""
        await self.inner.close()


class Recorder:
    """Publishes and subscribes through a broker while recording into ``history``."""

    def __init__(self, history: History | None = None) -> None:
        self.history = history if history is not None else History()
        self._members = itertools.count(1)

    async def publish(self, broker: Broker, topic: str, records: Sequence[Record]) -> list[str]:
        """Publish; once the broker acknowledged, record the publishes and return their ids."""
        await broker.publish(topic, records)
        return self.history.published(topic, records)

    async def subscribe(
        self, broker: Broker, topic: str, group: str, *, start: Position = _EARLIEST
    ) -> RecordingSubscription:
        """Join ``group`` and return a recording subscription named ``<group>/m<n>``."""
        inner = await broker.subscribe(topic, group, start=start)
        return RecordingSubscription(inner, self.history, group, f"{group}/m{next(self._members)}")
