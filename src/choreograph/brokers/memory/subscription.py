"""A member of a consumer group on the in-memory broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from choreograph.brokers.memory._state import _MIN_WAIT, _Group
from choreograph.core.broker import Delivery, Settlement
from choreograph.core.errors import BrokerClosed, ConfigurationError

if TYPE_CHECKING:
    from choreograph.brokers.memory.broker import MemoryBroker


class MemorySubscription:
    """One member of a consumer group on a :class:`MemoryBroker` topic."""

    def __init__(self, broker: MemoryBroker, state: _Group) -> None:
        self._broker = broker
        self._state = state
        self._held: set[tuple[int, int]] = set()
        self._turn = 0
        self._closed = False

    @property
    def group(self) -> str:
        """The consumer group this member belongs to."""
        return self._state.name

    async def fetch(self, max_records: int, timeout: float) -> list[Delivery]:
        """Wait up to ``timeout`` seconds for up to ``max_records`` deliveries of this member's partitions.

        Wakes as soon as a record is published, a retry falls due, a member
        leaves, or the subscription is closed (then returns what it has: nothing);
        returns what it has, even nothing, when :meth:`MemoryBroker.wake` is called.
        """
        if self._closed:
            raise BrokerClosed(f"this subscription to {self._state.topic.name!r} is closed")
        if max_records < 1:
            raise ConfigurationError(f"max_records must be >= 1, got {max_records}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        wakes = self._broker._wakes
        while not self._closed:
            changed = self._state.topic.changed
            batch = self._broker._take(self, max_records)
            if batch or self._broker._wakes != wakes:
                return batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            due = self._broker._next_due(self)
            if due is not None:
                remaining = min(remaining, max(_MIN_WAIT, due - self._broker.clock.now()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return []

    async def settle(self, settlement: Settlement) -> None:
        """Apply ``settlement`` all at once, or raise BrokerError and apply none of it."""
        if self._closed:
            raise BrokerClosed(f"this subscription to {self._state.topic.name!r} is closed")
        self._broker._settle(self, settlement)

    async def seen(self, keys: Sequence[str]) -> set[str]:
        """Return which ``keys`` this group's inbox holds."""
        inbox = self._broker._inbox.get(self._state.name, set())
        return {key for key in keys if key in inbox}

    async def close(self) -> None:
        """Leave the group; unsettled deliveries become due to the other members at once. Idempotent."""
        self._leave()

    def _leave(self) -> None:
        if self._closed:
            return
        self._closed = True
        state = self._state
        now = self._broker.clock.now()
        for p, offset in self._held:
            item = state.pending[p].get(offset)
            if item is not None and item.holder is self:
                item.holder = None
                item.due = now
        self._held.clear()
        if self in state.members:
            state.members.remove(self)
        state.topic.notify()
