"""How far the observer has read its topics, and so which time it may judge deadlines against.

A deadline is a claim about the absence of an event: "no final event by T".
The observer may only make it for times up to which it has read the log:

- until it has caught up with the end its topics had when it started, it
  judges nothing (a late start or a restart must not report instances whose
  final events it has not read yet). Caught up means: every subscription of
  the flow came back empty at least once, and, where the broker reports lag,
  the group's committed positions reached the ends it reported the first
  time it was asked;
- after that, the judge time of a flow is the earliest, over its topics, of
  the clock's time for a topic whose last fetch came back empty (nothing left
  to read there) and of the newest event time read for a topic still being
  read (it is behind: only what it has read can be judged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from choreograph.core.broker import Broker, LagReporter
from choreograph.observe.flows.flow import Flow


@dataclass(slots=True)
class _Topic:
    emptied: bool = False
    """A fetch came back empty at least once."""
    idle: bool = False
    """The last fetch came back empty."""
    newest: float = -math.inf
    """The newest event time read."""


@dataclass(slots=True)
class ReadProgress:
    """Per flow and topic: how far reading has come. Safe within one event loop."""

    _topics: dict[tuple[str, str], _Topic] = field(default_factory=dict)
    _targets: dict[str, dict[tuple[str, int], int]] = field(default_factory=dict)
    _caught_up: set[str] = field(default_factory=set)

    def fetched(self, flow: str, topic: str, count: int, newest: float) -> None:
        """Record a fetch of ``count`` deliveries whose newest event time is ``newest``."""
        state = self._topics.setdefault((flow, topic), _Topic())
        state.idle = count == 0
        state.emptied = state.emptied or state.idle
        state.newest = max(state.newest, newest)

    def caught_up(self, flow: str) -> bool:
        """True once ``flow`` read up to the ends its topics had at start (see :meth:`catch_up`)."""
        return flow in self._caught_up

    async def catch_up(self, broker: Broker, flow: Flow) -> bool:
        """Return whether ``flow`` has caught up, asking the broker for lag if it reports it.

        Once true, stays true.
        """
        name = flow.name
        if name in self._caught_up:
            return True
        states = [self._topics.get((name, topic)) for topic in flow.topics]
        if not all(state is not None and state.emptied for state in states):
            return False
        if isinstance(broker, LagReporter):
            rows = {(r.topic, r.partition): r for r in await broker.lag(flow.group) if r.topic in flow.topics}
            if {topic for topic, _ in rows} != set(flow.topics):
                return False  # the group is not registered on every topic yet
            targets = self._targets.setdefault(name, {key: row.end_offset for key, row in rows.items()})
            if any(key not in rows or rows[key].committed < end for key, end in targets.items()):
                return False
        self._caught_up.add(name)
        return True

    def judge_time(self, flow: Flow, now: float) -> float | None:
        """The time ``flow``'s deadlines may be judged against, or None before it caught up."""
        if flow.name not in self._caught_up:
            return None
        times = []
        for topic in flow.topics:
            state = self._topics.get((flow.name, topic))
            if state is None:
                return None
            times.append(now if state.idle else min(now, state.newest))
        return min(times, default=now)
