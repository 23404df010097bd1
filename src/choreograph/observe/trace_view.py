"""A trace of one correlation, rebuilt from the log itself (no tracing backend needed).

:func:`collect_trace` scans every topic (``TopicAdmin.topics`` +
``LogReader.read``), keeps the envelopes carrying the correlation id, links
each to its cause (``causationid``) and adds the dead letters of that
correlation (``DeadLetterStore``). :func:`render_trace` draws it as a Rich
waterfall: one row per event, indented under its cause, with the service that
emitted it, when it was appended relative to the start of the correlation,
and a bar from its cause to itself (the hop's handling time). Dead letters
show the group that gave up, the attempts and the error.

Reading starts a little before the correlation's UUIDv7 timestamp, so only
the part of the log written since then is scanned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from choreograph.core import codec
from choreograph.core.broker import Broker, DeadLetter, DeadLetterStore, Delivery, LogReader, Position, TopicAdmin
from choreograph.core.envelope import Envelope
from choreograph.core.errors import ConfigurationError, DecodeError, NotFound
from choreograph.core.ids import id_time_ms
from choreograph.core.printable import printable

CLOCK_SKEW: Final = 300.0
"""Seconds read before the correlation's start, for clocks of different writers that disagree."""
_PAGE: Final = 5000
_DONE: Final = 2**62
_BAR_WIDTH: Final = 30


@dataclass(slots=True)
class TraceStep:
    """One event of the correlation, where it sits in the log, and what it caused."""

    envelope: Envelope
    topic: str
    partition: int
    offset: int
    timestamp: float
    children: list[TraceStep] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


@dataclass(slots=True)
class Trace:
    """Every event and dead letter of one correlation, as a causation forest."""

    correlation_id: str
    roots: list[TraceStep]
    steps: dict[str, TraceStep]
    orphan_dead_letters: list[DeadLetter]
    """Dead letters whose event is not in the log (retention, or undecodable)."""

    @property
    def started(self) -> float:
        """The correlation's start: its id's UUIDv7 time, else its earliest event."""
        ms = id_time_ms(self.correlation_id)
        if ms:
            return ms / 1000.0
        return min((s.timestamp for s in self.steps.values()), default=0.0)

    @property
    def finished(self) -> float:
        """The latest event or dead-letter time."""
        times = [s.timestamp for s in self.steps.values()]
        times += [d.last_failure for s in self.steps.values() for d in s.dead_letters]
        times += [d.last_failure for d in self.orphan_dead_letters]
        return max(times, default=self.started)

    def walk(self) -> list[tuple[int, TraceStep]]:
        """Return (depth, step) in causal order, children sorted by time."""
        out: list[tuple[int, TraceStep]] = []

        def visit(step: TraceStep, depth: int) -> None:
            out.append((depth, step))
            for child in sorted(step.children, key=lambda s: (s.timestamp, s.envelope.id)):
                visit(child, depth + 1)

        for root in sorted(self.roots, key=lambda s: (s.timestamp, s.envelope.id)):
            visit(root, 0)
        return out


async def _scan(reader: LogReader, topic: str, since: float, correlation_id: str) -> list[tuple[Delivery, Envelope]]:
    found: list[tuple[Delivery, Envelope]] = []
    position = Position.at_time(since)
    offsets: dict[int, int] = {}
    while True:
        batch = await reader.read(topic, position, limit=_PAGE)
        for delivery in batch:
            try:
                envelope = codec.decode(delivery.value)
            except DecodeError:
                continue
            if (envelope.correlationid or envelope.id) == correlation_id and delivery.timestamp >= since:
                found.append((delivery, envelope))
        if len(batch) < _PAGE:
            return found
        last = batch[-1]
        for p in range(last.partition):
            offsets[p] = _DONE
        offsets[last.partition] = last.offset + 1
        position = Position.at_offsets(offsets)


def _correlation_of(letter: DeadLetter) -> str | None:
    try:
        envelope = codec.decode(letter.value)
    except DecodeError:
        return None
    return envelope.correlationid or envelope.id


async def collect_trace(broker: Broker, correlation_id: str) -> Trace:
    """Rebuild the trace of ``correlation_id`` from the broker's log and dead letters.

    Needs TopicAdmin and LogReader (DeadLetterStore optional). Raises NotFound
    if no event carries the correlation id. Reads only; never blocks on new data.
    """
    if not isinstance(broker, TopicAdmin) or not isinstance(broker, LogReader):
        raise ConfigurationError(f"this broker ({type(broker).__name__}) cannot list and read topics")
    start_ms = id_time_ms(correlation_id)
    since = start_ms / 1000.0 - CLOCK_SKEW if start_ms else 0.0
    steps: dict[str, TraceStep] = {}
    for info in await broker.topics():
        for delivery, envelope in await _scan(broker, info.name, since, correlation_id):
            steps.setdefault(
                envelope.id,
                TraceStep(envelope, info.name, delivery.partition, delivery.offset, delivery.timestamp),
            )
    orphans: list[DeadLetter] = []
    if isinstance(broker, DeadLetterStore):
        for letter in await broker.dead_letters(status=None, limit=1_000_000):
            if letter.last_failure < since or _correlation_of(letter) != correlation_id:
                continue
            step = steps.get(letter.event_id or "")
            (step.dead_letters if step else orphans).append(letter)
    if not steps and not orphans:
        raise NotFound(f"no event with correlation id {correlation_id!r} in the log")
    roots: list[TraceStep] = []
    for step in steps.values():
        parent = steps.get(step.envelope.causationid or "")
        if parent is None or parent is step:
            roots.append(step)
        else:
            parent.children.append(step)
    return Trace(correlation_id, roots, steps, orphans)


