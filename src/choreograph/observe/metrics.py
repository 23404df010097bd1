"""Prometheus metrics of one App, in a registry of its own, served at ``/metrics``.

:func:`install_metrics` adds a handler middleware, a publisher middleware and
a settle listener to an App and returns its :class:`Metrics`. Counters are
per handling attempt as seen by this process (a batch whose settlement fails
to commit is handled, and counted, again). Consumer lag and dead-letter depth
are read from the broker when ``/metrics`` is scraped, if it implements
:class:`LagReporter` / :class:`DeadLetterCounter`, and so is the log's size
(:class:`~choreograph.core.retention.LogSizeReporter`: counts the backend
keeps, never the records themselves). A scrape counts dead letters
(per topic, group and reason); it never loads their bytes, so its cost does
not grow with the size of what was dead-lettered. A broker that keeps dead
letters but cannot count them (no ``dead_letter_counts``) gets no
``choreograph_dead_letters_open`` series rather than a scrape that loads them all.

=============================================  =========  ===================================
metric                                         type       labels
=============================================  =========  ===================================
choreograph_events_published_total            counter    service, topic, event_type
choreograph_events_handled_total              counter    group, outcome (success, retry,
                                                          dead_letter, duplicate)
choreograph_handler_duration_seconds          histogram  group
choreograph_end_to_end_latency_seconds        histogram  event_type (correlation start to
                                                          the emission of this event)
choreograph_dead_letters_total                counter    group, reason
choreograph_schema_validation_errors_total    counter    group
choreograph_duplicates_detected_total         counter    group
choreograph_events_skipped_total              counter    group, reason (type: another type
                                                          on a shared topic, acknowledged)
choreograph_rate_limit_wait_seconds_total     counter    group (seconds a RateLimit held reads back)
choreograph_consumer_lag_records              gauge      group, topic, partition
choreograph_consumer_lag_seconds              gauge      group, topic, partition (age of the
                                                          oldest record not yet handled)
choreograph_dead_letters_open                 gauge      group, reason
choreograph_dead_letters_parked_total         counter    group (records whose dead letter could not be
                                                          stored, parked: kept, delivered again later)
choreograph_log_records                       gauge      topic (records retained in the log)
choreograph_log_bytes                         gauge      topic (where the backend can tell: NATS
                                                          stream bytes, Redis MEMORY USAGE)
choreograph_log_store_bytes                   gauge      backend (SQLite: the file and its WAL)
choreograph_broker_up                         gauge      (1 if the last scrape reached it)
choreograph_replay_progress_ratio             gauge      replay
choreograph_replay_processed_records          gauge      replay
choreograph_replay_target_records             gauge      replay
choreograph_replay_running                    gauge      replay, group (1 while it runs; the group
                                                          it feeds, "" for a copy)
choreograph_replay_duration_seconds           gauge      replay (seconds since it started)
=============================================  =========  ===================================

Publish latency per topic and the broker's health figures: :mod:`choreograph.observe.broker_health`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import Counter as Tally
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from choreograph.core.broker import DeadLetterCounter, LagReporter, LogReader, ParkReporter, Settlement
from choreograph.core.enums import DeadLetterReason, DeadLetterStatus
from choreograph.core.envelope import Envelope
from choreograph.core.errors import BrokerError
from choreograph.core.ids import id_time_ms
from choreograph.core.retention import LogSize, LogSizeReporter, RetentionReporter
from choreograph.observe.broker_health import BrokerMetrics
from choreograph.observe.http_endpoint import TEXT, answer
from choreograph.observe.lag_age import lag_seconds
from choreograph.observe.slo import LATENCY, declared_slos
from choreograph.runtime.app import App
from choreograph.runtime.context import Context, Outcome
from choreograph.runtime.middleware import Handler, Publisher
from choreograph.runtime.service import HandlerSpec

logger = logging.getLogger("choreograph.metrics")

PUBLISHED: Final = "choreograph_events_published_total"
HANDLED: Final = "choreograph_events_handled_total"
HANDLER_DURATION: Final = "choreograph_handler_duration_seconds"
END_TO_END: Final = "choreograph_end_to_end_latency_seconds"
DEAD_LETTERED: Final = "choreograph_dead_letters_total"
SCHEMA_ERRORS: Final = "choreograph_schema_validation_errors_total"
DUPLICATES: Final = "choreograph_duplicates_detected_total"
SKIPPED: Final = "choreograph_events_skipped_total"
RATE_LIMIT_WAIT: Final = "choreograph_rate_limit_wait_seconds_total"
LAG: Final = "choreograph_consumer_lag_records"
LAG_SECONDS: Final = "choreograph_consumer_lag_seconds"
DEAD_LETTERS_OPEN: Final = "choreograph_dead_letters_open"
DEAD_LETTERS_PARKED: Final = "choreograph_dead_letters_parked_total"
LOG_RECORDS: Final = "choreograph_log_records"
LOG_BYTES: Final = "choreograph_log_bytes"
LOG_STORE_BYTES: Final = "choreograph_log_store_bytes"
BROKER_UP: Final = "choreograph_broker_up"
LOOP_STALLS: Final = "choreograph_event_loop_stalls"
LOOP_BLOCKED: Final = "choreograph_event_loop_blocked_seconds"
CONSUMER_CRASHES: Final = "choreograph_consumer_crashes"
REPLAY_RATIO: Final = "choreograph_replay_progress_ratio"
REPLAY_PROCESSED: Final = "choreograph_replay_processed_records"
REPLAY_TARGET: Final = "choreograph_replay_target_records"
REPLAY_RUNNING: Final = "choreograph_replay_running"
REPLAY_DURATION: Final = "choreograph_replay_duration_seconds"

OUTCOMES: Final = tuple(outcome.value for outcome in Outcome)

DURATION_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_MINUTES: Final = (60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
LATENCY_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, *_MINUTES)

SCRAPE_TIMEOUT: Final = 5.0
"""Seconds a scrape waits for the broker (lag, dead letters) before reporting it down."""


def _counter(name: str) -> str:
    """Counter names are registered without the ``_total`` suffix prometheus-client appends."""
    return name.removesuffix("_total")


class ReplayGauges:
    """The replay series (M9): running, progress and duration per replay name, in ``registry``.

    Set by :class:`Metrics` for a replay run inside an App, and by ``choreograph replay`` in a
    registry of its own (pushed to a Pushgateway with ``--pushgateway``).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.running = Gauge(REPLAY_RUNNING, "1 while a replay feeds the group.", ["replay", "group"], registry=r)
        self._groups: dict[str, set[str]] = {}
        self.ratio = Gauge(REPLAY_RATIO, "Share of a replay done (0 to 1).", ["replay"], registry=r)
        self.processed = Gauge(REPLAY_PROCESSED, "Records a replay has processed.", ["replay"], registry=r)
        self.target = Gauge(REPLAY_TARGET, "Records a replay will process in all.", ["replay"], registry=r)
        self.duration = Gauge(REPLAY_DURATION, "Seconds since a replay started.", ["replay"], registry=r)

    def progress(self, replay: str, processed: int, target: int, seconds: float = 0.0, *, group: str = "") -> None:
        """Report that ``replay`` runs (feeding ``group``) and processed ``processed`` of ``target`` in ``seconds``."""
        self.running.labels(replay, group).set(1)
        self._groups.setdefault(replay, set()).add(group)
        self.processed.labels(replay).set(processed)
        self.target.labels(replay).set(target)
        self.ratio.labels(replay).set(1.0 if target <= 0 else min(1.0, processed / target))
        self.duration.labels(replay).set(seconds)

    def stopped(self, replay: str) -> None:
        """Set ``running`` to 0 for ``replay`` (what a Pushgateway keeps after the last push)."""
        for group in self._groups.get(replay, ()):
            self.running.labels(replay, group).set(0)

    def finished(self, replay: str) -> None:
        """Drop a finished replay's series (``running`` goes with them)."""
        for group in self._groups.pop(replay, set()):
            with contextlib.suppress(KeyError):
                self.running.remove(replay, group)
        for gauge in (self.processed, self.target, self.ratio, self.duration):
            with contextlib.suppress(KeyError):
                gauge.remove(replay)


