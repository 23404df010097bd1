"""The embedded SQLite backend proves itself against the conformance suite."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core.broker import Broker, partition_for
from choreograph.core.clock import Clock
from choreograph.testing import BrokerConformance, ChildBroker

_ROOT = Path(tempfile.mkdtemp(prefix="choreograph-conformance-"))


def teardown_module() -> None:
    shutil.rmtree(_ROOT, ignore_errors=True)


class TestSqliteConformance(BrokerConformance):
    capabilities = SqliteBroker.capabilities
    accepts_clock = True
    lease_timeout = 1.0

    async def make_broker(self, clock: Clock | None = None) -> Broker:
        path = Path(tempfile.mkdtemp(dir=_ROOT)) / "log.db"
        return SqliteBroker.from_url(f"sqlite:///{path}?lease_timeout=1.0", clock=clock)

    async def reopen_broker(self, broker: Broker) -> Broker:
        assert isinstance(broker, SqliteBroker)
        await broker.close()
        return SqliteBroker(broker.path, broker.config)

    def child_broker(self, broker: Broker) -> ChildBroker:
        assert isinstance(broker, SqliteBroker)
        return ChildBroker(url=f"sqlite:///{broker.path}?lease_timeout=1.0")

    # -- fault hooks (section F) --

    can_lose_store = True

    @contextlib.asynccontextmanager
    async def _failing_writes(self, broker: SqliteBroker) -> AsyncIterator[None]:
        """Another connection holds the write lock: every write waits out busy_timeout, then fails "locked"."""
        blocker = sqlite3.connect(broker.path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()

    def failing_writes(self, broker: Broker) -> AbstractAsyncContextManager[None]:
        assert isinstance(broker, SqliteBroker)
        return self._failing_writes(broker)

    @contextlib.asynccontextmanager
    async def _refusing_dead_letters(self, broker: SqliteBroker) -> AsyncIterator[None]:
        """SQLite's length limit (a string, a blob, a row), lowered on the writer's connection so a dead letter
        of a small record is over it, as a record near the real limit (1e9 bytes) would make its dead letter."""
        writer = broker._store.writer  # the one connection that writes: the limit is per connection
        before = await writer.run(lambda batch: batch.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 300))
        try:
            yield
        finally:
            await writer.run(lambda batch: batch.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, before))

    def refusing_dead_letters(self, broker: Broker) -> AbstractAsyncContextManager[None]:
        assert isinstance(broker, SqliteBroker)
        return self._refusing_dead_letters(broker)

    async def lose_store(self, broker: Broker) -> None:
        assert isinstance(broker, SqliteBroker)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{broker.path}{suffix}").unlink(missing_ok=True)

    async def inject_raw(self, broker: Broker, topic: str, key: str, marker: str) -> list[str]:
        """Rows another program writes into the file: key or headers not UTF-8, a blob key, headers not an object."""
        assert isinstance(broker, SqliteBroker)
        rows = [  # (key, headers, sql for the key, sql for the headers)
            (b"\xc3\x28", None, "CAST(? AS TEXT)", "?"),
            (key, b'{"a": "\xff"}', "?", "CAST(? AS TEXT)"),
            (key.encode(), None, "?", "?"),  # a blob
            (key, '["not", "an", "object"]', "?", "?"),
            (key, '{"a": "\\ud800"}', "?", "?"),  # a lone surrogate once decoded
        ]
        conn = sqlite3.connect(broker.path, timeout=10)
        try:
            with conn:
                ends = dict(conn.execute("SELECT partition, next_offset FROM partitions WHERE topic = ?", (topic,)))
                p = partition_for(key, len(ends))
                for i, (k, headers, key_sql, headers_sql) in enumerate(rows):
                    conn.execute(
                        "INSERT INTO records (topic, partition, offset, key, value, headers, ts)"
                        f" VALUES (?, ?, ?, {key_sql}, ?, {headers_sql}, ?)",
                        (topic, p, ends[p] + i, k, f"{marker}-{i}".encode(), headers, 1.0),
                    )
                conn.execute(
                    "UPDATE partitions SET next_offset = ? WHERE topic = ? AND partition = ?",
                    (ends[p] + len(rows), topic, p),
                )
        finally:
            conn.close()
        return [f"bytes:{marker}-{i}" for i in range(len(rows))]
