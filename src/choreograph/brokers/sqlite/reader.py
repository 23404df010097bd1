"""The read side: one thread with its own read-only connection.

WAL lets it read while any writer (this process's or another's) commits; a
read never waits for a write. Reads run off the event loop so a slow disk
never stalls it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .config import SqliteConfig
from .database import connect, translate

T = TypeVar("T")


class Reader:
    """Runs read-only work on a dedicated connection, one call at a time, in call order."""

    def __init__(self, path: str, config: SqliteConfig) -> None:
        self._path = path
        self._conn = connect(path, config)
        self._conn.execute("PRAGMA query_only = ON")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="choreograph-sqlite-reader")

    async def run(self, work: Callable[[sqlite3.Connection], T], action: str) -> T:
        """Run ``work(connection)`` on the reader thread; sqlite3 errors become BrokerError."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, work, action)

    def _call(self, work: Callable[[sqlite3.Connection], T], action: str) -> T:
        try:
            return work(self._conn)
        except sqlite3.Error as exc:
            raise translate(exc, self._path, action) from exc

    @staticmethod
    def data_version(conn: sqlite3.Connection) -> int:
        """Return a number that changes whenever another connection commits to the file.

        Reads only the shared-memory WAL index: no disk I/O, microseconds.
        """
        return int(conn.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        """Finish queued reads and close the connection. Idempotent."""
        self._executor.shutdown(wait=True)
        self._conn.close()
