"""Retention: trimming old records from the front of each partition, and expiring inbox keys."""

from __future__ import annotations

import os
import sqlite3

from choreograph.core.retention import DEFAULT_RETENTION, LogSize, Retention

from . import dead_letters, log
from .config import SqliteConfig


def trim(conn: sqlite3.Connection, config: SqliteConfig, now: float) -> int:
    """Delete records past the retention limits and expired inbox keys; return how many records went.

    Runs inside a write transaction. Per partition, records go from the front
    only (offsets stay dense), below the first offset that is either young
    enough (``retention``, 7 days by default) or within the newest
    ``retention_max_records``. Unless ``retention_respect_groups`` is off, no
    record at or after the slowest group's committed offset is trimmed, so a
    lagging group never loses records it has not processed. Dead letters
    stored more than ``dead_letter_retention`` ago are deleted, whatever their status.
    """
    conn.execute("DELETE FROM inbox WHERE ts < ?", (now - config.inbox_retention,))
    if config.dead_letter_retention is not None:
        dead_letters.expire(conn, now - config.dead_letter_retention)
    if config.retention is None and config.retention_max_records is None:
        return 0
    removed = 0
    ends = conn.execute("SELECT topic, partition, next_offset FROM partitions").fetchall()
    for topic, partition, end in ends:
        # a record goes if it breaks either limit
        cut = 0
        if config.retention_max_records is not None:
            cut = max(cut, end - config.retention_max_records)
        if config.retention is not None:
            # appends carry non-decreasing times in practice: stop at the first young record
            young = conn.execute(
                "SELECT offset FROM records WHERE topic = ? AND partition = ? AND ts >= ? ORDER BY offset LIMIT 1",
                (topic, partition, now - config.retention),
            ).fetchone()
            cut = max(cut, end if young is None else int(young[0]))
        cut = min(cut, _floor(conn, config, topic, partition, end))
        if cut > 0:
            removed += conn.execute(
                "DELETE FROM records WHERE topic = ? AND partition = ? AND offset < ?", (topic, partition, cut)
            ).rowcount
    return removed


def _floor(conn: sqlite3.Connection, config: SqliteConfig, topic: str, partition: int, end: int) -> int:
    if not config.retention_respect_groups:
        return end
    row = conn.execute(
        "SELECT MIN(committed) FROM offsets WHERE topic = ? AND partition = ?", (topic, partition)
    ).fetchone()
    return end if row[0] is None else min(end, int(row[0]))


def describe(config: SqliteConfig) -> Retention:
    """Return the retention ``config`` applies, for the startup line."""
    extra = []
    if config.retention_max_records is not None:
        extra.append(f"at most {config.retention_max_records} records per partition")
    if not config.retention_respect_groups:
        extra.append("even records a group has not committed")
    how = f"trimmed every {config.retention_interval:g} s" + (
        ", never past a group's committed offset" if config.retention_respect_groups else ""
    )
    return Retention("sqlite", config.retention, config.retention == DEFAULT_RETENTION, how, tuple(extra))


def size(conn: sqlite3.Connection, path: str) -> LogSize:
    """Return retained records per topic (from partition ends and first offsets, by index) and the file's bytes.

    The file's bytes are ``page_count * page_size`` plus the write-ahead log;
    they include dead letters, inboxes and free pages, so they are the
    disk space the broker holds, not the records' payload alone.
    """
    records: dict[str, int] = {}
    for topic, partition, end in conn.execute("SELECT topic, partition, next_offset FROM partitions"):
        records[topic] = records.get(topic, 0) + end - log.first_offset(conn, topic, partition, end)
    pages = conn.execute("PRAGMA page_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]
    try:
        wal = os.path.getsize(path + "-wal")
    except OSError:  # no WAL right now (checkpointed and truncated, or never written)
        wal = 0
    return LogSize(records, store_bytes=int(pages) + wal)
