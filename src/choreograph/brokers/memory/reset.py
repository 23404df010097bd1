"""The in-memory broker's group reset (:class:`~choreograph.core.group_admin.GroupAdmin`).

A mixin of :class:`~choreograph.brokers.memory.MemoryBroker`. A reset runs
between two ``await`` points of the broker's one event loop, so it is atomic
with respect to every fetch and settle: the group's cursors move, its
scheduled retries and unsettled records are dropped (resubmitted dead letters
stay, due now), and every member forgets what it holds — a settle of a
delivery fetched before the reset then fails with BrokerError and applies
nothing. The members' next fetch reads from the new cursors.
"""

from __future__ import annotations

from choreograph.brokers.memory._state import _Group, _Topic
from choreograph.core.broker import Position
from choreograph.core.clock import Clock
from choreograph.core.errors import UnknownTopic
from choreograph.core.group_admin import PartitionReset
from choreograph.core.names import check_group, check_topic


class GroupReset:
    """The ``GroupAdmin`` half of :class:`MemoryBroker`."""

    clock: Clock
    _topics: dict[str, _Topic]
    _groups: dict[tuple[str, str], _Group]

    def _check_open(self) -> None:
        raise NotImplementedError  # provided by MemoryBroker

    def _start(self, log: _Topic, start: Position) -> list[int]:
        raise NotImplementedError  # provided by MemoryBroker

    async def reset_group(self, topic: str, group: str, to: Position) -> list[PartitionReset]:
        """Move ``group`` on ``topic`` to ``to`` at once; see :mod:`choreograph.core.group_admin`."""
        check_topic(topic), check_group(group)
        self._check_open()
        log = self._topics.get(topic)
        if log is None:
            raise UnknownTopic(f"topic {topic!r} does not exist")
        cursors = self._start(log, to)
        state = self._groups.get((topic, group))
        if state is None:
            state = self._groups[(topic, group)] = _Group(log, group, list(cursors), [{} for _ in cursors])
            return [PartitionReset(topic, group, p, None, c) for p, c in enumerate(cursors)]
        out = [PartitionReset(topic, group, p, state.committed(p), c) for p, c in enumerate(cursors)]
        now = self.clock.now()
        for member in state.members:
            member._held.clear()  # fenced: a settle of what it holds is refused
        for p, pending in enumerate(state.pending):
            kept = {o: item for o, item in pending.items() if item.resubmitted}
            for item in kept.values():
                item.holder, item.due = None, now
            state.pending[p] = kept
        state.cursors[:] = cursors
        log.notify()
        return out

    async def group_positions(self, topic: str, group: str) -> dict[int, int]:
        """Return partition -> the first offset ``group`` has not settled (empty if it never read ``topic``)."""
        state = self._groups.get((topic, group))
        return {} if state is None else {p: state.committed(p) for p in range(len(state.cursors))}
