"""Where the observer keeps instance state between runs.

:class:`SqliteFlowStore` writes a table into the same SQLite file as the
embedded log, through its own connection (it never touches the broker's
tables). :class:`MemoryFlowStore` keeps snapshots in a dict, for tests; reuse
one instance across observers to simulate a restart.

The observer commits state before it settles the deliveries that produced it,
so after a crash the redelivered events are re-applied to the committed state,
where they are recognized by (correlation id, event id) and count once.

Beside each snapshot the store keeps two times the tracker sets
(:attr:`Instance.wake_at`, :attr:`Instance.finished_at`), so the observer can
hold only some instances in memory: it asks for instances by correlation id
(:meth:`FlowStore.fetch`), for those due by a time (:meth:`FlowStore.due`),
and deletes finished ones past their retention (:meth:`FlowStore.forget`).
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import orjson

from choreograph.brokers import broker_class
from choreograph.core.errors import ChoreographError, ConfigurationError
from choreograph.core.local_log import LocalLogBackend
from choreograph.core.options import create_private_file
from choreograph.core.redaction import redact_url
from choreograph.observe.flows.instance import Instance

TABLE = "observer_flow_instances"


class FlowStoreError(ChoreographError):
    """The observer's state could not be read or written."""


@runtime_checkable
class FlowStore(Protocol):
    """Persistent instance state of observed flows.

    Instances come back with ``wake_at`` and ``finished_at`` as saved.
    """

    async def load(self, flow: str, *, after: str = "", limit: int | None = None) -> list[Instance]:
        """Return stored instances of ``flow`` by correlation id, from the first after ``after``; all by default."""
        ...

    async def save(self, instances: Sequence[Instance]) -> None:
        """Upsert ``instances`` in one atomic commit; durable once it returns. Idempotent."""
        ...

    async def fetch(self, flow: str, correlation_ids: Sequence[str]) -> list[Instance]:
        """Return the stored instances of ``flow`` among ``correlation_ids`` (absent ones are skipped)."""
        ...

    async def due(
        self, flow: str, until: float, *, after: tuple[float, str] | None = None, limit: int
    ) -> list[Instance]:
        """Return up to ``limit`` instances of ``flow`` with ``wake_at <= until``, by (wake_at, correlation id).

        ``after`` continues from the (wake_at, correlation id) of the last one returned.
        """
        ...

    async def forget(self, flow: str, finished_before: float) -> int:
        """Delete instances of ``flow`` that finished before ``finished_before``; return how many."""
        ...

    async def close(self) -> None:
        """Release resources. Idempotent."""
        ...


def _revive(raw: bytes, wake_at: float | None, finished_at: float | None) -> Instance:
    instance = Instance.from_dict(orjson.loads(raw))
    instance.wake_at, instance.finished_at = wake_at, finished_at
    return instance


class MemoryFlowStore:
    """Keeps JSON snapshots in memory; survives an Observer, not the process."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], tuple[bytes, float | None, float | None]] = {}
        self.commits = 0

    async def load(self, flow: str, *, after: str = "", limit: int | None = None) -> list[Instance]:
        """Return copies of the stored instances of ``flow``, by correlation id."""
        keys = sorted(cid for name, cid in self._rows if name == flow and cid > after)
        return [_revive(*self._rows[(flow, cid)]) for cid in keys[:limit]]

    async def save(self, instances: Sequence[Instance]) -> None:
        """Store snapshots (copies) of ``instances``."""
        for i in instances:
            self._rows[(i.flow, i.correlation_id)] = (orjson.dumps(i.to_dict()), i.wake_at, i.finished_at)
        self.commits += 1

    async def fetch(self, flow: str, correlation_ids: Sequence[str]) -> list[Instance]:
        """Return copies of the stored instances of ``flow`` among ``correlation_ids``."""
        return [
            _revive(*self._rows[(flow, cid)]) for cid in dict.fromkeys(correlation_ids) if (flow, cid) in self._rows
        ]

    async def due(
        self, flow: str, until: float, *, after: tuple[float, str] | None = None, limit: int
    ) -> list[Instance]:
        """Return up to ``limit`` copies of instances with ``wake_at <= until``, by (wake_at, correlation id)."""
        due = sorted(
            (wake, cid)
            for (name, cid), (_, wake, _) in self._rows.items()
            if name == flow and wake is not None and wake <= until and (after is None or (wake, cid) > after)
        )
        return [_revive(*self._rows[(flow, cid)]) for _, cid in due[:limit]]

    async def forget(self, flow: str, finished_before: float) -> int:
        """Delete instances of ``flow`` finished before ``finished_before``."""
        old = [
            k for k, (_, _, done) in self._rows.items() if k[0] == flow and done is not None and done < finished_before
        ]
        for key in old:
            del self._rows[key]
        return len(old)

    async def close(self) -> None:
        """Nothing to release."""


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    flow TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    state BLOB NOT NULL,
    wake_at REAL,
    finished_at REAL,
    PRIMARY KEY (flow, correlation_id)
) WITHOUT ROWID
"""
_ADDED_COLUMNS = ("wake_at REAL", "finished_at REAL")  # absent from files written before 0.x: added on open
_INDEXES = (
    f"CREATE INDEX IF NOT EXISTS {TABLE}_wake ON {TABLE} (flow, wake_at) WHERE wake_at IS NOT NULL",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_finished ON {TABLE} (flow, finished_at) WHERE finished_at IS NOT NULL",
)
_COLUMNS = "state, wake_at, finished_at"
_NEG_INF = -1e308
"""``wake_at`` of an instance with an unsent notice (-inf does not round-trip through every SQLite build)."""
_CHUNK = 500


