"""The single writer: group-commits every write of this process in batches.

All writes of a broker (publishes, settlements, heartbeats, dead-letter
operations, trims) are queued to one thread with its own connection. The
thread takes everything pending, runs it in ONE ``BEGIN IMMEDIATE``
transaction — each job inside its own savepoint so a failing job is rolled
back alone — commits once, and only then resolves each caller's future. So a
thousand concurrent publishes cost one commit (and, with ``sync="full"``, one
fsync), and a future resolves only when its write is durable per ``sync``.

Before each transaction the writer checks that the path still names the file
it opened, whole (:class:`~.database.StorageCheck`): while the file is
deleted (or moved away), replaced or truncated, every write fails with
StorageLost — never acknowledged into a file nobody will read again. The
loss is logged once, and its end (the same file back at its path) too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from choreograph.core.errors import BrokerClosed, StorageLost
from choreograph.core.partitioning import RoundRobin

from .config import SqliteConfig
from .database import StorageCheck, connect, translate

T = TypeVar("T")

log = logging.getLogger(__name__)


class WriteBatch:
    """One group-commit transaction as seen by the jobs in it.

    Caches the next offset of each partition touched, so appends in one batch
    do not re-read or re-write the ``partitions`` table per job; the cache is
    written back once, just before COMMIT. Only used on the writer thread.
    """

    def __init__(self, conn: sqlite3.Connection, round_robin: RoundRobin) -> None:
        self.conn = conn
        self.round_robin = round_robin
        self._offsets: dict[str, list[int]] = {}
        self._loaded: dict[str, list[int]] = {}
        self._hooks: list[Callable[[], None]] = []

    def next_offsets(self, topic: str, partitions: int) -> list[int]:
        """Return the mutable list of next offsets per partition of ``topic``, creating the topic if new."""
        offsets = self._offsets.get(topic)
        if offsets is None:
            rows = self.conn.execute(
                "SELECT next_offset FROM partitions WHERE topic = ? ORDER BY partition", (topic,)
            ).fetchall()
            if not rows:
                self.conn.executemany(
                    "INSERT INTO partitions (topic, partition, next_offset) VALUES (?, ?, 0)",
                    [(topic, p) for p in range(partitions)],
                )
                rows = [(0,)] * partitions
            offsets = [row[0] for row in rows]
            self._offsets[topic] = offsets
            self._loaded[topic] = list(offsets)
        return offsets

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` on the writer thread once the batch committed (not if it rolled back)."""
        self._hooks.append(hook)

    def mark(self) -> tuple[dict[str, list[int]], dict[str, list[int]], int]:
        """Return a restore point for a job's savepoint."""
        return (
            {topic: list(v) for topic, v in self._offsets.items()},
            dict(self._loaded),
            len(self._hooks),
        )

    def restore(self, point: tuple[dict[str, list[int]], dict[str, list[int]], int]) -> None:
        """Forget what a rolled-back job did to the cache and hooks."""
        self._offsets, self._loaded, hooks = point
        del self._hooks[hooks:]

    def flush(self) -> None:
        """Write changed next offsets to ``partitions``: before COMMIT, or earlier for a job reading them."""
        changed = [
            (offset, topic, partition)
            for topic, offsets in self._offsets.items()
            for partition, (offset, before) in enumerate(zip(offsets, self._loaded[topic], strict=True))
            if offset != before
        ]
        if changed:
            self.conn.executemany("UPDATE partitions SET next_offset = ? WHERE topic = ? AND partition = ?", changed)
            self._loaded = {topic: list(offsets) for topic, offsets in self._offsets.items()}

    def run_hooks(self) -> None:
        """Run the after-commit hooks; a failing hook is logged and does not stop the others."""
        for hook in self._hooks:
            try:
                hook()
            except Exception:
                log.exception("sqlite broker: after-commit hook failed")


