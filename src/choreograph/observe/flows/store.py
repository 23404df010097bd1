"""Where the observer keeps instance state between runs.

:class:`SqliteFlowStore` writes a table into the same SQLite file as the
embedded log, through its own connection (it never touches the broker's
tables). :class:`MemoryFlowStore` keeps snapshots in a dict, for tests; reuse
one instance across observers to simulate a restart.

The observer commits state before it settles the deliveries that produced it,
so after a crash the redelivered events are re-applied to the committed state,
where they are recognized by (correlation id, event id) and count once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

import orjson

from choreograph.core.errors import ChoreographError, ConfigurationError
from choreograph.observe.flows.instance import Instance

TABLE = "observer_flow_instances"


class FlowStoreError(ChoreographError):
    """The observer's state could not be read or written."""


@runtime_checkable
class FlowStore(Protocol):
    """Persistent instance state of observed flows."""

    async def load(self, flow: str) -> list[Instance]:
        """Return every stored instance of ``flow``. Safe to call concurrently."""
        ...

    async def save(self, instances: Sequence[Instance]) -> None:
        """Upsert ``instances`` in one atomic commit; durable once it returns. Idempotent."""
        ...

    async def close(self) -> None:
        """Release resources. Idempotent."""
        ...


class MemoryFlowStore:
    """Keeps JSON snapshots in memory; survives an Observer, not the process."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], bytes] = {}
        self.commits = 0

    async def load(self, flow: str) -> list[Instance]:
        """Return copies of the stored instances of ``flow``."""
        return [Instance.from_dict(orjson.loads(raw)) for (name, _), raw in self._rows.items() if name == flow]

    async def save(self, instances: Sequence[Instance]) -> None:
        """Store snapshots (copies) of ``instances``."""
        for instance in instances:
            self._rows[(instance.flow, instance.correlation_id)] = orjson.dumps(instance.to_dict())
        self.commits += 1

    async def close(self) -> None:
        """Nothing to release."""


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    flow TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (flow, correlation_id)
) WITHOUT ROWID
"""


class SqliteFlowStore:
    """Instance state in a table of a SQLite file, through a connection of its own.

    Blocking sqlite3 calls run in a worker thread, one at a time. Each
    :meth:`save` is one transaction.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise FlowStoreError(f"cannot open observer state in {self.path}: {exc}") from exc
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> SqliteFlowStore:
        """Open the store in the file of a ``sqlite:///path.db`` broker URL (options ignored)."""
        parts = urlsplit(url)
        if parts.scheme != "sqlite":
            raise ConfigurationError(f"not a sqlite URL (expected sqlite:///path.db): {url!r}")
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if not path or path == ":memory:":
            raise ConfigurationError(f"sqlite URL needs a file path: {url!r}")
        return cls(path)

    def _load(self, flow: str) -> list[Instance]:
        with self._lock:
            rows = self._db.execute(f"SELECT state FROM {TABLE} WHERE flow = ?", (flow,)).fetchall()
        return [Instance.from_dict(orjson.loads(state)) for (state,) in rows]

    def _save(self, rows: list[tuple[str, str, bytes]]) -> None:
        with self._lock:
            if self._closed:
                raise FlowStoreError("the observer state store is closed")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    f"INSERT INTO {TABLE} (flow, correlation_id, state) VALUES (?, ?, ?) "
                    "ON CONFLICT (flow, correlation_id) DO UPDATE SET state = excluded.state",
                    rows,
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    async def load(self, flow: str) -> list[Instance]:
        """Return every stored instance of ``flow``."""
        try:
            return await asyncio.to_thread(self._load, flow)
        except sqlite3.Error as exc:
            raise FlowStoreError(f"cannot read observer state from {self.path}: {exc}") from exc

    async def save(self, instances: Sequence[Instance]) -> None:
        """Upsert ``instances`` in one transaction."""
        if not instances:
            return
        rows = [(i.flow, i.correlation_id, orjson.dumps(i.to_dict())) for i in instances]
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
