"""Service level objectives: declare them on the App, measure them from the log.

Three kinds of SLI, each a ratio of good events to valid events::

    app.declare(
        SLO.success_rate("handling", target=0.999),                       # all groups
        SLO.latency("order-completed-fast", event_types=["shop.order.completed"], threshold=5.0, target=0.99),
        SLO.completion("orders-finish", start="shop.order.placed",
                       ends=["shop.order.completed", "shop.order.cancelled"], within=300.0, target=0.995),
    )

- **success rate**: deliveries handled without ending in the dead letter, per
  consumer group (``groups``; all groups when empty).
- **latency**: share of ``event_types`` emitted within ``threshold`` seconds of
  the start of their correlation (the UUIDv7 timestamp of the correlation id).
  "p99 under 5 s" is ``threshold=5.0, target=0.99``.
- **completion**: share of correlations started by a ``start`` event that
  reach one of the ``ends`` events within ``within`` seconds.

:func:`measure` computes them from what the broker keeps — the log, committed
offsets and dead letters — because settled outcomes themselves are not
stored: the success rate over a window is ``1 - dead letters / records
consumed`` for the groups, where records consumed are the records appended in
the window below the group's committed offset and dead letters are counted by
their last failure time. The Prometheus rules (:mod:`choreograph.observe.alerts`)
compute the same SLIs from the metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from choreograph.core import codec
from choreograph.core.broker import Broker, DeadLetterStore, Delivery, LagReporter, LogReader, Position, TopicAdmin
from choreograph.core.errors import ConfigurationError, DecodeError
from choreograph.core.ids import id_time_ms
from choreograph.observe.paging import read_pages

MINUTE: Final = 60.0
HOUR: Final = 3600.0
DAY: Final = 86400.0

SUCCESS_RATE: Final = "success_rate"
LATENCY: Final = "latency"
COMPLETION: Final = "completion"
KINDS: Final = (SUCCESS_RATE, LATENCY, COMPLETION)

BURN_WINDOWS: Final = (5 * MINUTE, 30 * MINUTE, HOUR, 6 * HOUR, 3 * DAY)
"""The windows multi-window burn-rate alerts look at (Google SRE workbook, ch. 5)."""

_READ_PAGE: Final = 5000


@dataclass(frozen=True, slots=True)
class SLO:
    """One objective: an SLI kind, its scope, a target ratio and a compliance window (seconds).

    Build with :meth:`success_rate`, :meth:`latency` or :meth:`completion`;
    declare with ``app.declare(slo)``. Immutable; invalid values raise
    ConfigurationError.
    """

    name: str
    kind: str
    target: float
    window: float = 28 * DAY
    groups: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()
    threshold: float | None = None
    start: str | None = None
    ends: tuple[str, ...] = ()
    within: float | None = None
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ConfigurationError(f"SLO name {self.name!r} must be letters, digits, '-', '_' or '.'")
        if self.kind not in KINDS:
            raise ConfigurationError(f"SLO {self.name}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not 0.0 < self.target < 1.0:
            raise ConfigurationError(f"SLO {self.name}: target is a ratio in (0, 1), e.g. 0.999; got {self.target}")
        if self.window < HOUR:
            raise ConfigurationError(f"SLO {self.name}: window is seconds >= 3600 (e.g. 28 * DAY); got {self.window}")
        if self.kind == LATENCY and (not self.event_types or self.threshold is None or self.threshold <= 0):
            raise ConfigurationError(f"SLO {self.name}: a latency SLO needs event_types and a threshold > 0 seconds")
        if self.kind == COMPLETION and (not self.start or not self.ends or self.within is None or self.within <= 0):
            raise ConfigurationError(f"SLO {self.name}: a completion SLO needs start, ends and within > 0 seconds")

    @classmethod
    def success_rate(
        cls,
        name: str,
        *,
        target: float,
        groups: Sequence[str] = (),
        window: float = 28 * DAY,
        description: str = "",
    ) -> SLO:
        """Share of deliveries to ``groups`` (all when empty) not dead-lettered."""
        return cls(name, SUCCESS_RATE, target, window, groups=tuple(groups), description=description)

    @classmethod
    def latency(
        cls,
        name: str,
        *,
        event_types: Sequence[str],
        threshold: float,
        target: float,
        window: float = 28 * DAY,
        description: str = "",
    ) -> SLO:
        """Share of ``event_types`` emitted within ``threshold`` seconds of their correlation's start."""
        return cls(
            name,
            LATENCY,
            target,
            window,
            event_types=tuple(event_types),
            threshold=threshold,
            description=description,
        )

    @classmethod
    def completion(
        cls,
        name: str,
        *,
        start: str,
        ends: Sequence[str],
        within: float,
        target: float,
        window: float = 28 * DAY,
        description: str = "",
    ) -> SLO:
        """Share of correlations started by ``start`` that reach one of ``ends`` within ``within`` seconds."""
        return cls(
            name, COMPLETION, target, window, start=start, ends=tuple(ends), within=within, description=description
        )

    @property
    def error_budget(self) -> float:
        """The allowed ratio of bad events, ``1 - target``."""
        return 1.0 - self.target


