"""The partitioned append-only log: appending, reading, and resolving start positions.

Offsets are dense per (topic, partition) and start at 0; retention removes
records from the front only. A record's partition is ``partition_for(key)``;
unkeyed records go round-robin (per topic, per writer process).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from choreograph.core.broker import Delivery, Position, Record, partition_for

from .writer import WriteBatch

NO_HEADERS: Mapping[str, str] = MappingProxyType({})

INSERT_RECORD = "INSERT INTO records (topic, partition, offset, key, value, headers, ts) VALUES (?, ?, ?, ?, ?, ?, ?)"
SELECT_RECORDS = (
    "SELECT offset, key, value, headers, ts FROM records"
    " WHERE topic = ? AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?"
)


def encode_headers(headers: Mapping[str, str]) -> str | None:
    """Return headers as compact JSON, or None when there are none (the common case)."""
    if not headers:
        return None
    return json.dumps(dict(headers), ensure_ascii=False, separators=(",", ":"))


def decode_headers(text: str | None) -> Mapping[str, str]:
    """Return the headers stored by :func:`encode_headers`."""
    if not text:
        return NO_HEADERS
    headers: dict[str, str] = json.loads(text)
    return headers


def append(batch: WriteBatch, topic: str, records: Sequence[Record], partitions: int, now: float) -> None:
    """Append ``records`` to ``topic`` inside ``batch``; same-key records keep their order.

    ``partitions`` applies only if the topic is new.
    """
    offsets = batch.next_offsets(topic, partitions)
    count = len(offsets)
    turn = batch.round_robin.get(topic, 0)
    rows = []
    for record in records:
        key = record.key
        if key is None:
            partition = turn % count
            turn += 1
        else:
            partition = partition_for(key, count)
        offset = offsets[partition]
        offsets[partition] = offset + 1
        headers = encode_headers(record.headers) if record.headers else None
        rows.append((topic, partition, offset, key, bytes(record.value), headers, now))
    batch.round_robin[topic] = turn
    batch.conn.executemany(INSERT_RECORD, rows)


def read_partition(conn: sqlite3.Connection, topic: str, partition: int, start: int, limit: int) -> list[Delivery]:
    """Return up to ``limit`` records of one partition from offset ``start``, in offset order."""
    rows = conn.execute(SELECT_RECORDS, (topic, partition, start, limit)).fetchall()
    return [
        Delivery(topic, partition, offset, value, key, decode_headers(headers) if headers else NO_HEADERS, ts)
        for offset, key, value, headers, ts in rows
    ]


def partition_ends(conn: sqlite3.Connection, topic: str) -> list[int]:
    """Return the next offset of each partition of ``topic`` (empty if the topic does not exist)."""
    rows = conn.execute("SELECT next_offset FROM partitions WHERE topic = ? ORDER BY partition", (topic,)).fetchall()
    return [row[0] for row in rows]


def first_offset(conn: sqlite3.Connection, topic: str, partition: int, end: int) -> int:
    """Return the oldest retained offset of a partition (``end`` if it is empty)."""
    row = conn.execute(
        "SELECT MIN(offset) FROM records WHERE topic = ? AND partition = ?", (topic, partition)
    ).fetchone()
    return end if row[0] is None else int(row[0])


def start_offsets(conn: sqlite3.Connection, topic: str, position: Position) -> dict[int, int]:
    """Resolve ``position`` to the first offset to read in each partition of ``topic``.

    ``at_time`` finds the first record stamped at or after the time (a scan of
    the partition: positions are resolved rarely, appends stay cheap without a
    time index). ``at_offsets`` starts partitions it does not name at earliest.
    """
    ends = partition_ends(conn, topic)
    starts: dict[int, int] = {}
    for partition, end in enumerate(ends):
        if position.kind == "latest":
            starts[partition] = end
        elif position.kind == "time":
            row = conn.execute(
                "SELECT MIN(offset) FROM records WHERE topic = ? AND partition = ? AND ts >= ?",
                (topic, partition, position.time),
            ).fetchone()
            starts[partition] = end if row[0] is None else int(row[0])
        elif position.kind == "offsets" and position.offsets is not None and partition in position.offsets:
            starts[partition] = max(0, min(int(position.offsets[partition]), end))
        else:
            starts[partition] = first_offset(conn, topic, partition, end)
    return starts


def read(conn: sqlite3.Connection, topic: str, position: Position, limit: int) -> list[Delivery]:
    """Return up to ``limit`` records from ``position`` in (partition, offset) order."""
    result: list[Delivery] = []
    for partition, start in start_offsets(conn, topic, position).items():
        if len(result) >= limit:
            break
        result.extend(read_partition(conn, topic, partition, start, limit - len(result)))
    return result
