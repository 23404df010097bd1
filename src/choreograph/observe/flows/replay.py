"""Compute flow figures by replaying the log, without joining any consumer group.

Used after a run (the shop demo's summary) and by ``choreograph flows``. It
reads every topic the flows mention from the oldest retained record, so it
sees what a live observer would, in a different order — which the tracker
does not mind.
"""

from __future__ import annotations

from collections.abc import Sequence

from choreograph.core import codec
from choreograph.core.broker import Broker, DeadLetterStore, LogReader
from choreograph.core.clock import Clock
from choreograph.core.errors import ConfigurationError, DecodeError
from choreograph.observe.flows.figures import FlowFigures
from choreograph.observe.flows.flow import Flow, check_flows
from choreograph.observe.flows.tracker import FlowTracker
from choreograph.observe.paging import read_pages
from choreograph.runtime.app import App


async def _read_topic(reader: LogReader, topic: str, page: int) -> list[tuple[float, bytes]]:
    return [(d.timestamp, d.value) async for batch in read_pages(reader, topic, page=page) for d in batch]


async def replay(
    broker: Broker, flows: Sequence[Flow], *, now: float, correlation_id: str | None = None, page: int = 5000
) -> dict[str, FlowTracker]:
    """Return a tracker per flow fed with the whole log (and the dead letters, if kept).

    ``correlation_id`` keeps only that instance. Reads only; publishes nothing.
    Raises ConfigurationError if the broker cannot read its log, BrokerError if
    a read of it makes no progress (it never hangs on one).
    """
    check_flows(flows)
    if not isinstance(broker, LogReader):
        raise ConfigurationError(f"this broker ({type(broker).__name__}) cannot read its log; replay needs LogReader")
    trackers = {flow.name: FlowTracker(flow, notify=False) for flow in flows}
    topics = sorted({topic for flow in flows for topic in flow.topics})
    for topic in topics:
        for timestamp, value in await _read_topic(broker, topic, page):
            try:
                envelope = codec.decode(value)
            except DecodeError:
                continue
            if correlation_id is not None and (envelope.correlationid or envelope.id) != correlation_id:
                continue
            for tracker in trackers.values():
                tracker.apply(envelope, now=now, log_time=timestamp or None)
    if isinstance(broker, DeadLetterStore) and any(flow.compensations for flow in flows):
        for entry in await broker.dead_letters(status=None, limit=1_000_000):
            try:
                envelope = codec.decode(entry.value)
            except DecodeError:
                continue
            detail = f"dead letter {entry.id} in {entry.group}: {entry.error_type}: {entry.error_message}"
            for tracker in trackers.values():
                tracker.on_dead_letter(
                    envelope.correlationid or envelope.id, entry.event_type or envelope.type, entry.group, detail, now
                )
    return trackers


async def summarize(
    app: App, flows: Sequence[Flow], broker: Broker | None = None, *, clock: Clock | None = None
) -> dict[str, FlowFigures]:
    """Return each flow's figures computed from the log of ``broker`` (default: the app's).

    ``clock`` (default: the app's) decides which unfinished instances are stuck.
    """
    now = (clock or app.clock).now()
    trackers = await replay(broker or app.broker, flows, now=now)
    return {name: tracker.figures(now) for name, tracker in trackers.items()}