def declared_slos(declarations: Iterable[object]) -> list[SLO]:
    """Return the SLOs among an App's ``declarations``; raise ConfigurationError on duplicate names."""
    slos = [item for item in declarations if isinstance(item, SLO)]
    names = [slo.name for slo in slos]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigurationError(f"SLO name(s) declared twice: {', '.join(duplicates)}")
    return slos


def format_window(seconds: float) -> str:
    """Format a window as Prometheus does (``5m``, ``6h``, ``3d``, ``28d``)."""
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


# -- measuring from the broker ------------------------------------------------


@dataclass(frozen=True, slots=True)
class WindowSLI:
    """The SLI of one SLO over one window: counts, ratio and burn rate."""

    window: float
    valid: int
    bad: int

    @property
    def ratio(self) -> float | None:
        """Good / valid, or None when nothing was valid in the window."""
        return None if self.valid == 0 else (self.valid - self.bad) / self.valid

    def burn_rate(self, slo: SLO) -> float | None:
        """How fast the error budget burns: bad ratio / allowed bad ratio (1.0 = exactly on budget)."""
        return None if self.valid == 0 else (self.bad / self.valid) / slo.error_budget


@dataclass(frozen=True, slots=True)
class SLOReport:
    """An SLO measured over its compliance window and the burn-rate windows."""

    slo: SLO
    compliance: WindowSLI
    windows: tuple[WindowSLI, ...]
    basis: str
    """What the SLI was computed from, in words."""

    @property
    def budget_remaining(self) -> float | None:
        """Share of the window's error budget left (1.0 untouched, < 0 overspent); None without data."""
        burn = self.compliance.burn_rate(self.slo)
        return None if burn is None else 1.0 - burn


@dataclass(slots=True)
class _Record:
    timestamp: float
    partition: int
    offset: int
    event_type: str | None
    correlation_id: str | None


async def _read_topic(reader: LogReader, topic: str, since: float) -> list[_Record]:
    """Read every record of ``topic`` appended at or after ``since``, page by page.

    Pages come in (partition, offset) order, so after a full page every
    partition before the last one seen is complete; later partitions are read
    from their start and filtered by time.
    """
    out: list[_Record] = []
    async for batch in read_pages(reader, topic, Position.at_time(since), page=_READ_PAGE, missing_ok=False):
        out.extend(_decode(delivery) for delivery in batch if delivery.timestamp >= since)
    return out


def _decode(delivery: Delivery) -> _Record:
    try:
        envelope = codec.decode(delivery.value)
    except DecodeError:
        return _Record(delivery.timestamp, delivery.partition, delivery.offset, None, None)
    return _Record(
        delivery.timestamp, delivery.partition, delivery.offset, envelope.type, envelope.correlationid or envelope.id
    )