def _wake(value: float | None) -> float | None:
    return None if value is None else max(value, _NEG_INF)


class SqliteFlowStore:
    """Instance state in a table of a SQLite file, through a connection of its own.

    Blocking sqlite3 calls run in a worker thread, one at a time. Each
    :meth:`save` is one transaction.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        create_private_file(self.path)  # 0600: the same file as the broker's, often
        try:
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({TABLE})")}
            for column in _ADDED_COLUMNS:
                if column.split()[0] not in present:
                    self._db.execute(f"ALTER TABLE {TABLE} ADD COLUMN {column}")
            for index in _INDEXES:
                self._db.execute(index)
        except sqlite3.Error as exc:
            raise FlowStoreError(f"cannot open observer state in {self.path}: {exc}") from exc
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> SqliteFlowStore:
        """Open the store in the log file of a broker URL such as ``sqlite:///path.db`` (options ignored).

        ConfigurationError for a backend whose log is not one local file
        (:class:`~choreograph.core.local_log.LocalLogBackend`) or a URL naming no file.
        """
        backend = broker_class(url)
        if not isinstance(backend, LocalLogBackend):
            raise ConfigurationError(f"{redact_url(url)} keeps its log in no local file (expected sqlite:///path.db)")
        path = backend.log_path(url)
        if not path or path == ":memory:":
            raise ConfigurationError(f"the broker URL needs a file path: {redact_url(url)}")
        return cls(path)

    def _select(self, sql: str, params: Sequence[object]) -> list[Instance]:
        with self._lock:
            if self._closed:
                raise FlowStoreError("the observer state store is closed")
            rows = self._db.execute(sql, params).fetchall()
        return [
            _revive(state, -math.inf if wake is not None and wake <= _NEG_INF else wake, done)
            for state, wake, done in rows
        ]

    def _save(self, rows: list[tuple[str, str, bytes, float | None, float | None]]) -> None:
        with self._lock:
            if self._closed:
                raise FlowStoreError("the observer state store is closed")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    f"INSERT INTO {TABLE} (flow, correlation_id, state, wake_at, finished_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (flow, correlation_id) DO UPDATE SET state = excluded.state, "
                    "wake_at = excluded.wake_at, finished_at = excluded.finished_at",
                    rows,
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    async def _read(self, sql: str, params: Sequence[object]) -> list[Instance]:
        try:
            return await asyncio.to_thread(self._select, sql, params)
        except sqlite3.Error as exc:
            raise FlowStoreError(f"cannot read observer state from {self.path}: {exc}") from exc

    async def load(self, flow: str, *, after: str = "", limit: int | None = None) -> list[Instance]:
        """Return stored instances of ``flow`` by correlation id, from the first after ``after``; all by default."""
        return await self._read(
            f"SELECT {_COLUMNS} FROM {TABLE} WHERE flow = ? AND correlation_id > ? ORDER BY correlation_id LIMIT ?",
            (flow, after, -1 if limit is None else limit),
        )

    async def fetch(self, flow: str, correlation_ids: Sequence[str]) -> list[Instance]:
        """Return the stored instances of ``flow`` among ``correlation_ids`` (one query per 500)."""
        ids = list(dict.fromkeys(correlation_ids))
        found: list[Instance] = []
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            found += await self._read(
                f"SELECT {_COLUMNS} FROM {TABLE} WHERE flow = ? AND correlation_id IN ({marks})", (flow, *chunk)
            )
        return found

    async def due(
        self, flow: str, until: float, *, after: tuple[float, str] | None = None, limit: int
    ) -> list[Instance]:
        """Return up to ``limit`` instances with ``wake_at <= until``, by (wake_at, correlation id)."""
        start = (_NEG_INF, "") if after is None else (_wake(after[0]), after[1])
        return await self._read(
            f"SELECT {_COLUMNS} FROM {TABLE} WHERE flow = ? AND wake_at IS NOT NULL AND wake_at <= ?"
            " AND (wake_at, correlation_id) > (?, ?) ORDER BY wake_at, correlation_id LIMIT ?",
            (flow, until, *start, limit),
        )

    async def forget(self, flow: str, finished_before: float) -> int:
        """Delete instances of ``flow`` that finished before ``finished_before``; return how many."""

        def work() -> int:
            with self._lock:
                if self._closed:
                    raise FlowStoreError("the observer state store is closed")
                return self._db.execute(
                    f"DELETE FROM {TABLE} WHERE flow = ? AND finished_at IS NOT NULL AND finished_at < ?",
                    (flow, finished_before),
                ).rowcount

        try:
            return await asyncio.to_thread(work)
        except sqlite3.Error as exc:
            raise FlowStoreError(f"cannot write observer state to {self.path}: {exc}") from exc

    async def save(self, instances: Sequence[Instance]) -> None:
        """Upsert ``instances`` in one transaction."""
        if not instances:
            return
        rows = [
            (i.flow, i.correlation_id, orjson.dumps(i.to_dict()), _wake(i.wake_at), i.finished_at) for i in instances
        ]
        try:
            await asyncio.to_thread(self._save, rows)
        except sqlite3.Error as exc:
            raise FlowStoreError(f"cannot write observer state to {self.path}: {exc}") from exc

    async def close(self) -> None:
        """Close the connection. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
