"""Wake-ups for waiting fetches when this process's writer commits.

Other processes' commits are noticed by polling ``PRAGMA data_version``
(see :mod:`.subscription`); this covers the common in-process case with no
polling at all.
"""

from __future__ import annotations

import asyncio
import threading


class Notifier:
    """Thread-safe set of waiters, each an asyncio future on its own loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    def arm(self) -> asyncio.Future[None]:
        """Return a future resolved at the next :meth:`notify`. Call from a running loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._waiters.add((loop, future))
        return future

    def disarm(self, future: asyncio.Future[None]) -> None:
        """Stop waiting on ``future`` (it may or may not have fired)."""
        with self._lock:
            self._waiters.discard((asyncio.get_running_loop(), future))
        if not future.done():
            future.cancel()

    def notify(self) -> None:
        """Wake every armed waiter. Safe from any thread."""
        with self._lock:
            waiters, self._waiters = self._waiters, set()
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:
                # that loop is closed; nobody waits on it any more
                continue


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
