"""The SQLite broker's group reset (:class:`~choreograph.core.group_admin.GroupAdmin`).

A reset is one write transaction: the group's committed offsets on the topic
move, its scheduled retries are deleted (resubmitted dead letters stay), and
the group's *reset epoch* — a counter in the ``meta`` table, key
``reset:<topic>:<group>`` — goes up. Every member reads the epoch at each
fetch (one primary-key lookup) and, when it changed, forgets its cursors and
in-flight records, so it reads on from the new committed offsets; every settle
checks the epoch inside its own write transaction and is refused with
LeaseLost, applying nothing, when the epoch moved since the member's last
fetch. SQLite serializes the two transactions, so no settle of the old
position commits after the reset, in this process or another one.
"""

from __future__ import annotations

import sqlite3

from choreograph.core.broker import Position
from choreograph.core.errors import UnknownTopic
from choreograph.core.group_admin import PartitionReset
from choreograph.core.headers import DEAD_LETTER_ID_HEADER
from choreograph.core.names import check_group, check_topic

from . import log
from .store import Store
from .writer import WriteBatch

_RESUBMITTED = f'"{DEAD_LETTER_ID_HEADER}"'
"""How a resubmitted dead letter's retry row shows in its JSON headers (those rows survive a reset)."""


def _epoch_key(topic: str, group: str) -> str:
    return f"reset:{topic}:{group}"  # names hold no ':' (core.names), so the key is unambiguous


def read_epoch(conn: sqlite3.Connection, topic: str, group: str) -> int:
    """Return how many times ``group`` was reset on ``topic`` (0: never)."""
    row = conn.execute("SELECT value FROM meta WHERE name = ?", (_epoch_key(topic, group),)).fetchone()
    return 0 if row is None else int(row[0])


def reset(conn: sqlite3.Connection, topic: str, group: str, to: Position) -> list[PartitionReset]:
    """Move ``group``'s committed offsets on ``topic`` to ``to``; run inside a write transaction."""
    if not log.partition_ends(conn, topic):
        raise UnknownTopic(f"topic {topic!r} does not exist")
    starts = log.start_offsets(conn, topic, to)
    before = dict(
        conn.execute("SELECT partition, committed FROM offsets WHERE topic = ? AND grp = ?", (topic, group)).fetchall()
    )
    conn.executemany(
        "INSERT INTO offsets (topic, grp, partition, committed) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (topic, grp, partition) DO UPDATE SET committed = excluded.committed",
        [(topic, group, p, offset) for p, offset in starts.items()],
    )
    conn.execute(
        "DELETE FROM retries WHERE grp = ? AND topic = ? AND (headers IS NULL OR instr(headers, ?) = 0)",
        (group, topic, _RESUBMITTED),
    )
    conn.execute(
        "INSERT INTO meta (name, value) VALUES (?, '1')"
        " ON CONFLICT (name) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
        (_epoch_key(topic, group),),
    )
    return [PartitionReset(topic, group, p, before.get(p), offset) for p, offset in sorted(starts.items())]


class GroupReset:
    """The ``GroupAdmin`` half of :class:`~choreograph.brokers.sqlite.SqliteBroker`."""

    _store: Store

    def _check_open(self) -> None:
        raise NotImplementedError  # provided by SqliteBroker

    async def reset_group(self, topic: str, group: str, to: Position) -> list[PartitionReset]:
        """Move ``group`` on ``topic`` to ``to`` in one transaction; see :mod:`choreograph.core.group_admin`."""
        check_topic(topic), check_group(group)
        self._check_open()

        def work(batch: WriteBatch) -> list[PartitionReset]:
            batch.flush()  # resolve ``to`` against appends queued before this job
            return reset(batch.conn, topic, group, to)

        return await self._store.writer.run(work)

    async def group_positions(self, topic: str, group: str) -> dict[int, int]:
        """Return partition -> ``group``'s committed offset on ``topic`` (empty if it never read it)."""
        self._check_open()
        return await self._store.reader.run(
            lambda conn: dict(
                conn.execute(
                    "SELECT partition, committed FROM offsets WHERE topic = ? AND grp = ?", (topic, group)
                ).fetchall()
            ),
            "read group positions",
        )