class Metrics:
    """The Prometheus instruments of one App, and the middleware and listener that feed them.

    Safe to use from one event loop; prometheus-client instruments are thread-safe.
    """

    def __init__(self, app: App, *, registry: CollectorRegistry | None = None) -> None:
        self.app = app
        self.registry = registry or CollectorRegistry()
        r = self.registry
        thresholds = [slo.threshold for slo in declared_slos(app.declarations) if slo.kind == LATENCY and slo.threshold]
        latency_buckets = tuple(sorted({*LATENCY_BUCKETS, *thresholds}))
        self.published = Counter(
            _counter(PUBLISHED), "Events published.", ["service", "topic", "event_type"], registry=r
        )
        self.handled = Counter(
            _counter(HANDLED), "Deliveries handled, by outcome (one per attempt).", ["group", "outcome"], registry=r
        )
        self.duration = Histogram(
            HANDLER_DURATION, "Time one handling attempt took.", ["group"], buckets=DURATION_BUCKETS, registry=r
        )
        self.end_to_end = Histogram(
            END_TO_END,
            "Time from the start of a correlation (its first event) to the emission of this event.",
            ["event_type"],
            buckets=latency_buckets,
            registry=r,
        )
        self.dead_lettered = Counter(
            _counter(DEAD_LETTERED), "Deliveries dead-lettered.", ["group", "reason"], registry=r
        )
        self.schema_errors = Counter(
            _counter(SCHEMA_ERRORS), "Events whose data did not match the handler's model.", ["group"], registry=r
        )
        self.duplicates = Counter(
            _counter(DUPLICATES), "Deliveries dropped by the inbox as already processed.", ["group"], registry=r
        )
        self.skipped_events = Counter(
            _counter(SKIPPED),
            "Deliveries acknowledged without handling (not the handler's type).",
            ["group", "reason"],
            registry=r,
        )
        self.rate_limit_wait = Counter(
            _counter(RATE_LIMIT_WAIT), "Seconds a handler's RateLimit held its reads back.", ["group"], registry=r
        )
        self.lag = Gauge(
            LAG, "Records published but not yet committed by the group.", ["group", "topic", "partition"], registry=r
        )
        self.lag_seconds = Gauge(
            LAG_SECONDS,
            "Seconds the oldest record the group has not handled has waited (0 when caught up).",
            ["group", "topic", "partition"],
            registry=r,
        )
        self.dead_letters_open = Gauge(
            DEAD_LETTERS_OPEN, "Dead letters waiting for an operator (status open).", ["group", "reason"], registry=r
        )
        self.log_records = Gauge(LOG_RECORDS, "Records retained in the log, per topic.", ["topic"], registry=r)
        self.log_bytes = Gauge(
            LOG_BYTES, "Bytes the log holds per topic, where the backend can tell.", ["topic"], registry=r
        )
        self.log_store_bytes = Gauge(
            LOG_STORE_BYTES, "Bytes of the store all topics share (SQLite: file and WAL).", ["backend"], registry=r
        )
        self.broker_up = Gauge(BROKER_UP, "1 if the broker answered the last scrape, else 0.", registry=r)
        self.loop_stalls = Gauge(LOOP_STALLS, "Times a handler blocked the event loop past 1 s (run).", registry=r)
        self.loop_blocked = Gauge(LOOP_BLOCKED, "Seconds the event loop spent blocked in those stalls.", registry=r)
        self.consumer_crashes = Gauge(
            CONSUMER_CRASHES,
            "Consumer restarts after a runtime failure (not a handler's), per group.",
            ["group"],
            registry=r,
        )
        self.dead_letters_parked = Counter(
            _counter(DEAD_LETTERS_PARKED),
            "Records whose dead letter the broker could not store, parked instead (kept, delivered again later).",
            ["group"],
            registry=r,
        )
        self._parked_seen: dict[str, int] = {}
        self.replay = ReplayGauges(r)
        self.broker_metrics = BrokerMetrics(r)
        """Publish latency per topic and the broker's health figures."""
        self._latency_buckets = latency_buckets

    @property
    def latency_buckets(self) -> tuple[float, ...]:
        """Upper bounds of the end-to-end latency histogram (SLO thresholds included)."""
        return self._latency_buckets

    # -- feeding ---------------------------------------------------------------

    def middleware(self, handler: Handler) -> Handler:
        """Count each attempt's outcome and duration, and the events it emitted (a Middleware)."""
        handled, duration, duplicates = self.handled, self.duration, self.duplicates
        published, end_to_end = self.published, self.end_to_end

        async def measured(envelope: Envelope, ctx: Context) -> None:
            started = time.perf_counter()
            await handler(envelope, ctx)
            group = ctx.handler.group
            outcome = ctx.outcome
            handled.labels(group, outcome.value).inc()
            if outcome is Outcome.DUPLICATE:
                duplicates.labels(group).inc()
                return
            duration.labels(group).observe(time.perf_counter() - started)
            if outcome is Outcome.SUCCESS and ctx.outputs:
                now_ms = time.time() * 1000.0
                for topic, out in ctx.outputs:
                    published.labels(ctx.handler.service, topic, out.type).inc()
                    started_ms = id_time_ms(out.correlationid or out.id)
                    if started_ms:
                        end_to_end.labels(out.type).observe(max(0.0, now_ms - started_ms) / 1000.0)

        return measured

    def publisher(self, publish: Publisher) -> Publisher:
        """Count events sent by App.publish once the broker accepted them (a PublisherMiddleware)."""
        published = self.published

        async def counted(topic: str, envelopes: list[Envelope]) -> list[Envelope]:
            sent = await publish(topic, envelopes)
            for envelope in sent:
                published.labels(envelope.source, topic, envelope.type).inc()
            return sent

        return counted

    def settled(self, spec: HandlerSpec, settlement: Settlement, seconds: float) -> None:
        """Count dead letters by reason, schema errors and undecodable messages (a SettleListener)."""
        group = spec.group
        for _, letter in settlement.dead_letters:
            self.dead_lettered.labels(group, letter.reason).inc()
            if letter.reason == DeadLetterReason.SCHEMA:
                self.schema_errors.labels(group).inc()
            elif letter.reason == DeadLetterReason.DECODE:  # never reached the middleware
                self.handled.labels(group, Outcome.DEAD_LETTER.value).inc()

    def skipped(self, spec: HandlerSpec, count: int, reason: str) -> None:
        """Count deliveries a handler acknowledged without handling them (a SkipListener)."""
        self.skipped_events.labels(spec.group, reason).inc(count)

    def throttled(self, spec: HandlerSpec, seconds: float) -> None:
        """Add the seconds a handler's rate limit made it wait (a ThrottleListener)."""
        self.rate_limit_wait.labels(spec.group).inc(seconds)

    # -- replay progress (set by the replay tool) --------------------------------

    def replay_progress(self, replay: str, processed: int, target: int, seconds: float = 0.0) -> None:
        """Report that replay ``replay`` processed ``processed`` of ``target`` records in ``seconds`` so far."""
        self.replay.progress(replay, processed, target, seconds)

    def replay_finished(self, replay: str) -> None:
        """Drop a finished replay's series."""
        self.replay.finished(replay)

    # -- scrape ------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read consumer lag and open dead letters from the broker into their gauges.

        Waits at most SCRAPE_TIMEOUT seconds; on failure the broker is reported
        down and the previous values are kept. Call from the App's event loop.
        """
        monitor = self.app.loop_monitor
        if monitor is not None:
            self.loop_stalls.set(monitor.stalls)
            self.loop_blocked.set(monitor.blocked_seconds)
        for group, stats in self.app.stats().items():
            self.consumer_crashes.labels(group).set(stats.crashes)
        broker = self.app.broker
        await self.broker_metrics.refresh(broker)
        if isinstance(broker, ParkReporter):
            self._count_parked(broker)
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT):
                rows = await broker.lag() if isinstance(broker, LagReporter) else None
                ages = (
                    await lag_seconds(broker, rows, self.app.clock.now())
                    if rows is not None and isinstance(broker, LogReader)
                    else None
                )
                letters = (
                    await broker.dead_letter_counts(status=DeadLetterStatus.OPEN)
                    if isinstance(broker, DeadLetterCounter)
                    else None
                )
                size = await broker.log_size() if isinstance(broker, LogSizeReporter) else None
        except (BrokerError, TimeoutError) as exc:
            logger.warning("metrics scrape could not read the broker: %s", exc)
            self.broker_up.set(0)
            return
        self.broker_up.set(1)
        if rows is not None:
            self.lag.clear()
            for row in rows:
                self.lag.labels(row.group, row.topic, str(row.partition)).set(row.lag)
        if ages is not None:
            self.lag_seconds.clear()
            for (group, topic, partition), seconds in ages.items():
                self.lag_seconds.labels(group, topic, str(partition)).set(seconds)
        if size is not None:
            backend = broker.describe_retention().backend if isinstance(broker, RetentionReporter) else "broker"
            self._set_log_size(size, backend)
        if letters is not None:
            self.dead_letters_open.clear()
            by_group: Tally[tuple[str, str]] = Tally()
            for (_, group, reason), count in letters.items():
                by_group[(group, reason)] += count
            for (group, reason), count in by_group.items():
                self.dead_letters_open.labels(group, reason).set(count)

    def _count_parked(self, broker: ParkReporter) -> None:
        """Add what the broker parked since the last scrape to the counter (the broker counts since it opened)."""
        by_group: Tally[str] = Tally()
        for (_, group), count in broker.parked_counts().items():
            by_group[group] += count
        for group, count in by_group.items():
            new = count - self._parked_seen.get(group, 0)
            if new > 0:
                self.dead_letters_parked.labels(group).inc(new)
                self._parked_seen[group] = count

    def _set_log_size(self, size: LogSize, backend: str) -> None:
        self.log_records.clear()
        for topic, count in size.records.items():
            self.log_records.labels(topic).set(count)
        self.log_bytes.clear()
        for topic, stored in size.bytes.items():
            self.log_bytes.labels(topic).set(stored)
        if size.store_bytes is not None:
            self.log_store_bytes.labels(backend).set(size.store_bytes)

    def render(self) -> bytes:
        """Return the registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)

    async def scrape(self) -> bytes:
        """Refresh the broker gauges, then render."""
        await self.refresh()
        return self.render()

    def family_names(self) -> dict[str, str]:
        """Return metric family name -> type (counter, gauge, histogram) as registered."""
        return {family.name: family.type for family in self.registry.collect()}


