"""One member of a consumer group on a Kafka topic.

Kafka assigns partitions to members (the group protocol); this member keeps,
per assigned partition, the records it read but has not settled: handed out,
waiting for a retry, or held back because an earlier record with the same key
waits. The committed offset is always the oldest unsettled record (or the
end of what was read), so a commit — after a settle, on a rebalance, on
close — never skips an unprocessed record.

Retries are in place: a failed record keeps its partition position, its
key's later records wait for it, other keys flow. Its attempt count, first
failure and due time go to the state topic before the settle returns, so a
member that takes the partition over (after a crash or a rebalance) resumes
the count and the delay. The delay itself is waited out by the member.

State-topic reads stay off the per-batch path: while a member holds a
partition it is the only writer of that partition's retry state and inbox
keys, and it sees its own writes at once. What other members wrote is read
once, when partitions are assigned (a catch-up to the state topic's end
before any record of the new partitions is handed out). So a fetch, a
``seen`` and a settle cost no ``ListOffsets`` round trip; a settle costs one
produce (its rows plus one inbox record) and one offset commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.structs import OffsetAndMetadata

from choreograph.core.broker import PARK_DELAY, Delivery, Position, Record, Settlement
from choreograph.core.enums import StartKind
from choreograph.core.errors import BrokerClosed, BrokerError, ConfigurationError

from .link import BrokerLink
from .translation import RESUBMIT_GROUP_HEADER, to_delivery, translated

if TYPE_CHECKING:
    from .state import StateTable

logger = logging.getLogger("choreograph.brokers.kafka")

_REFUSED: Final = (kafka_errors.MessageSizeTooLargeError, kafka_errors.RecordTooLargeError)
"""What a write of dead letters meets when they are over a size limit: trying again cannot help (see settle)."""

_REBALANCE_GRACE = 0.5
"""Seconds a fetch may overrun its timeout while the group rebalances, before it returns empty-handed."""


@dataclass(slots=True)
class _Item:
    """A record read from a partition and not settled yet."""

    delivery: Delivery
    offset: int = 0
    """Where the record is in the log (a resubmitted dead letter reports its original offset instead)."""
    attempt: int = 0
    due: float = 0.0
    held: bool = False
    first_failure: float | None = None
    stored: bool = False
    """Its retry state is in the state topic (delete it once settled)."""


@dataclass(slots=True)
class _Partition:
    next_offset: int | None = None
    items: dict[int, _Item] = field(default_factory=dict)

    def commit_point(self) -> int | None:
        """The oldest unsettled offset, or the next one to read."""
        return min(self.items) if self.items else self.next_offset


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, subscription: KafkaSubscription) -> None:
        self._subscription = subscription

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._subscription.revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._subscription.assigned(assigned)


class KafkaSubscription:
    """One member of a consumer group on a :class:`KafkaBroker` topic."""

    def __init__(self, broker: BrokerLink, topic: str, group: str, start: Position) -> None:
        self._broker = broker
        self.topic = topic
        self.group = group
        self._start = start
        config = broker.config
        self._consumer = AIOKafkaConsumer(
            **broker.consumer_options(),
            group_id=group,
            auto_offset_reset="earliest",
            session_timeout_ms=int(config.session_timeout * 1000),
            heartbeat_interval_ms=int(config.heartbeat_interval * 1000),
            max_poll_interval_ms=max(int(config.session_timeout * 1000) * 6, 60_000),
        )
        self._parts: dict[int, _Partition] = {}
        """Partitions ready to hand out (set up by :meth:`assigned`), by number."""
        self._held: dict[tuple[int, int], _Item] = {}
        self._state: StateTable | None = None
        self._broken: BaseException | None = None
        """Why setting up an assignment failed; the next fetch raises it (the runtime then resubscribes)."""
        self._idle = asyncio.Event()
        self._idle.set()
        self._revoking = False
        self._closed = False

    @property
    def member(self) -> str:
        """The member id the group coordinator gave this member (empty before joining)."""
        return str(getattr(self._consumer._coordinator, "member_id", "") or "")

    async def join(self) -> None:
        """Start the consumer and subscribe; the group assigns partitions in the background."""
        self._state = await self._broker.state(fresh=False)
        async with translated(f"join group {self.group!r}"):
            if self._start.kind == StartKind.LATEST:
                # "latest" means the end *now*, not when the group protocol assigns the partitions later
                count = await self._broker.partitions(self.topic)
                ends = await self._broker.end_offsets([TopicPartition(self.topic, p) for p in range(count)])
                self._start = Position.at_offsets({tp.partition: offset for tp, offset in ends.items()})
            await self._consumer.start()
            self._consumer.subscribe([self.topic], listener=_Listener(self))

    # -- rebalance callbacks (run by aiokafka's coordinator) ------------------

    async def revoked(self, revoked: list[TopicPartition]) -> None:
        """Wait for the batch in hand to be settled, then commit what was settled and forget the partitions."""
        self._revoking = True
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self._broker.config.session_timeout)
            await self._commit([tp.partition for tp in revoked])
            for tp in revoked:
                self._parts.pop(tp.partition, None)
        finally:
            self._revoking = False

    async def assigned(self, assigned: list[TopicPartition]) -> None:
        """Catch up with the state topic, then position new partitions: at the group's commit, else at the start.

        Records of a partition are handed out only after this finished for it
        (:meth:`_add` drops and re-reads earlier ones), so they see the retry
        state and inbox keys every previous owner wrote. aiokafka only logs an
        exception raised here, so a failure is kept and raised by the next fetch.
        """
        try:
            await self._setup([tp for tp in assigned if tp.partition not in self._parts])
        except Exception as exc:  # aiokafka would only log it: the next fetch raises it
            logger.warning("setting up partitions of %s for %r failed: %r", self.topic, self.group, exc)
            self._broken = exc

    async def _setup(self, new: list[TopicPartition]) -> None:
        if not new:
            return
        assert self._state is not None
        await self._state.refresh()
        parts: dict[int, _Partition] = {}
        fresh = []
        for tp in new:
            committed = await self._consumer.committed(tp)
            parts[tp.partition] = _Partition(next_offset=committed)
            if committed is None and self._start.kind in (StartKind.TIME, StartKind.OFFSETS):
                fresh.append(tp)
        if fresh:
            offsets = await self._start_offsets(fresh)
            for tp, offset in offsets.items():
                parts[tp.partition].next_offset = offset
        assignment = self._consumer.assignment()
        for tp in new:
            if tp not in assignment:
                continue  # revoked again while this ran
            part = parts[tp.partition]
            if part.next_offset is not None:
                self._consumer.seek(tp, part.next_offset)  # anything fetched before is read again from here
            self._parts[tp.partition] = part

    async def _start_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        finder = AIOKafkaConsumer(**self._broker.consumer_options())
        await finder.start()
        try:
            finder.assign(tps)
            return await self._broker.start_offsets(finder, tps, self._start)
        finally:
            await finder.stop()

    # -- Subscription -------------------------------------------------------------

    async def fetch(self, max_records: int, timeout: float) -> list[Delivery]:
        """Wait up to ``timeout`` seconds for up to ``max_records`` deliveries of this member's partitions."""
        if self._closed:
            raise BrokerClosed(f"this subscription to {self.topic!r} is closed")
        if max_records < 1:
            raise ConfigurationError(f"max_records must be >= 1, got {max_records}")
        if self._broken is not None:
            broken, self._broken = self._broken, None
            raise BrokerError(f"kafka could not set up partitions of {self.topic!r} for {self.group!r}: {broken!r}")
        deadline = time.monotonic() + max(0.0, timeout)
        while not self._closed:
            out = self._take(max_records)
            if len(out) < max_records:
                remaining = deadline - time.monotonic()
                wait = 0.0 if out else max(0.0, min(remaining, self._next_wait()))
                async with translated(f"read {self.topic!r} for {self.group!r}"):
                    batch = await self._getmany(wait, max_records)
                for tp, messages in batch.items():
                    self._add(tp, messages)
                out += self._take(max_records - len(out))
            if out:
                self._idle.clear()
                return out
            if time.monotonic() >= deadline:
                return []
        return []

    async def _getmany(self, wait: float, max_records: int) -> dict[TopicPartition, list[Any]]:
        """``getmany``, bounded: aiokafka waits without a time limit while a rebalance is in progress.

        Cancelling it is safe: it drains records only after its last wait.
        """
        try:
            return await asyncio.wait_for(
                self._consumer.getmany(timeout_ms=int(wait * 1000), max_records=max_records), wait + _REBALANCE_GRACE
            )
        except TimeoutError:
            return {}

    def _next_wait(self) -> float:
        now = self._broker.clock.now()
        dues = [i.due - now for part in self._parts.values() for i in part.items.values() if not i.held and i.due > now]
        return max(0.001, min(dues, default=0.1))

    def _add(self, tp: TopicPartition, messages: Sequence[Any]) -> None:
        if not messages:
            return
        p = tp.partition
        part = self._parts.get(p)
        if part is None:
            # fetched before assigned() set the partition up (or after it was revoked): read them again later
            if tp in self._consumer.assignment():
                self._consumer.seek(tp, messages[0].offset)
            return
        assert self._state is not None
        rows = self._state.rows
        prefix = f"retry|{self.group}|{self.topic}|{p}|"
        for message in messages:
            if part.next_offset is not None and message.offset < part.next_offset:
                continue  # read again after a seek
            part.next_offset = message.offset + 1
            only = dict(message.headers or ()).get(RESUBMIT_GROUP_HEADER)
            if only is not None and only != self.group.encode():
                continue  # a dead letter resubmitted to another group
            item = _Item(to_delivery(message), message.offset)
            raw = rows.get(f"{prefix}{message.offset}")
            if raw is not None:
                stored = json.loads(raw)
                item.attempt, item.due, item.first_failure = stored["attempt"], stored["due"], stored["first"]
                item.stored = True
            part.items[message.offset] = item

    def _take(self, max_records: int) -> list[Delivery]:
        now = self._broker.clock.now()
        out: list[Delivery] = []
        for p in sorted(self._parts):
            blocked: set[str] = set()
            items = self._parts[p].items
            for offset in sorted(items):
                item = items[offset]
                key = item.delivery.key
                if item.held or item.due > now or (key is not None and key in blocked) or len(out) >= max_records:
                    if key is not None:
                        blocked.add(key)
                    continue
                item.attempt += 1
                item.held = True
                d = item.delivery
                if d.attempt == item.attempt and d.first_failure == item.first_failure:
                    delivery = d  # a first attempt: the delivery read from the log as it is
                else:
                    delivery = Delivery(
                        d.topic, d.partition, d.offset, d.value, d.key, d.headers, d.timestamp, item.attempt,
                        item.first_failure,
                    )  # fmt: skip
                self._held[(p, d.offset)] = item
                out.append(delivery)
        return out

    async def settle(self, settlement: Settlement) -> None:
        """Write outputs, dead letters, retry state and inbox keys, then commit; raise BrokerError if a write fails.

        Not atomic: outputs and dead letters are acknowledged by Kafka before
        the offsets are committed, so a crash in between redelivers. Dead
        letters over a size limit (an entry the producer refuses) are parked:
        their records are kept as retries due in ``PARK_DELAY`` seconds,
        counted (``KafkaBroker.parked_counts``) and logged, and the rest of the
        settle applies.
        """
        if self._closed:
            raise BrokerClosed(f"this subscription to {self.topic!r} is closed")
        settlement.check(self.topic, self._held, self.group)
        now = self._broker.clock.now()
        by_topic: dict[str, list[Record]] = {}
        for topic, record in settlement.outputs:
            by_topic.setdefault(topic, []).append(record)
        for topic, records in by_topic.items():
            await self._broker.send(topic, records)
        rows: list[tuple[str, bytes | None]] = await self._broker.store_dead_letters(
            [dl for _, dl in settlement.dead_letters]
        )
        letter_rows = len(rows)
        prefix = f"retry|{self.group}|{self.topic}|"
        for delivery in [*settlement.acks, *(d for d, _ in settlement.dead_letters)]:
            item = self._held[(delivery.partition, delivery.offset)]
            if item.stored:
                rows.append((f"{prefix}{delivery.partition}|{item.offset}", None))
        rows += [self._retry_row(prefix, delivery, delay, now) for delivery, delay in settlement.retries]
        assert self._state is not None
        parked = False
        async with translated(f"settle a batch of {self.group!r}"):
            try:
                await self._state.write(rows, group=self.group, inbox=settlement.inbox)
            except kafka_errors.KafkaError as exc:
                if not settlement.dead_letters or not isinstance(exc, _REFUSED):
                    raise
                # The dead letters cannot be written (over the producer's or the topic's size limit): park
                # their records as retries due in PARK_DELAY instead, so the rest of the settle applies.
                parks = [self._retry_row(prefix, d, PARK_DELAY, now) for d, _ in settlement.dead_letters]
                await self._state.write(rows[letter_rows:] + parks, group=self.group, inbox=settlement.inbox)
                parked = True
                self._broker.parked.add(self.topic, self.group, len(parks))
                for delivery, letter in settlement.dead_letters:
                    logger.error(
                        "parked %s[%d]@%d of group %r for %.0f s: its dead letter (%s, %d bytes) cannot be "
                        "stored: %r", delivery.topic, delivery.partition, delivery.offset, self.group, PARK_DELAY,
                        letter.reason, len(letter.value), exc,
                    )  # fmt: skip
            await self._state.expire_if_due()
        finished = [*settlement.acks, *(() if parked else (d for d, _ in settlement.dead_letters))]
        retried = [*settlement.retries, *(((d, PARK_DELAY) for d, _ in settlement.dead_letters) if parked else ())]
        touched = set()
        for delivery in finished:
            done = self._held.pop((delivery.partition, delivery.offset))
            part = self._parts.get(delivery.partition)
            if part is not None:
                part.items.pop(done.offset, None)
            touched.add(delivery.partition)
        for delivery, delay in retried:
            item = self._held.pop((delivery.partition, delivery.offset))
            item.held = False
            item.due = now + delay
            item.first_failure = delivery.first_failure if delivery.first_failure is not None else now
            item.stored = True
        if not self._held:
            self._idle.set()
        if not self._revoking:
            await self._commit(sorted(touched))

    def _retry_row(self, prefix: str, delivery: Delivery, delay: float, now: float) -> tuple[str, bytes | None]:
        """The state row that brings ``delivery`` back in ``delay`` seconds."""
        item = self._held[(delivery.partition, delivery.offset)]
        first = delivery.first_failure if delivery.first_failure is not None else now
        doc = {"attempt": delivery.attempt, "first": first, "due": now + delay}
        return f"{prefix}{delivery.partition}|{item.offset}", json.dumps(doc).encode()

    async def _commit(self, partitions: list[int]) -> None:
        offsets = {}
        for p in partitions:
            part = self._parts.get(p)
            point = part.commit_point() if part is not None else None
            if point is not None:
                offsets[TopicPartition(self.topic, p)] = OffsetAndMetadata(point, "")
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (kafka_errors.CommitFailedError, kafka_errors.IllegalStateError) as exc:
            # the partitions moved: their new owner starts at the last commit and redelivers (at least once)
            logger.info("commit of %s for %r skipped after a rebalance: %s", self.topic, self.group, exc)
        except kafka_errors.KafkaError as exc:
            raise BrokerError(f"kafka failed to commit offsets of {self.group!r}: {exc!r}") from exc

    async def seen(self, keys: Sequence[str]) -> set[str]:
        """Return which ``keys`` this group's inbox (in the state topic) holds; no broker round trip.

        Complete for records of this member's partitions: it holds every key
        written before it was assigned them (caught up then) and every key it
        wrote since. Keys other members write meanwhile (the same event also
        published to one of their partitions) arrive by tailing, a little later.
        """
        if not keys:
            return set()
        assert self._state is not None
        async with translated(f"read the inbox of {self.group!r}"):
            await self._state.poll()
        return self._state.seen(self.group, keys)

    async def close(self) -> None:
        """Commit what was settled and leave the group; unsettled records go to the next owner. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._broker.forget(self)
        self._held.clear()
        self._idle.set()
        try:
            with contextlib.suppress(BrokerError, TimeoutError):
                await asyncio.wait_for(self._commit(sorted(self._parts)), self._broker.config.session_timeout)
        finally:
            await self._stop_consumer()

    async def _stop_consumer(self) -> None:
        """Stop the aiokafka consumer, bounded: it can wait on a rebalance in progress while leaving the group.

        If it does not stop in time, its connections are closed anyway, so no socket outlives the subscription.
        """
        try:
            await asyncio.wait_for(self._consumer.stop(), self._broker.config.session_timeout)
        except TimeoutError:
            with contextlib.suppress(kafka_errors.KafkaError, OSError):
                await self._consumer._client.close()
        except (kafka_errors.KafkaError, OSError):
            pass
