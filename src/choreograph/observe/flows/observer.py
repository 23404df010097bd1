"""The workflow observer: follows declared flows through the log without controlling them.

For every flow it joins the consumer group ``observer.<flow>`` on each topic
the flow mentions, applies what it reads to a :class:`FlowTracker`, and after
each batch:

1. commits the changed instances to its :class:`FlowStore` (including the
   notices they owe: stuck, completed, compensation problems);
2. settles (acknowledges) the batch.

Every ``check_interval`` it evaluates deadlines and compensation timeouts,
commits, publishes the owed notices as events (``choreograph.flow.*``) with ids
derived from (correlation id, flow, notice), and commits them as sent.

Deadlines are judged only against what was read (:mod:`.progress`): nothing
until the observer has caught up with the end its topics had when it started,
then against the newest event time read on a topic still being read, or the
clock on a topic with nothing left to read. An observer started long after the
traffic, or restarted, reports no instance whose final event it has not read.

Memory is bounded (:class:`ObserverConfig`): an instance leaves memory once it
is finished and stored (its figures stay as numbers), and at most
``max_open_instances`` instances are held — past that the oldest stored ones
leave too. The store keeps each instance's next due time, so one that left
memory is loaded back when an event or a dead letter concerns it or when its
deadline comes: nothing is judged or counted from a partial state. Finished
instances are deleted from the store ``finished_retention`` seconds after they
finished.

A crash between any two steps loses nothing: unsettled deliveries come back
and are recognized as duplicates by (correlation id, event id); a notice
committed but not marked sent is published again with the same id, which
consumers' inboxes drop. A notice is decided once per instance, so a stuck
instance yields one FlowStuck, across restarts too.

The observer only reads flow topics and publishes its own notices; it never
sends commands to services.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Coroutine, Sequence
from typing import Any

from choreograph.core import codec
from choreograph.core.broker import Broker, DeadLetterStore, Record, Settlement, Subscription
from choreograph.core.clock import Clock
from choreograph.core.enums import DeadLetterReason
from choreograph.core.envelope import Envelope, now_rfc3339
from choreograph.core.errors import BrokerError, ConfigurationError, DecodeError
from choreograph.core.event import Event
from choreograph.core.ids import derived_id
from choreograph.observe.flows.events import OBSERVER_SOURCE, FlowCompensationMissing, FlowCompleted, FlowStuck
from choreograph.observe.flows.figures import FlowFigures
from choreograph.observe.flows.flow import Flow, check_flows
from choreograph.observe.flows.instance import Instance, parse_time
from choreograph.observe.flows.progress import ReadProgress
from choreograph.observe.flows.settings import ObserverConfig, ObserverStats, default_store
from choreograph.observe.flows.store import FlowStore
from choreograph.observe.flows.tracker import FlowTracker
from choreograph.runtime.app import App
from choreograph.security.errors import SecurityError

logger = logging.getLogger("choreograph.observer")

_TOPICS = {cls.event_type(): cls.topic() for cls in (FlowStuck, FlowCompleted, FlowCompensationMissing)}
_UNVERIFIED = frozenset({DeadLetterReason.SIGNATURE, DeadLetterReason.UNAUTHORIZED})
"""Dead-letter reasons of events that failed the signature check: not applied to any instance."""


class Observer:
    """Watches ``flows`` on ``app``'s broker; see the module docstring for guarantees.

    ``store`` keeps instance state across restarts (default: :func:`default_store`);
    ``clock`` judges deadlines (default: the app's clock); ``source`` is the
    notices' CloudEvents source. With ``App(security=...)`` the notices are
    sealed as the app seals its events (ids keyed, encrypted, signed): when
    the app signs, ``source`` must be a service name with a signing key (the
    default ``choreograph.observer`` cannot own one), e.g.
    ``Observer(app, flows, source="flow-observer")`` after
    ``choreograph keys generate flow-observer``.
    """

    def __init__(
        self,
        app: App,
        flows: Sequence[Flow],
        *,
        store: FlowStore | None = None,
        clock: Clock | None = None,
        config: ObserverConfig | None = None,
        source: str = OBSERVER_SOURCE,
    ) -> None:
        check_flows(flows)
        self.app = app
        self.source = source
        self.flows = tuple(flows)
        self._store = store
        self.clock = clock or app.clock
        self.config = config or ObserverConfig()
        self.trackers: dict[str, FlowTracker] = {}
        self.stats = ObserverStats()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._commit_lock = asyncio.Lock()
        self._dead_letters: dict[str, tuple[str, str | None, str, str] | None] = {}
        self._dead_letters_applied: set[str] = set()
        self.progress = ReadProgress()
        """How far each flow has read; decides which time deadlines are judged against."""
        self._next_forget = -math.inf
        self.failure: BaseException | None = None
        """The error that stopped the observer, if one did (the store failed, a bug)."""

    @property
    def broker(self) -> Broker:
        """The broker read from and published to (the app's)."""
        return self.app.broker

    @property
    def store(self) -> FlowStore:
        """The state store, created on first use."""
        if self._store is None:
            self._store = default_store(self.app)
        return self._store

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        """Load stored state, publish notices owed from a previous run, and start reading. Returns at once."""
        if self._tasks:
            raise ConfigurationError("observer already started")
        security = self.app.security
        if security is not None and security.keys is not None and security.keys.signing_key(self.source) is None:
            # Unsigned notices would be dead-lettered (reason signature) by every consumer: refuse to start.
            raise ConfigurationError(
                f"the app signs its events but the flow observer's notices (source {self.source!r}) have no "
                "signing key; run it under a service name with a key: Observer(app, flows, source='flow-observer') "
                "after: choreograph keys generate flow-observer"
            )
        self._stopping.clear()
        self.failure = None
        for flow in self.flows:
            self.trackers[flow.name] = await self._restore(flow)
        await self.commit()
        for flow in self.flows:
            for topic in flow.topics:
                self._spawn(self._follow(flow, topic), f"{flow.group}:{topic}")
        self._spawn(self._tick(), "observer:tick")

    async def _restore(self, flow: Flow, page: int = 1000) -> FlowTracker:
        """A tracker of ``flow`` holding its stored open instances (up to the cap); finished ones as figures only."""
        tracker = FlowTracker(flow)
        after = ""
        while True:
            instances = await self.store.load(flow.name, after=after, limit=page)
            for instance in instances:
                tracker.restore(instance, cap=self.config.max_open_instances)
            if len(instances) < page:
                return tracker
            after = instances[-1].correlation_id

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(self._on_done)
        self._tasks.append(task)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        if self.failure is None:
            self.failure = task.exception()
            logger.error("observer stopped: %s failed: %r", task.get_name(), self.failure)
        self._stopping.set()

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish the batches in hand, commit state, leave the groups. Idempotent.

        After a failure (see :attr:`failure`) nothing more is committed: what
        was not committed is read again by the next run.
        """
        self._stopping.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
            if self.failure is None:
                await self.commit()

    def request_stop(self) -> None:
        """Ask a running :meth:`run` to stop (safe from a signal handler). Returns at once."""
        self._stopping.set()

    async def run(self) -> None:
        """Start and observe until cancelled, :meth:`stop` or a failure (raised); then close the store."""
        await self.start()
        try:
            await self._stopping.wait()
        finally:
            await self.close()
        if self.failure is not None:
            raise self.failure

    async def close(self) -> None:
        """Stop if running and close the store (not the broker: it is the app's). Idempotent."""
        await self.stop()
        if self._store is not None:
            await self._store.close()

    async def __aenter__(self) -> Observer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- reading ---------------------------------------------------------

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.config.resubscribe_delay)

    async def _follow(self, flow: Flow, topic: str) -> None:
        while not self._stopping.is_set():
            try:
                subscription = await self.broker.subscribe(topic, flow.group, start=self.config.start)
            except BrokerError as exc:
                logger.warning("observer %s: subscribing to %s failed, retrying: %s", flow.name, topic, exc)
                await self._pause()
                continue
            try:
                await self._consume(flow, topic, subscription)
            except BrokerError as exc:
                logger.warning("observer %s on %s: broker error, resubscribing: %s", flow.name, topic, exc)
                await self._pause()
            finally:
                with contextlib.suppress(BrokerError):
                    await subscription.close()

    async def _consume(self, flow: Flow, topic: str, subscription: Subscription) -> None:
        tracker = self.trackers[flow.name]
        config = self.config
        stats = self.stats
        while not self._stopping.is_set():
            batch = await subscription.fetch(config.batch_size, config.fetch_timeout)
            if not batch:
                self.progress.fetched(flow.name, topic, 0, -math.inf)
                continue
            now = self.clock.now()
            applied, duplicates = tracker.applied, tracker.duplicates
            read: list[tuple[Envelope, float | None]] = []
            newest = -math.inf
            security = self.app.security if self.app.security is not None and self.app.security.signing else None
            for delivery in batch:
                try:
                    envelope = codec.decode(delivery.value)
                except DecodeError:
                    stats.undecodable += 1
                    continue
                if security is not None:
                    try:  # a forged event must not move an instance on (consumers dead-letter it, unhandled)
                        security.verify(envelope)
                    except SecurityError as exc:
                        stats.refused += 1
                        logger.warning("observer %s: ignored an event on %s: %s", flow.name, topic, exc)
                        continue
                log_time = delivery.timestamp or None
                read.append((envelope, log_time))
                newest = max(newest, parse_time(envelope.time) or log_time or now)
            async with self._commit_lock:  # no instance leaves memory between loading it back and applying
                await self._load_back(tracker, [e.correlationid or e.id for e, _ in read if e.type in flow.types])
                for envelope, log_time in read:
                    tracker.apply(envelope, now=now, log_time=log_time, judge=False)
            self.progress.fetched(flow.name, topic, len(batch), newest)
            stats.events += len(batch)
            stats.applied += tracker.applied - applied
            stats.duplicates += tracker.duplicates - duplicates
            await self._save()
            await subscription.settle(Settlement(acks=list(batch)))

    async def _load_back(self, tracker: FlowTracker, correlation_ids: list[str]) -> None:
        """Load instances that left memory back into ``tracker``; call holding the commit lock."""
        missing = [cid for cid in dict.fromkeys(correlation_ids) if cid not in tracker.instances]
        if missing:
            for instance in await self.store.fetch(tracker.flow.name, missing):
                tracker.adopt(instance)

    async def _tick(self) -> None:
        last_scan = float("-inf")
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.config.check_interval)
            try:
                if loop.time() - last_scan >= self.config.dead_letter_interval:
                    last_scan = loop.time()
                    await self.scan_dead_letters()
                await self.check()
                await self.forget_finished()
            except BrokerError as exc:
                logger.warning("observer check failed, will retry: %s", exc)

    async def forget_finished(self) -> int:
        """Delete instances finished more than ``finished_retention`` ago from the store; return how many.

        Runs at most once per tenth of the retention (at most hourly) unless called directly.
        """
        now = self.clock.now()
        if now < self._next_forget:
            return 0
        retention = self.config.finished_retention
        self._next_forget = now + min(3600.0, retention / 10)
        return sum([await self.store.forget(flow.name, now - retention) for flow in self.flows])

    # -- evaluation ------------------------------------------------------

    async def check(self) -> None:
        """Evaluate deadlines and compensation timeouts, commit, and publish what is owed.

        Each flow is judged at its judge time (see the module docstring): not
        at all before it caught up, at most the clock's time. Instances that
        left memory and are due by then are loaded back first. Called
        periodically by the running observer; call it directly after moving a
        fake clock. Idempotent: a notice is published once per instance.
        """
        now = self.clock.now()
        for flow in self.flows:
            tracker = self.trackers[flow.name]
            if not await self.progress.catch_up(self.broker, flow):
                continue
            judge = self.progress.judge_time(flow, now)
            if judge is None:
                continue
            if tracker.evicted_open:
                await self._check_stored(tracker, judge)
            tracker.check(judge)
        await self.commit()

    async def _check_stored(self, tracker: FlowTracker, judge: float) -> None:
        """Load back, page by page, the instances that left memory and are due by ``judge``; judge and commit them."""
        flow, page = tracker.flow.name, self.config.due_page
        after: tuple[float, str] | None = None
        while True:
            async with self._commit_lock:
                due = await self.store.due(flow, judge, after=after, limit=page)
                for instance in due:
                    tracker.adopt(instance)
            if len(due) < page:
                return
            last = due[-1]
            after = (-math.inf if last.wake_at is None else last.wake_at, last.correlation_id)
            tracker.check(judge)
            await self.commit()

    async def scan_dead_letters(self) -> int:
        """Flag compensations whose trigger event was dead-lettered; return how many changed.

        Does nothing unless the broker implements DeadLetterStore and a flow
        declares compensations. Matches a dead letter to an instance by the
        correlation id inside the dead-lettered envelope.
        """
        broker = self.broker
        if not isinstance(broker, DeadLetterStore) or not any(f.compensations for f in self.flows):
            return 0
        entries = await broker.dead_letters(status=None, limit=self.config.dead_letter_limit)
        now = self.clock.now()
        changed = 0
        fresh = [e for e in entries if e.id not in self._dead_letters_applied]
        for entry in fresh:
            if entry.id not in self._dead_letters and entry.reason in _UNVERIFIED:
                self._dead_letters[entry.id] = None  # a forgery's dead letter says nothing of a real instance
            if entry.id not in self._dead_letters:
                try:
                    envelope = codec.decode(entry.value)
                except DecodeError:
                    self._dead_letters[entry.id] = None
                    continue
                detail = f"dead letter {entry.id} in {entry.group}: {entry.error_type}: {entry.error_message}"
                self._dead_letters[entry.id] = (
                    envelope.correlationid or envelope.id,
                    entry.event_type or envelope.type,
                    entry.group,
                    detail[:500],
                )
        wanted = [found[0] for e in fresh if (found := self._dead_letters[e.id]) is not None]
        async with self._commit_lock:  # as in reading: load back, then apply, with no eviction in between
            for tracker in self.trackers.values():
                await self._load_back(tracker, wanted)
            for entry in fresh:
                found = self._dead_letters[entry.id]
                if found is None:
                    continue
                for tracker in self.trackers.values():
                    if found[0] in tracker.instances:
                        self._dead_letters_applied.add(entry.id)  # its instance is known: applied for good
                    changed += tracker.on_dead_letter(*found, now, judge=False)
        return changed

    # -- committing ------------------------------------------------------

    async def _save(self) -> None:
        async with self._commit_lock:
            dirty = [instance for tracker in self.trackers.values() for instance in tracker.take_dirty()]
            if dirty:
                try:
                    await self.store.save(dirty)
                except BaseException:
                    for instance in dirty:
                        self.trackers[instance.flow].mark_dirty(instance)
                    raise
                self.stats.commits += 1
            for tracker in self.trackers.values():  # stored now: finished ones, and any over the cap, may leave
                tracker.retire([i for i in dirty if i.flow == tracker.flow.name], self.config.max_open_instances)

    async def _publish_notices(self) -> None:
        async with self._commit_lock:
            owed: dict[str, list[Record]] = {}
            sent: list[tuple[FlowTracker, Instance, str]] = []
            envelopes: list[Envelope] = []
            now = self.clock.now()
            for tracker in self.trackers.values():
                for instance, key in tracker.pending_notices():
                    event = tracker.notice(instance, key, now)
                    envelopes.append(self._envelope(tracker.flow, instance.correlation_id, key, event))
                    sent.append((tracker, instance, key))
            if self.app.security is not None and envelopes:
                # Derived ids are keyed like handler outputs (a forged notice cannot predict them); still
                # deterministic, so a notice published again after a crash keeps its id (until a key rotation).
                envelopes = await self.app.security.seal(envelopes, derived=True)
            for envelope in envelopes:
                owed.setdefault(_TOPICS[envelope.type], []).append(
                    Record(codec.encode(envelope), envelope.partitionkey)
                )
            for topic, records in owed.items():
                await self.broker.publish(topic, records)
            for tracker, instance, key in sent:
                tracker.mark_sent(instance, key)
            self.stats.notices_published += len(sent)

    async def commit(self) -> None:
        """Commit changed state, publish owed notices, and commit their being sent."""
        await self._save()
        await self._publish_notices()
        await self._save()

    def _envelope(self, flow: Flow, correlation_id: str, key: str, event: Event) -> Envelope:
        return Envelope(
            id=derived_id(correlation_id, f"{flow.group}:{key}", 0),
            source=self.source,
            type=event.event_type(),
            data=event.model_dump(mode="json"),
            time=now_rfc3339(),
            subject=flow.name,
            correlationid=correlation_id,
            partitionkey=correlation_id,
            schemaversion=1,
        )

    # -- reading the state -----------------------------------------------

    def figures(self) -> dict[str, FlowFigures]:
        """Return each flow's figures at the clock's current time.

        They count every instance held and every finished one (as figures),
        not open instances waiting in the store over ``max_open_instances``:
        ``choreograph flows --state`` reads the store for those.
        """
        now = self.clock.now()
        return {name: tracker.figures(now) for name, tracker in self.trackers.items()}

    def instance(self, flow: str, correlation_id: str) -> Instance | None:
        """Return one instance held in memory, or None (see :meth:`lookup` for one that left memory)."""
        tracker = self.trackers.get(flow)
        return tracker.instances.get(correlation_id) if tracker else None

    async def lookup(self, flow: str, correlation_id: str) -> Instance | None:
        """Return what is known of one instance, from memory or else from the store, or None."""
        held = self.instance(flow, correlation_id)
        if held is not None:
            return held
        found = await self.store.fetch(flow, [correlation_id])
        return found[0] if found else None