class LogSource:
    """Reads what the SLIs need from a broker, caching each topic for one measurement.

    Needs a broker with TopicAdmin and LogReader; success rates also need
    LagReporter and DeadLetterStore. Raises ConfigurationError when a power is missing.
    """

    def __init__(self, broker: Broker, *, now: float | None = None, horizon: float = 28 * DAY) -> None:
        if not isinstance(broker, TopicAdmin) or not isinstance(broker, LogReader):
            raise ConfigurationError(f"this broker ({type(broker).__name__}) cannot list and read topics")
        self._broker = broker
        self._admin: TopicAdmin = broker
        self._reader: LogReader = broker
        self.now = time.time() if now is None else now
        self.horizon = horizon
        self._records: dict[str, list[_Record]] = {}
        self._partitions: dict[str, int] | None = None

    async def topics(self) -> dict[str, int]:
        """Topic name -> partitions."""
        if self._partitions is None:
            self._partitions = {info.name: info.partitions for info in await self._admin.topics()}
        return self._partitions

    async def records(self, topic: str) -> list[_Record]:
        """Records of ``topic`` within the horizon (empty if the topic does not exist)."""
        if topic not in self._records:
            known = topic in await self.topics()
            self._records[topic] = await _read_topic(self._reader, topic, self.now - self.horizon) if known else []
        return self._records[topic]

    async def records_of_types(self, event_types: Iterable[str]) -> list[_Record]:
        """Records whose envelope type is one of ``event_types``, from every topic."""
        wanted = set(event_types)
        out: list[_Record] = []
        for topic in await self.topics():
            out.extend(r for r in await self.records(topic) if r.event_type in wanted)
        return out

    async def committed(self) -> dict[tuple[str, str], dict[int, int]]:
        """(group, topic) -> partition -> committed offset."""
        if not isinstance(self._broker, LagReporter):
            raise ConfigurationError(f"this broker ({type(self._broker).__name__}) cannot report consumer offsets")
        out: dict[tuple[str, str], dict[int, int]] = {}
        for row in await self._broker.lag():
            out.setdefault((row.group, row.topic), {})[row.partition] = row.committed
        return out

    async def dead_letter_times(self) -> list[tuple[str, float]]:
        """(group, last failure time) of every dead letter, whatever its status, within the horizon."""
        if not isinstance(self._broker, DeadLetterStore):
            raise ConfigurationError(f"this broker ({type(self._broker).__name__}) keeps no dead letters")
        letters = await self._broker.dead_letters(status=None, limit=10_000_000)
        since = self.now - self.horizon
        return [(d.group, d.last_failure) for d in letters if d.last_failure >= since]


async def measure(slo: SLO, source: LogSource, windows: Sequence[float] = BURN_WINDOWS) -> SLOReport:
    """Compute ``slo``'s SLI over its window and each burn-rate window from the broker's data."""
    spans = [slo.window, *windows]
    if slo.kind == SUCCESS_RATE:
        counts, basis = await _success_counts(slo, source, spans)
    elif slo.kind == LATENCY:
        counts, basis = await _latency_counts(slo, source, spans)
    else:
        counts, basis = await _completion_counts(slo, source, spans)
    return SLOReport(slo, counts[0], tuple(counts[1:]), basis)


async def _success_counts(slo: SLO, source: LogSource, spans: Sequence[float]) -> tuple[list[WindowSLI], str]:
    committed = await source.committed()
    groups = set(slo.groups) or {group for group, _ in committed}
    consumed: list[float] = []
    for (group, topic), offsets in committed.items():
        if group not in groups:
            continue
        for record in await source.records(topic):
            if record.offset < offsets.get(record.partition, 0):
                consumed.append(record.timestamp)
    failed = [when for group, when in await source.dead_letter_times() if group in groups]
    out = []
    for span in spans:
        since = source.now - span
        valid = sum(1 for t in consumed if t >= since)
        bad = sum(1 for t in failed if t >= since)
        out.append(WindowSLI(span, max(valid, bad), bad))
    basis = "records below the groups' committed offsets (by append time) vs. dead letters (by last failure time)"
    return out, basis


async def _latency_counts(slo: SLO, source: LogSource, spans: Sequence[float]) -> tuple[list[WindowSLI], str]:
    threshold = slo.threshold or math.inf
    samples: list[tuple[float, bool]] = []
    for record in await source.records_of_types(slo.event_types):
        started_ms = id_time_ms(record.correlation_id or "")
        if started_ms:
            samples.append((record.timestamp, record.timestamp - started_ms / 1000.0 > threshold))
    out = []
    for span in spans:
        since = source.now - span
        chosen = [slow for t, slow in samples if t >= since]
        out.append(WindowSLI(span, len(chosen), sum(chosen)))
    return out, "append time of each event minus the UUIDv7 time of its correlation id"


async def _completion_counts(slo: SLO, source: LogSource, spans: Sequence[float]) -> tuple[list[WindowSLI], str]:
    within = slo.within or 0.0
    ended: dict[str, float] = {}
    for record in await source.records_of_types(slo.ends):
        if record.correlation_id:
            ended[record.correlation_id] = min(ended.get(record.correlation_id, math.inf), record.timestamp)
    # One process per correlation: a start event sent twice (a producer retry) counts once, from its first copy.
    started: dict[str, float] = {}
    for record in await source.records_of_types([slo.start or ""]):
        if record.correlation_id:
            started[record.correlation_id] = min(started.get(record.correlation_id, math.inf), record.timestamp)
    out = []
    for span in spans:
        since, until = source.now - span, source.now - within
        chosen = [(cid, at) for cid, at in started.items() if since <= at <= until]
        bad = sum(1 for cid, at in chosen if ended.get(cid, math.inf) - at > within)
        out.append(WindowSLI(span, len(chosen), bad))
    return out, f"start events older than {within:g}s vs. end events with the same correlation id"