def sample_names(families: dict[str, str]) -> set[str]:
    """Return every series name a scrape can contain for these families (``_total``, ``_bucket``...)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}
    names: set[str] = set()
    for name, kind in families.items():
        names.update(f"{name}{suffix}" for suffix in suffixes.get(kind, ("",)))
    return names


_installed: weakref.WeakKeyDictionary[App, Metrics] = weakref.WeakKeyDictionary()


def install_metrics(app: App, *, registry: CollectorRegistry | None = None) -> Metrics:
    """Instrument ``app`` with metrics (once; later calls return the same Metrics).

    Call after declaring SLOs (latency thresholds become histogram buckets) and
    before the app starts.
    """
    existing = _installed.get(app)
    if existing is not None:
        return existing
    metrics = Metrics(app, registry=registry)
    app.use(metrics.middleware)
    app.use_publisher(metrics.publisher)
    app.use_publisher(metrics.broker_metrics.publisher)
    app.add_listener(metrics)
    _installed[app] = metrics
    return metrics


def metrics_for(app: App) -> Metrics | None:
    """Return the Metrics installed on ``app``, if any (for example to report replay progress)."""
    return _installed.get(app)


# -- /metrics over HTTP -----------------------------------------------------------


class MetricsServer:
    """A minimal asyncio HTTP server answering ``GET /metrics`` on the App's event loop."""

    def __init__(self, metrics: Metrics, server: asyncio.Server) -> None:
        self.metrics = metrics
        self._server = server

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful with port 0)."""
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        """Stop accepting scrapes and wait for the server to close. Idempotent."""
        self._server.close()
        await self._server.wait_closed()


async def serve_metrics(app: App, port: int, *, host: str = "127.0.0.1") -> MetricsServer:
    """Serve ``app``'s metrics at ``http://host:port/metrics``; return the running server.

    Listens on loopback only unless ``host`` says otherwise (``"0.0.0.0"``: every
    interface), so a worker does not publish its figures to the network by accident.

    Installs metrics on ``app`` if not done yet, so call it before the app
    starts. Runs on the current event loop; close with ``await server.close()``.
    """
    metrics = install_metrics(app)

    async def route(path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, await metrics.scrape()
        return 404, TEXT, b"try /metrics\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer(reader, writer, route, timeout=SCRAPE_TIMEOUT * 2)

    server = await asyncio.start_server(handle, host, port)
    return MetricsServer(metrics, server)
