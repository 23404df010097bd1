"""SQLite log health (M8): the file and its write-ahead log, and how far checkpoints have copied the WAL.

A scrape runs ``PRAGMA wal_checkpoint(PASSIVE)`` on the broker's read
connection: it never waits for a reader or a writer, copies into the database
what no open snapshot still needs (the work SQLite's automatic checkpoint does
anyway) and reports the WAL's frames and how many of them are copied. A WAL
whose checkpointed frames stay behind its frames is held by a long-lived
reader; one that only grows, by a checkpoint that cannot finish.
"""

from __future__ import annotations

import os
import sqlite3
from typing import TYPE_CHECKING

from choreograph.core.broker_health import HealthSample

if TYPE_CHECKING:
    from .store import Store


class SqliteHealth:
    """Mixin of SqliteBroker: :class:`~choreograph.core.broker_health.HealthReporter` for the log file."""

    _path: str
    _store: Store

    def _check_open(self) -> None:
        raise NotImplementedError  # provided by SqliteBroker

    async def broker_health(self) -> list[HealthSample]:
        """Return the file's and the WAL's bytes, the WAL's frames and the frames checkpointed."""
        self._check_open()
        return await self._store.reader.run(lambda conn: samples(conn, self._path), "read the log's health")


def samples(conn: sqlite3.Connection, path: str) -> list[HealthSample]:
    """The figures of the database at ``path``, read (and passively checkpointed) through ``conn``."""
    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages, free = conn.execute("PRAGMA page_count").fetchone()[0], conn.execute("PRAGMA freelist_count").fetchone()[0]
    out = [
        HealthSample("sqlite_file_bytes", float(_size(path)), "Bytes of the SQLite database file."),
        HealthSample("sqlite_wal_bytes", float(_size(path + "-wal")), "Bytes of its write-ahead log file."),
        HealthSample("sqlite_free_bytes", float(free * page_size), "Bytes of free pages in the database file."),
        HealthSample("sqlite_pages_bytes", float(pages * page_size), "Bytes of pages in use or free (page_count)."),
    ]
    if frames >= 0:  # -1 each when the database is not in WAL mode
        out += [
            HealthSample("sqlite_wal_frames", float(frames), "Frames in the write-ahead log."),
            HealthSample("sqlite_wal_checkpointed_frames", float(copied), "Frames of the WAL copied into the file."),
            HealthSample("sqlite_checkpoint_blocked", float(busy), "1 if the last passive checkpoint was blocked."),
        ]
    return out


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:  # no WAL right now (checkpointed and truncated), or the file is gone: the scrape says 0
        return 0
