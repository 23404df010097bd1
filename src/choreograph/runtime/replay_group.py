"""Replay a bounded range of a topic through one handler of an App, as a new consumer group.

:func:`replay_handler` starts consumer group ``group`` on the handler's topic
at the range's first offsets (a reset of a group that never read it), then
runs the handler's own pipeline — middleware, inbox, retries, dead letters,
outputs — against that group until it has settled every record of the range,
and stops. Records past the range's end are held back from the handler (never
handed to it, never acknowledged), so the group stops at the end bound.

The handler runs with its own name: the ids of the events it emits are derived
from the incoming id and the handler's group, as in the live run, so a
downstream inbox that saw an output of the live run drops the replayed one.
The new group has an inbox of its own, so every event of the range is
handled once more.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from choreograph.core.broker import Broker, Capabilities, Delivery, Position, Record, Settlement, Subscription
from choreograph.core.errors import ConfigurationError
from choreograph.core.group_admin import GroupAdmin
from choreograph.runtime.app import App
from choreograph.runtime.replay_range import Bounds, record_offsets, records_before

_EARLIEST = Position.earliest()
FOLLOW_INTERVAL = 0.2
"""Seconds between two reads of the replaying group's positions."""


class BoundedSubscription:
    """A subscription that hands out only records before each partition's end (the rest stay held, unsettled)."""

    def __init__(self, inner: Subscription, end: Mapping[int, int]) -> None:
        self._inner = inner
        self._end = end

    async def fetch(self, max_records: int, timeout: float) -> Sequence[Delivery]:
        """Fetch from the group and drop what lies past the end (held by this member until it closes)."""
        batch = await self._inner.fetch(max_records, timeout)
        kept = [d for d in batch if d.offset < self._end.get(d.partition, 0)]
        if batch and not kept:
            await asyncio.sleep(min(timeout, 0.05))  # only records past the end: do not spin on them
        return kept

    async def settle(self, settlement: Settlement) -> None:
        """Settle through the group."""
        await self._inner.settle(settlement)

    async def seen(self, keys: Sequence[str]) -> set[str]:
        """The group's inbox."""
        return await self._inner.seen(keys)

    async def close(self) -> None:
        """Leave the group; held records go back to it."""
        await self._inner.close()


class BoundedBroker:
    """``inner`` with subscriptions of ``(topic, handler group)`` redirected to ``group`` and bounded by ``end``.

    Every other call and capability passes through to ``inner``.
    """

    def __init__(self, inner: Broker, topic: str, handler_group: str, group: str, end: Mapping[int, int]) -> None:
        self._inner = inner
        self._route = (topic, handler_group)
        self._group = group
        self._end = dict(end)
        self.capabilities: Capabilities = inner.capabilities

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def publish(self, topic: str, records: Sequence[Record]) -> None:
        """Publish through ``inner``."""
        await self._inner.publish(topic, records)

    async def subscribe(self, topic: str, group: str, *, start: Position = _EARLIEST) -> Subscription:
        """Join the replay group instead of the handler's own (bounded); any other group as asked."""
        if (topic, group) != self._route:
            return await self._inner.subscribe(topic, group, start=start)
        inner = await self._inner.subscribe(topic, self._group, start=start)
        return BoundedSubscription(inner, self._end)

    async def ping(self) -> None:
        """Ping ``inner``."""
        await self._inner.ping()

    async def close(self) -> None:
        """Close ``inner``."""
        await self._inner.close()


async def replay_handler(
    app: App,
    broker: Broker,
    handler: str,
    group: str,
    bounds: Bounds,
    *,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = 3600.0,
) -> int:
    """Replay ``bounds`` of the topic of ``app``'s ``handler`` (``service.name``) as group ``group``.

    ``broker`` is the App's broker, opened by the caller; the App must not
    have used one yet (it is configured with a bounded view of ``broker``).
    Returns the records the group settled. Raises ConfigurationError for an
    unknown handler, a group that has positions already, or a broker without
    GroupAdmin; TimeoutError after ``timeout`` seconds.
    """
    spec = next((s for s in app.handlers if s.group == handler), None)
    if spec is None:
        known = ", ".join(s.group for s in app.handlers) or "none"
        raise ConfigurationError(f"no handler {handler!r} in this app; it has: {known}")
    inner = broker
    if not isinstance(inner, GroupAdmin):
        raise ConfigurationError(f"this broker ({type(inner).__name__}) cannot start a group at a position")
    if await inner.group_positions(spec.topic, group):
        raise ConfigurationError(f"group {group!r} has positions on {spec.topic!r} already; name a new group")
    offsets = await record_offsets(inner, spec.topic, bounds)
    total = sum(map(len, offsets.values()))
    await inner.reset_group(spec.topic, group, Position.at_offsets(dict(bounds.first)))
    app.configure_broker(BoundedBroker(inner, spec.topic, spec.group, group, bounds.end))
    consumer = app.pipeline_for(spec)
    running = asyncio.create_task(consumer.run(), name=f"replay:{group}")
    try:
        async with asyncio.timeout(timeout):
            while True:
                positions = await inner.group_positions(spec.topic, group)
                done = records_before(offsets, positions)
                if progress is not None:
                    progress(done, total)
                if done >= total or running.done():
                    break
                await asyncio.sleep(FOLLOW_INTERVAL)  # polling the committed positions
    finally:
        consumer.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(running, 30.0)
    running.result()  # a consumer that crashed raises here
    return done
