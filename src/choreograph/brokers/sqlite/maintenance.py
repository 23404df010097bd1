"""The background thread: heartbeats, early rebalancing, retention.

It runs off the event loop on purpose: a member keeps its leases while its
handlers are busy or the loop is blocked, and loses them only if the whole
process stops (crash, kill -9, freeze), which is what leases are for.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable

from choreograph.core.errors import BrokerClosed, BrokerError

from . import leases, retention
from .database import connect
from .store import Store
from .subscription import SqliteSubscription
from .writer import WriteBatch

log = logging.getLogger(__name__)

_WARNING_INTERVAL = 60.0
"""Seconds between two warnings about the same failing background action (the first carries its traceback)."""


class Maintenance:
    """Heartbeats every ``heartbeat_interval``; rebalances within ``rebalance_check_interval``
    of a membership change; trims every ``retention_interval``. Stopped by :meth:`close`.
    """

    def __init__(self, store: Store, subscriptions: Callable[[], list[SqliteSubscription]]) -> None:
        self._store = store
        self._subscriptions = subscriptions
        self._conn = connect(store.path, store.config)
        self._conn.execute("PRAGMA query_only = ON")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._warned: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="choreograph-sqlite-maintenance", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Check for rebalancing now rather than at the next tick."""
        self._wake.set()

    def close(self) -> None:
        """Stop the thread and close its connection. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self._conn.close()

    def _run(self) -> None:
        config = self._store.config
        heartbeat_every = config.effective_heartbeat_interval
        next_heartbeat = time.monotonic() + heartbeat_every
        next_trim = time.monotonic() + config.retention_interval
        while not self._stop.is_set():
            self._wake.wait(config.rebalance_check_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            now = time.monotonic()
            members = [s for s in self._subscriptions() if not s.closed]
            if now >= next_heartbeat:
                due = members
                next_heartbeat = now + heartbeat_every
            else:
                due = self._changed(members)
            if due:
                self._write(
                    functools.partial(_beat, due=due, live=members, lease_timeout=config.lease_timeout), "heartbeat"
                )
            if now >= next_trim:
                next_trim = now + config.retention_interval
                self._write(lambda batch: retention.trim(batch.conn, config, self._store.clock.now()), "retention trim")

    def _changed(self, members: list[SqliteSubscription]) -> list[SqliteSubscription]:
        generations: dict[tuple[str, str], int] = {}
        try:
            for member in members:
                key = (member.topic, member.group)
                if key not in generations:
                    generations[key] = leases.read_generation(self._conn, *key)
        except sqlite3.Error:
            self._warn("checking group generations")
            return []
        return [m for m in members if m.wants_rebalance(generations[(m.topic, m.group)])]

    def _write(self, work: Callable[[WriteBatch], object], action: str) -> None:
        try:
            self._store.writer.submit(work).result()
        except BrokerClosed:
            self._stop.set()
        except BrokerError:
            # transient (another process held the write lock too long), or the file is gone (StorageLost,
            # which the writer reports): next tick retries
            self._warn(f"background {action}")
        else:
            self._warned.pop(f"background {action}", None)

    def _warn(self, action: str) -> None:
        """Log that ``action`` failed: with its traceback the first time, then at most once a minute."""
        now = time.monotonic()
        last = self._warned.get(action)
        if last is not None and now - last < _WARNING_INTERVAL:
            return
        self._warned[action] = now
        log.warning("sqlite broker: %s failed (warning again at most once a minute while it fails)", action,
                    exc_info=last is None)  # fmt: skip


def _beat(
    batch: WriteBatch, due: list[SqliteSubscription], live: list[SqliteSubscription], lease_timeout: float
) -> None:
    """Heartbeat ``due``, first renewing every ``live`` member of the groups they rebalance in.

    One slow write can delay all of this process's heartbeats past the lease
    timeout at once; renewing the siblings first keeps one member from
    declaring another member of the same process dead and taking its leases.
    """
    siblings: dict[tuple[str, str], list[str]] = {}
    for member in live:
        if not member.closed:
            siblings.setdefault((member.topic, member.group), []).append(member.member)
    now = time.time()
    for topic, group in dict.fromkeys((member.topic, member.group) for member in due):
        members = siblings.get((topic, group), [])
        if len(members) > 1:
            leases.renew(batch.conn, topic, group, members, now=now, lease_timeout=lease_timeout)
    for member in due:
        member.heartbeat(batch)
