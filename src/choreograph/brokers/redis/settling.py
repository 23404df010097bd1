"""How one Redis group member writes a settlement: one fenced script call, or one MULTI of fenced scripts.

Acks and inbox keys are one ``ACK`` script call; a settlement that also
publishes, schedules retries or stores dead letters is one MULTI/EXEC of
``PUBLISH`` per output topic, ``SCHEDULE`` and ``ACK``. Every script runs
:func:`~.scripts.fenced` by the lease tokens of the partitions settled, so a
member that lost one of them has nothing applied (see :mod:`.leases`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

from redis import exceptions as redis_errors

from choreograph.core.broker import PARK_DELAY, Delivery, Record, Settlement
from choreograph.core.errors import BrokerError, LeaseLost

from . import records as rec
from . import scripts
from .keys import entry_id
from .leases import LeaseState
from .session import RedisSession, due_ms
from .translation import translated

logger = logging.getLogger("choreograph.brokers.redis")

_REFUSALS: Final = ("noperm", "no permissions", "execabort")
"""Replies of a transaction the server discarded whole because a command was not allowed (an ACL on keys)."""


def _refused(exc: BaseException) -> bool:
    """Whether a failed settle was refused whole by the server's rules, not lost to an outage."""
    cause = exc.__cause__
    return isinstance(cause, redis_errors.ResponseError) and any(word in str(cause).lower() for word in _REFUSALS)


