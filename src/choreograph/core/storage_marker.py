"""Telling a server broker that lost its data from one that is simply new: a deployment marker.

A server broker (Redis, NATS JetStream) can lose everything under running
clients: restarted without persistence, flushed, its store directory wiped,
its keys evicted. Its clients reconnect and carry on writing into the empty
server, so acknowledged writes land in a log nobody reads from where they
left off, and workers spin on groups that no longer exist.

:class:`StorageMarker` keeps a random *epoch* that the first broker instance
stores on the server when it first creates its structures (set only if
absent: concurrent first starts agree on one). Every instance remembers the
epoch it saw; when it checks again and the marker is gone or different, the
server's data was lost while it ran: :class:`~choreograph.core.errors.StorageLost`,
sticky from then on. An instance that never saw a marker (a first start on an
empty server, or the first start after a loss) creates or adopts it instead.

Checks are bounded: on first use, when a new connection opens (a reconnect),
when an operation finds a structure missing that the instance had created,
and otherwise at most once per ``interval`` seconds (:meth:`StorageMarker.due`),
never once per record.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

from choreograph.core.errors import StorageLost

ReadMarker = Callable[[], Awaitable[str | None]]
"""Read the marker stored on the server: its epoch, or None if absent."""
CreateMarker = Callable[[str], Awaitable[str]]
"""Store the given epoch unless a marker exists; return the epoch stored afterwards (ours or the other one)."""

DEFAULT_INTERVAL = 5.0
"""Seconds between two periodic checks of the marker by one broker instance."""


class StorageMarker:
    """One broker instance's view of the deployment marker on its server.

    ``broker`` names the server for messages (credentials already redacted);
    ``where`` names the marker (a key, a bucket). Not thread-safe: used from
    the broker's event loop (:meth:`observe` may run in a connection callback
    of that loop).
    """

    def __init__(
        self,
        read: ReadMarker,
        create: CreateMarker,
        *,
        broker: str,
        where: str,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._create = create
        self.broker = broker
        self.where = where
        self.interval = interval
        self._clock = clock
        self.epoch: str | None = None
        """The epoch this instance saw on the server; None until the first use."""
        self.lost: StorageLost | None = None
        """Set once the loss is found: every later check raises it again."""
        self._next = 0.0

    def check(self) -> None:
        """Raise StorageLost if a loss was found already. No I/O: cheap enough for every call."""
        if self.lost is not None:
            raise self.lost

    def due(self) -> bool:
        """Whether the periodic check is due (no I/O); :meth:`verify` resets the timer."""
        return self._clock() >= self._next

    async def ensure(self) -> None:
        """Adopt the server's marker, or create it on an empty server, unless this instance saw it already.

        Call before creating structures (a topic, a group). Raises StorageLost if a loss was found.
        """
        self.check()
        if self.epoch is None:
            self.epoch = await self._create(uuid.uuid4().hex)
            self._next = self._clock() + self.interval

    async def verify(self, why: str) -> None:
        """Read the marker now; raise StorageLost (naming ``why`` it was checked) if it is gone or changed.

        An instance that never saw a marker adopts or creates it instead (see :meth:`ensure`).
        """
        self.check()
        if self.epoch is None:
            await self.ensure()
            return
        current = await self._read()
        self._next = self._clock() + self.interval
        self.observe(current, why)

    async def verify_if_due(self, why: str = "periodic check") -> None:
        """:meth:`check`, then :meth:`verify` if the interval since the last check passed."""
        self.check()
        if self.epoch is not None and self._clock() >= self._next:
            await self.verify(why)

    def observe(self, current: str | None, why: str) -> None:
        """Judge a marker value read elsewhere (a new connection's check); raise StorageLost on a mismatch."""
        self.check()
        if self.epoch is None or current == self.epoch:
            return
        state = "is gone" if current is None else f"changed from {self.epoch} to {current}"
        self.lost = StorageLost(
            f"{self.broker} lost its data: the deployment marker {self.where} {state} (found by {why}); the server "
            "was restarted without persistence, flushed, or its storage wiped, so what this process wrote before "
            "is gone. Stopping rather than writing into an empty server: restart the process once the server's "
            "data is sound (or accepted as lost)"
        )
        raise self.lost

    def vanished(self, what: str, why: str) -> StorageLost:
        """Record that ``what`` (a stream, a group this instance created) is missing although the marker holds.

        Keys evicted, streams deleted by hand: the data is gone all the same. Returns the sticky StorageLost.
        """
        if self.lost is None:
            self.lost = StorageLost(
                f"{self.broker} lost {what}, which this process had created or written to (found by {why}); "
                "deleted or evicted under it. Stopping rather than writing into a recreated empty structure: "
                "restart the process once the server's data is sound (or accepted as lost)"
            )
        return self.lost
