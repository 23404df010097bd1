"""The embedded SQLite backend proves itself against the conformance suite."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
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