class Settler:
    """Writes the settlements of one member of ``group`` on ``topic``. One settlement at a time."""

    def __init__(self, broker: RedisSession, topic: str, group: str, lease: LeaseState) -> None:
        self._broker = broker
        self._client: Any = broker.client
        self._keys = broker.keys
        self._gkeys = broker.keys.group(topic, group)
        self._config = broker.config
        self._topic = topic
        self._group = group
        self._lease = lease
        self._last_inbox_trim = 0.0

    async def write(self, settlement: Settlement, deliveries: Sequence[Delivery]) -> None:
        """Apply ``settlement`` (settling ``deliveries``) atomically, or raise and apply none of it.

        Raises LeaseLost if the fence refused it (the member then holds
        nothing: see :meth:`LeaseState.lose`), BrokerError if Redis failed.

        A settlement whose dead letters the server refuses for good (a user
        not allowed to write the dead-letter keys: the transaction is
        discarded whole) is written again with those records *parked*: kept
        as retries due in ``PARK_DELAY`` seconds instead of acknowledged,
        counted (``RedisBroker.parked_counts``) and logged, so the rest of
        the settlement applies and the partition moves on. If that fails
        too, the first error is raised.
        """
        try:
            await self._write(settlement, deliveries)
        except LeaseLost:
            raise
        except BrokerError as exc:
            if not settlement.dead_letters or not _refused(exc):
                raise
            parked = Settlement(
                acks=list(settlement.acks),
                retries=[*settlement.retries, *((d, PARK_DELAY) for d, _ in settlement.dead_letters)],
                outputs=list(settlement.outputs),
                inbox=list(settlement.inbox),
            )
            try:
                await self._write(parked, deliveries)
            except LeaseLost:
                raise
            except BrokerError:
                raise exc from None
            self._broker.parked.add(self._topic, self._group, len(settlement.dead_letters))
            for delivery, letter in settlement.dead_letters:
                logger.error(
                    "parked %s[%d]@%d of group %r for %.0f s: its dead letter (%s, %d bytes) cannot be stored: %s",
                    delivery.topic, delivery.partition, delivery.offset, self._group, PARK_DELAY, letter.reason,
                    len(letter.value), exc,
                )  # fmt: skip

    async def _write(self, settlement: Settlement, deliveries: Sequence[Delivery]) -> None:
        broker, g = self._broker, self._gkeys
        now = broker.clock.now()
        by_topic: dict[str, list[Record]] = {}
        for topic, record in settlement.outputs:
            by_topic.setdefault(topic, []).append(record)
        for topic in by_topic:
            await broker.partitions(topic)
        done: dict[int, list[str]] = {}
        for delivery in [*settlement.acks, *(d for d, _ in settlement.dead_letters)]:
            done.setdefault(delivery.partition, []).append(entry_id(delivery.offset))
        trim = bool(settlement.inbox) and time.monotonic() - self._last_inbox_trim > self._config.retention_interval
        ack = self._ack_arguments(done, settlement.inbox, now, trim) if done or settlement.inbox else None
        tokens = self._lease.fence(sorted({d.partition for d in deliveries}))
        now_ms = int(time.time() * 1000)  # the clock leases are written with (see leases.LeaseState.arguments)

        def fenced(arguments: list[Any]) -> list[Any]:
            return scripts.fence(arguments, g.leases, self._lease.member, now_ms, tokens)

        async with translated(f"settle a batch of {self._group!r}"), self._refused_as_lease_lost():
            if not (by_topic or settlement.dead_letters or settlement.retries):
                if ack is not None:  # one script call is atomic by itself: no MULTI, two replies fewer to read
                    await self._client.eval(scripts.FENCED_ACK, *fenced(ack))
            else:
                pipe = self._client.pipeline(transaction=True)
                for topic, records in by_topic.items():
                    pipe.eval(scripts.FENCED_PUBLISH, *fenced(await broker.append_arguments(topic, records)))
                if settlement.dead_letters or settlement.retries:
                    pipe.eval(scripts.FENCED_SCHEDULE, *fenced(self._schedule_arguments(settlement, now)))
                if ack is not None:
                    # EVAL with the text, not a registered script: redis-py checks registered scripts with an
                    # extra SCRIPT EXISTS round trip per pipeline, and EVALSHA could meet NOSCRIPT inside the MULTI
                    pipe.eval(scripts.FENCED_ACK, *fenced(ack))
                await pipe.execute()
        if trim:
            self._last_inbox_trim = time.monotonic()

    @contextlib.asynccontextmanager
    async def _refused_as_lease_lost(self) -> AsyncIterator[None]:
        """Turn a fence's refusal into LeaseLost, and mark the member's leases lost."""
        try:
            yield
        except redis_errors.ResponseError as exc:
            if scripts.LEASE_LOST not in str(exc):
                raise
            reason = f"a settle was refused: {str(exc).partition(scripts.LEASE_LOST)[2].strip()}"
            self._lease.lose(reason)
            who = f"member {self._lease.member} of group {self._group!r} on {self._topic!r}"
            raise LeaseLost(f"{who}: {reason}") from None

    def _schedule_arguments(self, settlement: Settlement, now: float) -> list[Any]:
        """Arguments of the SCHEDULE script after its text: dead letters and retries (see scripts.SCHEDULE)."""
        g = self._gkeys
        # KEYS[1] is the dead-letter index, untouched without dead letters: then any key of the group stands in
        # (a settle that parks must not need the dead-letter keys the server refused: see write)
        script_keys = [self._keys.dead_letter_index if settlement.dead_letters else g.leases]
        args: list[Any] = [repr(now), len(settlement.dead_letters)]
        for _, letter in settlement.dead_letters:
            script_keys.append(self._keys.dead_letter(letter.id))
            fields = rec.encode_dead_letter(letter)
            args += [letter.id, 2 * len(fields)]
            for name, value in fields.items():
                args += [name, value]
        for delivery, delay in settlement.retries:
            p = delivery.partition
            first = delivery.first_failure if delivery.first_failure is not None else now
            script_keys += [g.retries(p), g.attempts(p)]
            args += [
                entry_id(delivery.offset),
                due_ms(now, delay),
                rec.encode_attempts(delivery.attempt, first, delivery.key),
            ]
        return [len(script_keys), *script_keys, *args]

    def _ack_arguments(self, done: dict[int, list[str]], inbox: Sequence[str], now: float, trim: bool) -> list[Any]:
        """Arguments of the ACK script after its text: key count, keys, then ARGV (see scripts.ACK)."""
        g, keys = self._gkeys, self._keys
        cutoff = repr(now - self._config.inbox_retention) if trim else ""
        script_keys = [g.inbox]
        args: list[Any] = [self._group, repr(now), cutoff, len(inbox), *inbox]
        for p, ids in done.items():
            script_keys += [keys.stream(self._topic, p), g.retries(p), g.attempts(p), g.resubmitted(p)]
            args += [len(ids), *ids]
        return [len(script_keys), *script_keys, *args]