def _bar(start: float, end: float, origin: float, total: float, style: str) -> Text:
    scale = _BAR_WIDTH / total if total > 0 else 0.0
    left = min(_BAR_WIDTH - 1, int((start - origin) * scale))
    width = max(1, int((end - start) * scale))
    width = min(width, _BAR_WIDTH - left)
    return Text(" " * left + "█" * width, style=style)


def _text(value: str, style: str = "") -> Text:
    """Untrusted text (types, sources, names, errors) as plain text: no markup, controls shown as escapes."""
    return Text(printable(value), style=style)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.2f} s"


def render_trace(trace: Trace) -> RenderableType:
    """Return a Rich waterfall of ``trace``: one row per event and per dead letter."""
    origin = trace.started
    total = max(trace.finished - origin, 1e-6)
    table = Table(title=_text(f"Correlation {trace.correlation_id}"), title_justify="left", expand=False)
    for column in ("event", "service", "at", "hop", "waterfall", "details"):
        table.add_column(column, no_wrap=column != "details")
    services: set[str] = set()
    for depth, step in trace.walk():
        env = step.envelope
        services.add(env.source)
        parent = trace.steps.get(env.causationid or "")
        cause_time = parent.timestamp if parent is not None and parent is not step else origin
        hop = max(0.0, step.timestamp - cause_time)
        branch = "  " * depth + ("└─ " if depth else "")
        table.add_row(
            Text(branch) + _text(env.type, "cyan"),
            _text(env.source),
            f"+{_ms(step.timestamp - origin)}",
            _ms(hop),
            _bar(cause_time, step.timestamp, origin, total, "green"),
            _text(f"{step.topic} p{step.partition}@{step.offset} id …{env.id[-12:]}"),
        )
        for letter in step.dead_letters:
            table.add_row(*_dead_letter_row(letter, depth + 1, step.timestamp, origin, total))
    for letter in trace.orphan_dead_letters:
        table.add_row(*_dead_letter_row(letter, 0, origin, origin, total))
    letters = sum(len(s.dead_letters) for s in trace.steps.values()) + len(trace.orphan_dead_letters)
    summary = _text(
        f"{len(trace.steps)} event(s), {len(services)} service(s) ({', '.join(sorted(services))}), "
        f"{letters} dead letter(s), {_ms(trace.finished - origin)} from start to last event"
    )
    return Group(table, summary)


def _dead_letter_row(
    letter: DeadLetter, depth: int, since: float, origin: float, total: float
) -> tuple[RenderableType, ...]:
    branch = "  " * depth + "└─ "
    first = letter.first_failure or since
    retried = f"{letter.attempts} attempt(s)"
    return (
        Text(branch) + _text(f"✗ dead letter ({letter.reason})", "bold red"),
        _text(letter.group),
        f"+{_ms(letter.last_failure - origin)}",
        _ms(max(0.0, letter.last_failure - since)),
        _bar(min(first, letter.last_failure), letter.last_failure, origin, total, "red"),
        _text(f"{retried}, {letter.status}: {letter.error_type}: {letter.error_message}"[:120], "red"),
    )


def trace_rows(trace: Trace) -> list[dict[str, Any]]:
    """Return the trace as JSON-ready rows in drawing order: one per event, one per dead letter.

    An event row has ``kind="event"``, its depth in the causation tree, where
    it sits in the log and its envelope's attributes (not its data); a dead
    letter row has ``kind="dead_letter"`` and the event id it belongs to.
    """
    rows: list[dict[str, Any]] = []

    def letter_row(letter: DeadLetter, depth: int) -> dict[str, Any]:
        return {
            "kind": "dead_letter",
            "depth": depth,
            "correlation_id": trace.correlation_id,
            "id": letter.id,
            "event_id": letter.event_id,
            "event_type": letter.event_type,
            "group": letter.group,
            "reason": letter.reason,
            "status": letter.status,
            "attempts": letter.attempts,
            "error_type": letter.error_type,
            "error_message": letter.error_message,
            "first_failure": letter.first_failure,
            "last_failure": letter.last_failure,
        }

    for depth, step in trace.walk():
        env = step.envelope
        rows.append(
            {
                "kind": "event",
                "depth": depth,
                "correlation_id": trace.correlation_id,
                "id": env.id,
                "type": env.type,
                "source": env.source,
                "causation_id": env.causationid,
                "topic": step.topic,
                "partition": step.partition,
                "offset": step.offset,
                "timestamp": step.timestamp,
            }
        )
        rows.extend(letter_row(letter, depth + 1) for letter in step.dead_letters)
    rows.extend(letter_row(letter, 0) for letter in trace.orphan_dead_letters)
    return rows


def steps_in_order(trace: Trace) -> Sequence[TraceStep]:
    """Return the steps in the order :func:`render_trace` draws them."""
    return [step for _, step in trace.walk()]
