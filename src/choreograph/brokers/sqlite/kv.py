"""Key-value namespaces in the broker's SQLite file (the :class:`~choreograph.core.kv.KeyValueProvider` capability).

One table, ``key_values``, holds every namespace: ``(namespace, key)`` is the
primary key, ``value`` the bytes (NULL once deleted) and ``revision`` the
key's revision. A deleted key keeps its row with a NULL value so that a key
re-created later continues from its old revision (revisions only grow, as
:mod:`choreograph.core.kv` requires).

Writes run on the broker's writer thread inside its ``BEGIN IMMEDIATE``
transaction, each in its own savepoint: the read of the current revision and
the write happen under SQLite's write lock, which every process opening the
file shares, so compare-and-set is atomic across processes, and a failed
condition (:class:`~choreograph.core.kv.KeyConflict`) rolls back the job's
savepoint and writes nothing. Reads run on the reader connection and see every
commit that returned before them (WAL), in this process or another.

The table is created on a store's first use (``CREATE TABLE IF NOT EXISTS``),
so files written by earlier versions need no migration.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Final

from choreograph.core.kv import Entry, KeyConflict, check_key, check_namespace, check_value

from .store import Store
from .writer import WriteBatch

TABLE: Final = """
CREATE TABLE IF NOT EXISTS key_values (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB,
    revision INTEGER NOT NULL,
    PRIMARY KEY (namespace, key)
)
"""


class SqliteKeyValue:
    """A :class:`~choreograph.core.kv.KeyValueStore` for one namespace of the broker file."""

    def __init__(self, store: Store, namespace: str, check_open: Callable[[], None]) -> None:
        self.namespace = check_namespace(namespace)
        self._store = store
        self._check_open = check_open
        self._ready = False

    async def get(self, key: str) -> Entry | None:
        check_key(key)
        await self._prepare()
        row = await self._store.reader.run(
            lambda conn: conn.execute(
                "SELECT value, revision FROM key_values WHERE namespace = ? AND key = ? AND value IS NOT NULL",
                (self.namespace, key),
            ).fetchone(),
            "read a key",
        )
        return None if row is None else Entry(key, bytes(row[0]), int(row[1]))

    async def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        check_value(check_key(key), value)
        data = bytes(value)
        await self._prepare()

        def write(batch: WriteBatch) -> int:
            live, last = self._current(batch.conn, key)
            self._check(key, expect, live)
            revision = last + 1
            batch.conn.execute(
                "INSERT INTO key_values (namespace, key, value, revision) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, revision = excluded.revision",
                (self.namespace, key, data, revision),
            )
            return revision

        return await self._store.writer.run(write)

    async def delete(self, key: str, *, expect: int | None = None) -> bool:
        check_key(key)
        await self._prepare()

        def remove(batch: WriteBatch) -> bool:
            live, _ = self._current(batch.conn, key)
            self._check(key, expect, live)
            if not live:
                return False
            batch.conn.execute(
                "UPDATE key_values SET value = NULL WHERE namespace = ? AND key = ?", (self.namespace, key)
            )
            return True

        return await self._store.writer.run(remove)

    async def keys(self, prefix: str = "") -> list[str]:
        await self._prepare()
        # Filtered in Python: LIKE/GLOB would need escaping of the prefix's own wildcards.
        rows = await self._store.reader.run(
            lambda conn: conn.execute(
                "SELECT key FROM key_values WHERE namespace = ? AND key >= ? AND value IS NOT NULL ORDER BY key",
                (self.namespace, prefix),
            ).fetchall(),
            "list keys",
        )
        found = []
        for (key,) in rows:
            if not key.startswith(prefix):
                break  # ordered: every later key is past the prefix
            found.append(key)
        return found

    async def close(self) -> None:
        return None

    # ---------------------------------------------------------------- private

    async def _prepare(self) -> None:
        self._check_open()
        if not self._ready:
            await self._store.writer.run(lambda batch: batch.conn.execute(TABLE))
            self._ready = True

    def _current(self, conn: sqlite3.Connection, key: str) -> tuple[int, int]:
        """(live revision or 0, last revision ever or 0) of ``key``, read inside the write transaction."""
        row = conn.execute(
            "SELECT value IS NOT NULL, revision FROM key_values WHERE namespace = ? AND key = ?",
            (self.namespace, key),
        ).fetchone()
        if row is None:
            return 0, 0
        return (int(row[1]) if row[0] else 0), int(row[1])

    def _check(self, key: str, expect: int | None, live: int) -> None:
        if expect is not None and expect != live:
            raise KeyConflict(self.namespace, key, expect, live)


class KeyValueNamespaces:
    """The :class:`~choreograph.core.kv.KeyValueProvider` half of :class:`SqliteBroker`."""

    _store: Store

    def _check_open(self) -> None:
        raise NotImplementedError  # provided by SqliteBroker

    def key_value(self, namespace: str) -> SqliteKeyValue:
        """The store for ``namespace`` in this broker's file, shared by every process that opens it."""
        return SqliteKeyValue(self._store, namespace, self._check_open)