class _BatchRolledBack(Exception):
    """A job's error after which SQLite had rolled back the whole transaction: every job fails with ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(slots=True)
class _Job(Generic[T]):
    work: Callable[[WriteBatch], T]
    size: int
    future: concurrent.futures.Future[T]


class Writer:
    """Owns the write connection and the thread that group-commits jobs.

    ``submit`` is thread-safe; jobs run in submission order. ``close`` runs
    every job submitted before it, then stops the thread; later submissions
    raise BrokerClosed.
    """

    def __init__(self, path: str, config: SqliteConfig, on_commit: Callable[[], None]) -> None:
        self._path = path
        self._max_batch = config.max_batch_records
        self._on_commit = on_commit
        self._conn = connect(path, config, writer=True)
        self._storage = StorageCheck(path)
        self.lost: StorageLost | None = None
        """Why the file was unusable at the last check (None: it was sound)."""
        self._queue: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._round_robin = RoundRobin()
        self._thread = threading.Thread(target=self._run, name="choreograph-sqlite-writer", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[WriteBatch], T], size: int = 1) -> concurrent.futures.Future[T]:
        """Queue ``work`` for the next batch; ``size`` (records) bounds how much one batch holds."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise BrokerClosed(f"SQLite broker {self._path!r} is closed")
            self._queue.put(_Job(work, size, future))
        return future

    async def run(self, work: Callable[[WriteBatch], T], size: int = 1) -> T:
        """Submit ``work`` and wait until its batch committed; return its result or raise its error."""
        return await asyncio.wrap_future(self.submit(work, size))

    def close(self) -> None:
        """Commit everything queued, stop the thread and close the connection. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()
        self._conn.close()

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            jobs: list[_Job[Any]] = [first]
            size = first.size
            while size < self._max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
                size += job.size
            self._commit(jobs)

    def _commit(self, jobs: list[_Job[Any]]) -> None:
        conn = self._conn
        live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        if self._storage_lost(live):
            return
        batch = WriteBatch(conn, self._round_robin)
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in live:
                point = batch.mark()
                conn.execute("SAVEPOINT job")
                try:
                    result = job.work(batch)
                except Exception as exc:
                    error = translate(exc, self._path, "write") if isinstance(exc, sqlite3.Error) else exc
                    if not conn.in_transaction:
                        # SQLite rolled the whole transaction back itself (a full disk, an I/O error): no job
                        # of the batch holds, and each fails with this cause (not "no such savepoint")
                        raise _BatchRolledBack(error) from exc
                    # undo only this job; the rest of the batch still commits
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    batch.restore(point)
                    outcomes.append((False, error))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((True, result))
            batch.flush()
            conn.execute("COMMIT")
        except (sqlite3.Error, _BatchRolledBack) as exc:
            self._rollback()
            failure = exc.error if isinstance(exc, _BatchRolledBack) else translate(exc, self._path, "commit")
            for job in live:
                job.future.set_exception(failure)
            return
        batch.run_hooks()
        for job, (ok, value) in zip(live, outcomes, strict=True):
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)
        self._on_commit()

    def check_storage(self) -> None:
        """Raise StorageLost if the file is deleted, replaced or truncated now. Thread-safe."""
        with self._lock:
            try:
                self._storage.check()
            except StorageLost as exc:
                if self.lost is None:
                    log.error("sqlite broker: %s; every write fails while it is so (restart on sound storage)", exc)
                self.lost = exc
                raise
            if self.lost is not None:
                log.warning("sqlite broker: file %r is back at its path; writes go through again", self._path)
                self.lost = None

    def _storage_lost(self, jobs: list[_Job[Any]]) -> bool:
        """Fail ``jobs`` and return True if the file is lost."""
        try:
            self.check_storage()
        except StorageLost as exc:
            for job in jobs:
                job.future.set_exception(exc)
            return True
        return False

    def _rollback(self) -> None:
        if not self._conn.in_transaction:
            return
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            # the transaction is already gone (SQLite rolls back on some errors itself)
            log.warning("sqlite broker: rollback after a failed commit also failed", exc_info=True)
