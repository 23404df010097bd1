"""Settling a NATS batch, with its fencing, and the inbox lookup: the write half of :class:`NatsSubscription`.

A mixin of :class:`~choreograph.brokers.nats.subscription.NatsSubscription`,
which holds the state.

Settling (not atomic). Outputs (with ``Nats-Msg-Id`` dedupe), dead letters
and retry bookkeeping are written first and awaited, then inbox keys (never
before the outputs they vouch for: a redelivery whose key is stored is
skipped); only then are retries nak'ed with their delay and acks sent as one
buffer, followed by one flush (a PONG: the server has every ack before the
settle returns). A crash in between redelivers the batch — the inbox and the
output message ids make the re-run harmless — rather than losing anything.

Fencing. A settle first confirms the leases of the partitions it settles
(see :meth:`Leases.confirm`: a CAS renewal unless renewed recently), and
checks again before its acks that they are still held; a member that lost
one (its loop stalled past ``lease_timeout``) raises LeaseLost and acks
nothing, drops what it held of that partition (the new owner gets it back),
and is left by the runtime.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any, Final

import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from choreograph.brokers.nats import direct
from choreograph.brokers.nats import naming as n
from choreograph.brokers.nats.bookkeeping import Bookkeeping, Entry
from choreograph.brokers.nats.config import NatsConfig
from choreograph.brokers.nats.dead_letters import writes as dead_letter_writes
from choreograph.brokers.nats.leases import Leases
from choreograph.brokers.nats.link import BrokerLink
from choreograph.brokers.nats.publisher import Message, frame, send_frames
from choreograph.brokers.nats.pulling import _Held, _Partition
from choreograph.brokers.nats.translation import STORAGE_LIMITS, translate, translated
from choreograph.core.broker import PARK_DELAY, DeadLetter, Delivery, Settlement
from choreograph.core.errors import BrokerClosed, BrokerError, BrokerUnavailable, LeaseLost

logger = logging.getLogger("choreograph.brokers.nats")

_ACK: Final = b"+ACK"


class Settling:
    """Settle, fencing and inbox lookup of one group member; the state is :class:`NatsSubscription`'s."""

    topic: str
    group: str
    _broker: BrokerLink
    _names: n.Names
    _nc: Client
    _config: NatsConfig
    _leases: Leases
    _book: Bookkeeping
    _inbox_group: str
    _subjects: dict[str, str]
    _parts: dict[int, _Partition]
    _draining: set[int]
    _held: dict[tuple[int, int], _Held]
    _late: list[Msg]
    _closed: bool

    async def _release_drained(self) -> None:
        raise NotImplementedError  # provided by NatsSubscription

    # -- settle ---------------------------------------------------------------

    async def settle(self, settlement: Settlement) -> None:
        """Write outputs, dead letters, bookkeeping and inbox keys; then nak retries and ack the rest.

        Raises BrokerError if a write failed; nothing is acked then, and the
        deliveries stay held until :meth:`close` hands them back. Raises
        LeaseLost, writing and acking nothing, if this member no longer holds
        (or lost and took again since the fetch) a partition it settles; and,
        writing but acking nothing, if it lost one while writing.
        """
        if self._closed:
            raise BrokerClosed(f"this subscription of {self.group!r} to {self.topic!r} is closed")
        deliveries = settlement.check(self.topic, self._held, self.group)
        touched = {d.partition for d in deliveries}
        moved = {d.partition for d in deliveries if self._moved(d.partition, self._held[(d.partition, d.offset)])}
        if moved:  # lost since these were fetched, perhaps taken again since: the records are not ours to settle
            for place in [place for place, h in self._held.items() if self._moved(place[0], h)]:
                del self._held[place]
            raise LeaseLost(
                f"member {self._leases.member} lost partitions {sorted(moved)} of {self.topic!r} after fetching"
            )
        await self._fenced(touched, margin=self._config.lease_timeout / 2)
        parked = await self._write_first(settlement)
        finished: list[tuple[int, int]] = []
        try:
            # the writes took, or the loop stalled, that long: renew (or learn the acks are not ours to send)
            await self._fenced(set(self._leases.valid(touched)), margin=0.0)
            with translated("settle"):
                for delivery, delay in settlement.retries:
                    held = self._held.pop((delivery.partition, delivery.offset))
                    await held.msg.nak(delay=delay if delay > 0 else None)
                acks = []
                for delivery in (*settlement.acks, *(d for d, _ in settlement.dead_letters)):
                    held = self._held.pop((delivery.partition, delivery.offset))
                    if parked and (delivery.partition, delivery.offset) in parked:
                        await held.msg.nak(delay=PARK_DELAY)
                        continue
                    acks.append(frame(held.msg.reply, "", _ACK, None))
                    if held.entry is not None:
                        finished.append((delivery.partition, held.seq))
                await send_frames(self._nc, acks)
                # JetStream never confirms an ack; the PONG behind them says the server has them all, so a
                # member killed right after its settle returned does not lose them (conformance A10). With
                # fetch_while_settling the round trip overlaps the next batch's reading.
                await self._nc.flush(timeout=int(self._config.request_timeout))
        finally:
            await self._release_drained()
        if finished:
            try:
                await self._book.forget(finished)
            except BrokerError as exc:
                logger.debug("could not drop bookkeeping entries (they expire): %s", exc)

    def _moved(self, partition: int, held: _Held) -> bool:
        """Whether ``held`` was fetched under a lease of ``partition`` this member no longer has."""
        return held.part is not self._parts.get(partition)

    async def _fenced(self, partitions: set[int], *, margin: float) -> None:
        """Confirm the leases of ``partitions`` (see Leases.confirm); on LeaseLost forget what is held of the lost.

        Forgotten, not handed back: the records belong to the partition's new
        owner, which gets them when their ``ack_wait`` runs out; a nak from
        here could hand them out again while the new owner works on them.
        """
        if not partitions:
            return
        try:
            await self._leases.confirm(partitions, margin=margin)
        except LeaseLost:
            lost = {p for p in partitions if p not in self._leases.owned}
            for place in [place for place in self._held if place[0] in lost]:
                del self._held[place]
            for p in lost:
                part = self._parts.pop(p, None)
                if part is not None:
                    part.active = False
                    self._late.extend(part.buffer)  # never handed out: given back as usual
                    part.buffer.clear()
                self._draining.discard(p)
            raise

    async def _write_first(self, settlement: Settlement) -> set[tuple[int, int]]:
        writes: list[Awaitable[Any]] = []
        if settlement.outputs:
            writes.append(self._broker.publish_many(settlement.outputs))
        now = time.time()
        failures = {}
        for delivery, _ in settlement.retries:
            held = self._held[(delivery.partition, delivery.offset)]
            if held.entry is None or held.entry.first_failure is None:
                returned = held.entry.returned if held.entry else 0
                failures[(delivery.partition, held.seq)] = Entry(now, returned)
        if failures:
            writes.append(self._book.write(failures))
        parked: set[tuple[int, int]] = set()
        if settlement.dead_letters:
            writes.append(self._store_dead_letters(settlement, parked))
        try:
            # One write runs in this task, so its frames are queued for the socket before a read-ahead gets to run.
            if writes:
                await (writes[0] if len(writes) == 1 else asyncio.gather(*writes))
            # Inbox keys only once the rest is stored: a key says "done", and a redelivery of a record whose key is
            # stored is skipped as a duplicate. Written alongside, a key could be stored while the outputs were not
            # (a kill -9 or a server restart mid-settle) and those outputs would be lost for good.
            if settlement.inbox:
                keys: list[Message] = [(self._inbox_subject(key), b"", None) for key in settlement.inbox]
                await self._broker.store_inbox_keys(keys)
        except Exception as exc:
            raise translate(exc, "settle (writing outputs, dead letters and inbox keys)") from exc
        return parked

    async def _store_dead_letters(self, settlement: Settlement, parked: set[tuple[int, int]]) -> None:
        """Store the dead letters of ``settlement`` (values in chunks when big: see dead_letters.writes).

        One that cannot be written for good — too big even so, or refused by
        the bucket (its limits) — is parked instead of failing the settle:
        added to ``parked``, to be nak'ed for ``PARK_DELAY`` rather than acked,
        logged and counted (``NatsBroker.parked_counts``), so the rest of
        the partition moves on. An unreachable server still fails the settle.
        """
        bucket, limit = self._names.dlq_bucket, self._nc.max_payload

        async def store(delivery: Delivery, letter: DeadLetter) -> None:
            try:
                await self._broker.send_acked(
                    dead_letter_writes(bucket, letter, limit), "settle (writing a dead letter)"
                )
            except BrokerError as exc:
                if isinstance(exc, BrokerClosed) or (isinstance(exc, BrokerUnavailable) and not _refused(exc)):
                    raise
                parked.add((delivery.partition, delivery.offset))
                self._broker.parked.add(self.topic, self.group)
                logger.error(
                    "parked %s[%d]@%d of group %r for %.0f s: its dead letter (%s, %d bytes) cannot be stored: %s",
                    delivery.topic, delivery.partition, delivery.offset, self.group, PARK_DELAY, letter.reason,
                    len(letter.value), exc,
                )  # fmt: skip

        await asyncio.gather(*(store(delivery, letter) for delivery, letter in settlement.dead_letters))

    # -- inbox ------------------------------------------------------------------

    def _inbox_subject(self, key: str) -> str:
        """The inbox bucket subject of a dedupe key (remembered from :meth:`seen` until the settle)."""
        subject = self._subjects.get(key)
        if subject is None:
            subject = f"{self._inbox_group}{n.digest(key)}"
        return subject

    async def seen(self, keys: Sequence[str]) -> set[str]:
        """Return which dedupe ``keys`` this group's inbox holds: one batched lookup."""
        if not keys:
            return set()
        subjects = self._subjects = {}  # this batch's only; the next lookup starts a fresh one
        by_subject = {}
        for key in keys:
            subject = subjects[key] = self._inbox_subject(key)
            by_subject[subject] = key
        with translated("inbox lookup"):
            found = await direct.last_values(
                self._nc, f"KV_{self._names.inbox_bucket}", list(by_subject), self._config.request_timeout
            )
        return {by_subject[s] for s, stored in found.items() if not stored.deleted and s in by_subject}


def _refused(exc: BaseException) -> bool:
    """Whether a failed write was refused by the server's limits rather than lost to an outage."""
    cause = exc.__cause__
    return isinstance(cause, nats.js.errors.APIError) and cause.err_code in STORAGE_LIMITS
