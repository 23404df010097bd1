"""Members served by one background thread, which starts with the first member and ends after the last.

The lease keepalives of the server backends share this shape: renewing
leases from a thread keeps them alive while a handler blocks the event loop.
Thread-safe; the thread itself is the subclass's :meth:`MemberThread.run`.
"""

from __future__ import annotations

import threading
import time
from typing import Generic, TypeVar

M = TypeVar("M")

_WARN_INTERVAL = 60.0
"""Seconds between two warnings about failed rounds: the member's own errors say more."""


class MemberThread(Generic[M]):
    """A set of members and the daemon thread that serves them (see :meth:`run`)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._members: set[M] = set()
        self._wake = threading.Event()
        self._running = False
        self._last_warning = 0.0

    def add(self, member: M) -> None:
        """Serve ``member`` from now on, starting the thread if it is not running."""
        with self._lock:
            self._members.add(member)
            if self._running:
                return
            self._running = True
            self._wake = threading.Event()
        threading.Thread(target=self.run, args=(self._wake,), name=self._name, daemon=True).start()

    def discard(self, member: M) -> None:
        """Stop serving ``member``; the thread ends once no member is left."""
        with self._lock:
            self._members.discard(member)
            if not self._members:
                self._wake.set()

    def members(self) -> list[M] | None:
        """The members to serve this round, or None when none is left: the thread must then return."""
        with self._lock:
            if not self._members:
                self._running = False
                return None
            return list(self._members)

    def may_warn(self) -> bool:
        """Whether a failed round may be logged now (at most once a minute)."""
        now = time.monotonic()
        if now - self._last_warning > _WARN_INTERVAL:
            self._last_warning = now
            return True
        return False

    def run(self, wake: threading.Event) -> None:
        """Serve the members until :meth:`members` returns None. ``wake`` is set by a discard that may end it:
        clear it after waking, since an add may have followed."""
        raise NotImplementedError
