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
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from choreograph.core import codec
from choreograph.core.broker import Broker, DeadLetterStore, Position, Record, Settlement, Subscription
from choreograph.core.clock import Clock
from choreograph.core.envelope import Envelope, now_rfc3339
from choreograph.core.errors import BrokerError, ConfigurationError, DecodeError
from choreograph.core.event import Event
from choreograph.core.ids import derived_id
from choreograph.observe.flows.events import OBSERVER_SOURCE, FlowCompensationMissing, FlowCompleted, FlowStuck
from choreograph.observe.flows.figures import FlowFigures
from choreograph.observe.flows.flow import Flow, check_flows
from choreograph.observe.flows.instance import Instance
from choreograph.observe.flows.store import FlowStore, MemoryFlowStore, SqliteFlowStore
from choreograph.observe.flows.tracker import FlowTracker
from choreograph.runtime.app import App

logger = logging.getLogger("choreograph.observer")

_TOPICS = {cls.event_type(): cls.topic() for cls in (FlowStuck, FlowCompleted, FlowCompensationMissing)}


@dataclass(frozen=True, slots=True)
class ObserverConfig:
    """Tuning of the observer loops (durations in seconds)."""

    batch_size: int = 1000
    fetch_timeout: float = 0.25
    check_interval: float = 0.5
    """How often deadlines and compensation timeouts are evaluated."""
    dead_letter_interval: float = 1.0
    """How often dead letters are scanned for failed compensations (when a flow declares any)."""
    dead_letter_limit: int = 10_000
    resubscribe_delay: float = 0.5
    start: Position = field(default_factory=Position.earliest)
    """Where a new observer group starts reading (default: the oldest retained record)."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigurationError(f"ObserverConfig.batch_size must be >= 1, got {self.batch_size}")
        for name in ("fetch_timeout", "check_interval", "dead_letter_interval", "resubscribe_delay"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"ObserverConfig.{name} must be > 0 seconds")


def default_store(app: App) -> FlowStore:
    """Return a SQLite store in the log's file for a ``sqlite://`` app, else an in-memory store."""
    url = app.broker_url
    if url.startswith("sqlite://"):
        return SqliteFlowStore.from_url(url)
    logger.warning("observer state is kept in memory for %s; it will not survive a restart", url)
    return MemoryFlowStore()


@dataclass(slots=True)
class ObserverStats:
    """Counters of this observer process (monotonic)."""

    events: int = 0
    """Deliveries read (all topics, all flows)."""
    applied: int = 0
    duplicates: int = 0
    undecodable: int = 0
    notices_published: int = 0
    commits: int = 0


class Observer:
    """Watches ``flows`` on ``app``'s broker; see the module docstring for guarantees.

    ``store`` keeps instance state across restarts (default: :func:`default_store`);
    ``clock`` judges deadlines (default: the app's clock).
    """

    def __init__(
        self,
        app: App,
        flows: Sequence[Flow],
        *,
        store: FlowStore | None = None,
        clock: Clock | None = None,
        config: ObserverConfig | None = None,
    ) -> None:
        check_flows(flows)
        self.app = app
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
        self._stopping.clear()
        self.failure = None
        for flow in self.flows:
            self.trackers[flow.name] = FlowTracker(flow, await self.store.load(flow.name))
        await self.commit()
        for flow in self.flows:
            for topic in flow.topics:
                self._spawn(self._follow(flow, topic), f"{flow.group}:{topic}")
        self._spawn(self._tick(), "observer:tick")

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
                await self._consume(flow, subscription)
            except BrokerError as exc:
                logger.warning("observer %s on %s: broker error, resubscribing: %s", flow.name, topic, exc)
                await self._pause()
            finally:
                with contextlib.suppress(BrokerError):
                    await subscription.close()

    async def _consume(self, flow: Flow, subscription: Subscription) -> None:
        tracker = self.trackers[flow.name]
        config = self.config
        stats = self.stats
        while not self._stopping.is_set():
            batch = await subscription.fetch(config.batch_size, config.fetch_timeout)
            if not batch:
                continue
            now = self.clock.now()
            applied, duplicates = tracker.applied, tracker.duplicates
            for delivery in batch:
                try:
                    envelope = codec.decode(delivery.value)
                except DecodeError:
                    stats.undecodable += 1
                    continue
                tracker.apply(envelope, now=now, log_time=delivery.timestamp or None)
            stats.events += len(batch)
            stats.applied += tracker.applied - applied
            stats.duplicates += tracker.duplicates - duplicates
            await self._save()
            await subscription.settle(Settlement(acks=list(batch)))

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
            except BrokerError as exc:
                logger.warning("observer check failed, will retry: %s", exc)

    # -- evaluation ------------------------------------------------------

    async def check(self) -> None:
        """Evaluate deadlines and compensation timeouts now, commit, and publish what is owed.

        Called periodically by the running observer; call it directly after
        moving a fake clock. Idempotent: a notice is published once per instance.
        """
        now = self.clock.now()
        for tracker in self.trackers.values():
            tracker.check(now)
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
        for entry in entries:
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
            found = self._dead_letters[entry.id]
            if found is None:
                continue
            for tracker in self.trackers.values():
                changed += tracker.on_dead_letter(*found, now)
        return changed

    # -- committing ------------------------------------------------------

    async def _save(self) -> None:
        async with self._commit_lock:
            dirty = [instance for tracker in self.trackers.values() for instance in tracker.take_dirty()]
            if not dirty:
                return
            try:
                await self.store.save(dirty)
            except BaseException:
                for instance in dirty:
                    self.trackers[instance.flow].mark_dirty(instance)
                raise
            self.stats.commits += 1

    async def _publish_notices(self) -> None:
        async with self._commit_lock:
            owed: dict[str, list[Record]] = {}
            sent: list[tuple[FlowTracker, Instance, str]] = []
            now = self.clock.now()
            for tracker in self.trackers.values():
                for instance, key in tracker.pending_notices():
                    event = tracker.notice(instance, key, now)
                    envelope = self._envelope(tracker.flow, instance.correlation_id, key, event)
                    owed.setdefault(_TOPICS[envelope.type], []).append(
                        Record(codec.encode(envelope), envelope.partitionkey)
                    )
                    sent.append((tracker, instance, key))
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
            source=OBSERVER_SOURCE,
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
        """Return each flow's figures at the clock's current time."""
        now = self.clock.now()
        return {name: tracker.figures(now) for name, tracker in self.trackers.items()}

    def instance(self, flow: str, correlation_id: str) -> Instance | None:
        """Return what is known of one instance, or None."""
        tracker = self.trackers.get(flow)
        return tracker.instances.get(correlation_id) if tracker else None
