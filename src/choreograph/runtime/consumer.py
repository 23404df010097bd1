"""The consumer loop of one handler: fetch a batch, handle it, settle it.

Guarantees, given a broker with ``atomic_settle``:

- a batch's acks, retries, dead letters, inbox keys and the events its
  handlers emitted commit together; a crash before the commit redelivers the
  batch, and the handlers' outputs are re-emitted with the same ids;
- events with the same partition key are handled one at a time, in delivery
  order; different keys run concurrently up to the handler's ``concurrency``
  (one task per lane, not per message);
- anything that is not the handler's own failure is dead-lettered with a
  reason and the loop carries on: undecodable bytes or a record the backend
  could not translate (``decode``), a type this handler does not handle when
  it is strict about types (``type``); records behind it keep their order;
- events of other types on a shared topic are acknowledged and counted as
  skipped, never handled as this handler's type.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from choreograph.core import codec
from choreograph.core.broker import Broker, DeadLetter, Delivery, Record, Settlement, Subscription
from choreograph.core.clock import Clock
from choreograph.core.enums import DeadLetterReason
from choreograph.core.envelope import Envelope
from choreograph.core.errors import BrokerError, DecodeError, EncodeError, StorageLost
from choreograph.core.event import Event
from choreograph.core.headers import DEAD_LETTER_ID_HEADER
from choreograph.core.ids import new_id
from choreograph.runtime.batch import ReadBatch, UnhandledType
from choreograph.runtime.breaker import BreakerState
from choreograph.runtime.consumer_config import ConsumerConfig
from choreograph.runtime.context import Context, Outcome
from choreograph.runtime.flow_control import rate_gate
from choreograph.runtime.log_limiter import RepeatLimiter
from choreograph.runtime.middleware import Handler
from choreograph.runtime.service import HandlerSpec
from choreograph.runtime.stats import HandlerStats, SettleListener, SkipListener
from choreograph.runtime.supervisor import Backoff, supervise
from choreograph.security.errors import SecurityError

if TYPE_CHECKING:
    from choreograph.security.guard import Security

logger = logging.getLogger("choreograph.consumer")

__all__ = ["Consumer", "ConsumerConfig", "HandlerStats", "SettleListener", "SkipListener", "UnhandledType"]


class Consumer:
    """Runs one handler's pipeline against its consumer group until stopped."""

    def __init__(
        self,
        broker: Broker,
        spec: HandlerSpec,
        pipeline: Handler,
        *,
        config: ConsumerConfig,
        clock: Clock,
        listeners: Sequence[SettleListener] = (),
        admit: Callable[[Event], dict[str, Any]] | None = None,
        security: Security | None = None,
    ) -> None:
        self._broker = broker
        self.spec = spec
        self._pipeline = pipeline
        self._config = config
        self._clock = clock
        self._listeners = tuple(listeners)
        self._admit = admit
        self._security = security
        self._derive_id = security.output_ids(spec.service) if security is not None else None
        self._stopping = asyncio.Event()
        self.breaker = BreakerState(spec.breaker) if spec.breaker else None
        self.stats = HandlerStats()
        self._log = logging.LoggerAdapter(logger, {"service": spec.service, "handler": spec.name})
        self._repeats = RepeatLimiter(self._log)  # a resubscribe loop on one error logs it once per 30 s
        self._own_type = spec.event.event_type()
        self._strict_types = spec.unknown_types == "dead_letter"
        self._skip_listeners = tuple(listener for listener in self._listeners if isinstance(listener, SkipListener))
        self.rate_gate = rate_gate(spec, self._listeners)  # the spec's RateLimit, resolved once

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, settle it, and leave the group."""
        self._stopping.set()

    async def run_supervised(self, *, fail_fast: bool = False) -> None:
        """Run :meth:`run` until :meth:`stop`, restarting it after a crash (counted in ``stats.crashes``).

        A crash is any exception other than a BrokerError (which :meth:`run`
        survives by itself): a bug in the runtime, a middleware or a backend.
        It is logged with its traceback and the consumer restarts after a
        delay that doubles per crash in a row (``ConsumerConfig.restart_delay``
        up to ``max_restart_delay``); what it held goes back to the group.
        With ``fail_fast`` the exception is raised instead. StorageLost (the
        broker's storage is gone: a deleted or replaced database file) is
        never restarted and always raised, so the process exits non-zero and
        its supervisor restarts it against storage that exists.
        """
        config = self._config

        def crashed(exc: BaseException) -> None:
            self.stats.crashes += 1

        await supervise(
            f"consumer {self.spec.group}",
            self.run,
            stopping=self._stopping,
            backoff=Backoff(config.restart_delay, config.max_restart_delay),
            fail_fast=fail_fast,
            on_crash=crashed,
            log=self._log,
            fatal=(StorageLost,),
        )

    async def run(self) -> None:
        """Consume until :meth:`stop`. Survives broker errors by resubscribing."""
        while not self._stopping.is_set():
            try:
                subscription = await self._broker.subscribe(self.spec.topic, self.spec.group, start=self.spec.start)
            except StorageLost:
                raise
            except BrokerError as exc:
                self._repeats.warning("subscribe failed, retrying: %s", exc)
                await self._pause()
                continue
            try:
                await self._consume(subscription)
            except StorageLost:
                raise
            except BrokerError as exc:
                # Unsettled deliveries go back to the group when we leave it.
                self._repeats.warning("broker error, resubscribing: %s", exc)
                await self._pause()
            finally:
                try:
                    await subscription.close()
                except BrokerError as exc:
                    self._repeats.warning("closing subscription failed: %s", exc)

    async def _pause(self, seconds: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds or self._config.resubscribe_delay)

    async def _consume(self, subscription: Subscription) -> None:
        config = self._config
        breaker = self.breaker
        gate = self.rate_gate
        # Read the next batch (fetch, decode, inbox lookup) while this one settles, where the backend
        # allows it; never with a breaker, whose half-open trial is a single event, nor with a rate limit,
        # which paces each fetch.
        look_ahead = self._broker.capabilities.fetch_while_settling and breaker is None and gate is None
        ahead: ReadBatch | None = None
        while not self._stopping.is_set():
            limit = config.batch_size
            if breaker is not None:
                wait = breaker.wait_time()
                if wait > 0:
                    await self._pause(wait)  # open: events wait in the log, attempts are not spent
                    continue
                if breaker.half_open:
                    limit = 1  # one trial event decides whether to close
            if ahead is None:
                if gate is not None:
                    limit = await gate.acquire(limit, self._stopping)  # waits for the rate; 0 once stopping
                    if not limit:
                        continue
                batch = await subscription.fetch(limit, config.fetch_timeout)
                if gate is not None:
                    gate.give_back(limit - len(batch))
                if not batch:
                    continue
                ahead = await self._read(subscription, batch, ())
            started = time.perf_counter()
            tally = HandlerStats()

            async def settle_early(part: Settlement, part_tally: HandlerStats, at: float = started) -> None:
                await subscription.settle(part)
                self._counted(part, part_tally, at)

            settlement = await self._handle(ahead, tally, settle_early)
            ahead = None
            reading = None
            # Not past a settle that schedules retries: a read made before the schedule is stored could hand
            # out later events of a key that must wait for its retry.
            if look_ahead and not settlement.retries:
                reading = await self._settle_reading_on(subscription, settlement, limit)
            else:
                await subscription.settle(settlement)
            self._counted(settlement, tally, started)
            if reading is not None:
                ahead = await reading  # a failed read raises here, after the settled batch was counted

    def _counted(self, settlement: Settlement, tally: HandlerStats, started: float) -> None:
        """Count a committed ``settlement`` (outcomes in ``tally``) and tell the listeners."""
        self.stats.add(tally)  # counted only once committed
        if tally.skipped:
            for skip_listener in self._skip_listeners:
                skip_listener.skipped(self.spec, tally.skipped, "type")
        elapsed = time.perf_counter() - started
        for listener in self._listeners:
            listener.settled(self.spec, settlement, elapsed)

    async def _settle_reading_on(
        self, subscription: Subscription, settlement: Settlement, limit: int
    ) -> asyncio.Future[ReadBatch | None]:
        """Settle ``settlement`` while the next batch is read; return the read (its result None if nothing came).

        The next batch's inbox lookup may miss keys this settle is writing, so
        those count as seen too. Its handling waits for the settle: were the
        settle to fail, nothing later of the same keys has run yet.
        """
        written = settlement.inbox

        async def read_next() -> ReadBatch | None:
            # The settle has queued its writes by now: let the client's writer put them on the wire before this
            # read's decoding (milliseconds of CPU) holds the loop. The settle's round trip then overlaps it.
            await asyncio.sleep(0)
            batch = await subscription.fetch(limit, self._config.fetch_timeout)
            return await self._read(subscription, batch, written) if batch else None

        reading = asyncio.ensure_future(read_next())
        try:
            await subscription.settle(settlement)
        except BaseException:
            # Let the read finish rather than cancel it mid-fetch: what it took is then held by the
            # subscription and goes back to the group when the subscription closes.
            with contextlib.suppress(Exception):
                await asyncio.shield(reading)
            raise
        return reading

    async def _read(self, subscription: Subscription, batch: Sequence[Delivery], written: Sequence[str]) -> ReadBatch:
        """Decode ``batch``, sort out what this handler does not handle, and look the rest up in the inbox.

        ``written`` are inbox keys being stored by a settle in flight, counted as seen.
        """
        read = ReadBatch()
        max_size = self._config.max_message_size
        own_type = self._own_type
        for delivery in batch:
            if delivery.fault is not None:  # the backend could not translate its native record
                read.rejected.append((delivery, None, DeadLetterReason.DECODE, DecodeError(delivery.fault)))
                continue
            try:
                envelope = codec.decode(delivery.value, max_size=max_size)
            except Exception as exc:  # DecodeError, or a bug: either way the record must not stop the consumer
                read.rejected.append((delivery, None, DeadLetterReason.DECODE, exc))
                continue
            if self._security is not None:  # verify and decrypt before anything else reads the event
                try:
                    envelope = await self._security.open(envelope)
                except SecurityError as exc:  # never handled: dead-lettered with the check's reason
                    read.rejected.append((delivery, envelope, exc.reason, exc))
                    continue
            if envelope.type == own_type:
                read.decoded.append((delivery, envelope))
            elif self._strict_types:
                error = UnhandledType(
                    f"event type {envelope.type!r} is not handled by {self.spec.group}, which handles {own_type!r}"
                )
                read.rejected.append((delivery, envelope, DeadLetterReason.TYPE, error))
            else:
                read.skipped.append(delivery)
        if self.spec.dedupe and read.decoded:
            keys = [env.dedupe_key for _, env in read.decoded]
            read.seen = await subscription.seen(keys)
            if written:
                read.seen.update(set(keys).intersection(written))
        return read

    async def handle_batch(
        self, subscription: Subscription, batch: Sequence[Delivery], tally: HandlerStats
    ) -> Settlement:
        """Handle ``batch`` and return its settlement (not yet applied), counting outcomes in ``tally``."""
        return await self._handle(await self._read(subscription, batch, ()), tally)

    async def _handle(
        self,
        read: ReadBatch,
        tally: HandlerStats,
        settle_early: Callable[[Settlement, HandlerStats], Awaitable[None]] | None = None,
    ) -> Settlement:
        """Handle ``read``; return the settlement of what is left to commit.

        With ``settle_early``, lanes still running after ``straggler_delay``
        do not hold the others: what is done is committed through it, and so
        is each late lane as it finishes but the last, whose settlement is
        returned. Either way this returns only once every lane has finished,
        so no later record of a running key is fetched meanwhile.
        """
        settlement = Settlement()
        for delivery, envelope, reason, exc in read.rejected:
            tally.dead_letters += 1
            self._dead_letter_unread(settlement, delivery, envelope, reason, exc)
        if read.skipped:
            # Other types on a shared topic: acknowledged, neither handled nor remembered in the inbox.
            tally.skipped += len(read.skipped)
            settlement.acks.extend(read.skipped)
        seen = read.seen
        lanes: dict[int, list[tuple[Delivery, Envelope]]] = defaultdict(list)
        width = self.spec.concurrency
        for item in read.decoded:
            lanes[hash(item[1].partitionkey) % width].append(item)
        contexts: list[Context] = []
        if len(lanes) == 1:
            await self._run_lane(next(iter(lanes.values())), seen, contexts)
        elif lanes and settle_early is not None:
            return await self._run_lanes_settling_early(list(lanes.values()), seen, settlement, tally, settle_early)
        elif lanes:
            await asyncio.gather(*(self._run_lane(lane, seen, contexts) for lane in lanes.values()))
        await self._seal(contexts)
        for ctx in contexts:
            self._settle_one(settlement, ctx, tally)
        return settlement

    async def _run_lanes_settling_early(
        self,
        lanes: list[list[tuple[Delivery, Envelope]]],
        seen: set[str],
        settlement: Settlement,
        tally: HandlerStats,
        settle_early: Callable[[Settlement, HandlerStats], Awaitable[None]],
    ) -> Settlement:
        tasks: dict[asyncio.Future[None], list[Context]] = {}
        for lane in lanes:
            out: list[Context] = []
            tasks[asyncio.ensure_future(self._run_lane(lane, seen, out))] = out
        try:
            done, pending = await asyncio.wait(tasks, timeout=self._config.straggler_delay)
            while True:
                for task in done:
                    task.result()  # a lane that failed (a runtime bug, not a handler's) fails the batch
                    await self._seal(tasks[task])
                    for ctx in tasks[task]:
                        self._settle_one(settlement, ctx, tally)
                if not pending:
                    return settlement
                if len(settlement):
                    self._log.debug("settling %d events while %d lane(s) still run", len(settlement), len(pending))
                    part, settlement = settlement, Settlement()
                    await settle_early(part, tally.take())  # the caller counts what is left in tally
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            # What the unfinished lanes hold is not settled: it goes back to the group with the subscription.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _run_lane(self, lane: list[tuple[Delivery, Envelope]], seen: set[str], contexts: list[Context]) -> None:
        pipeline = self._pipeline
        for delivery, envelope in lane:
            ctx = Context(
                envelope=envelope,
                delivery=delivery,
                handler=self.spec,
                seen=seen,
                admit=self._admit,
                derive_id=self._derive_id,
            )
            await pipeline(envelope, ctx)
            contexts.append(ctx)

    async def _seal(self, contexts: Sequence[Context]) -> None:
        """Seal the outputs of the successful handlings among ``contexts`` (keyed ids, encryption, one signature)."""
        security = self._security
        if security is None:
            return
        done = [ctx for ctx in contexts if ctx.outcome is Outcome.SUCCESS and ctx.outputs]
        if not done:
            return
        # derived=True: ids the Context keyed already (Security.output_ids) are kept, any other is keyed here
        sealed = iter(await security.seal([out for ctx in done for _, out in ctx.outputs], derived=True))
        for ctx in done:
            ctx.outputs[:] = [(topic, next(sealed)) for topic, _ in ctx.outputs]

    def _settle_one(self, settlement: Settlement, ctx: Context, stats: HandlerStats) -> None:
        outcome = ctx.outcome
        records: list[tuple[str, Record]] = []
        if outcome is Outcome.SUCCESS and ctx.outputs:
            try:
                records = [(topic, Record(codec.encode(out), out.partitionkey)) for topic, out in ctx.outputs]
            except EncodeError as exc:
                # An output that cannot be sent (over the size limit) fails the handling for good: raised out of
                # here it would stop the consumer, and again at each redelivery.
                ctx.outputs.clear()
                ctx.error, ctx.reason, ctx.outcome = exc, DeadLetterReason.ERROR, Outcome.DEAD_LETTER
                ctx.stack = "".join(traceback.format_exception(exc))
                outcome = Outcome.DEAD_LETTER
        if self.breaker is not None and outcome is not Outcome.DUPLICATE:
            # Only failures of the handler's work count; bad data says nothing about the downstream.
            self.breaker.record(
                outcome is Outcome.RETRY or (outcome is Outcome.DEAD_LETTER and ctx.reason == DeadLetterReason.ERROR)
            )
        if outcome is Outcome.SUCCESS:
            stats.handled += 1
            settlement.acks.append(ctx.delivery)
            if self.spec.dedupe:
                settlement.inbox.append(ctx.envelope.dedupe_key)
            settlement.outputs.extend(records)
            stats.published += len(records)
        elif outcome is Outcome.DUPLICATE:
            stats.duplicates += 1
            settlement.acks.append(ctx.delivery)
        elif outcome is Outcome.RETRY:
            stats.retries += 1
            settlement.retries.append((ctx.delivery, ctx.retry_delay))
            ctx.log.info(
                "attempt %d of %s %s failed, retrying in %.3fs: %r",
                ctx.attempt,
                ctx.envelope.type,
                ctx.envelope.id,
                ctx.retry_delay,
                ctx.error,
            )
        else:
            stats.dead_letters += 1
            error = ctx.error
            settlement.dead_letters.append(
                (
                    ctx.delivery,
                    self._dead_letter(
                        ctx.delivery,
                        envelope=ctx.envelope,
                        reason=ctx.reason or DeadLetterReason.ERROR,
                        error=error,
                        stack=ctx.stack,
                    ),
                )
            )
            ctx.log.warning(
                "dead-lettered %s %s after %d attempt(s) (%s): %r",
                ctx.envelope.type,
                ctx.envelope.id,
                ctx.attempt,
                ctx.reason,
                error,
            )

    def _dead_letter_unread(
        self, settlement: Settlement, delivery: Delivery, envelope: Envelope | None, reason: str, exc: Exception
    ) -> None:
        stack = "".join(traceback.format_exception(exc))
        settlement.dead_letters.append(
            (delivery, self._dead_letter(delivery, envelope=envelope, reason=reason, error=exc, stack=stack))
        )
        # exc_info only for what a DecodeError does not describe: a bug worth its traceback in the log.
        expected = isinstance(exc, DecodeError | UnhandledType | SecurityError)
        self._log.warning(
            "dead-lettered the record at %s[%d]@%d (%s): %s",
            delivery.topic,
            delivery.partition,
            delivery.offset,
            reason,
            exc if expected else repr(exc),
            exc_info=None if expected else exc,
        )

    def _dead_letter(
        self,
        delivery: Delivery,
        *,
        envelope: Envelope | None,
        reason: str,
        error: BaseException | None,
        stack: str,
    ) -> DeadLetter:
        now = self._clock.now()
        return DeadLetter(
            id=new_id(),
            topic=delivery.topic,
            group=self.spec.group,
            handler=f"{self.spec.service}.{self.spec.name}",
            partition=delivery.partition,
            offset=delivery.offset,
            key=delivery.key,
            value=delivery.value,
            headers=dict(delivery.headers),
            event_id=envelope.id if envelope else None,
            event_type=envelope.type if envelope else None,
            reason=str(reason),  # a plain str, as every backend returns it (the memory broker keeps this object)
            error_type=type(error).__qualname__ if error else "",
            error_message=str(error) if error else "",
            stack=stack,
            attempts=delivery.attempt,
            first_failure=delivery.first_failure or now,
            last_failure=now,
            predecessor=delivery.headers.get(DEAD_LETTER_ID_HEADER),  # set by a dead letter's resubmission
        )
