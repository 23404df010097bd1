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

from choreograph.core.broker import Delivery, Position, Record
from choreograph.core.enums import StartKind

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
    rows = []
    for partition, record in zip(
        batch.round_robin.assign(topic, [r.key for r in records], count), records, strict=True
    ):
        key = record.key
        offset = offsets[partition]
        offsets[partition] = offset + 1
        headers = encode_headers(record.headers) if record.headers else None
        rows.append((topic, partition, offset, key, bytes(record.value), headers, now))
    batch.conn.executemany(INSERT_RECORD, rows)


def read_partition(conn: sqlite3.Connection, topic: str, partition: int, start: int, limit: int) -> list[Delivery]:
    """Return up to ``limit`` records of one partition from offset ``start``, in offset order.

    Never fails on a row another program wrote into the file (see :func:`translate_row`).
    """
    try:
        rows = conn.execute(SELECT_RECORDS, (topic, partition, start, limit)).fetchall()
    except sqlite3.OperationalError as exc:
        if "decode" not in str(exc):
            raise
        # text that is not UTF-8 (sqlite3 refuses to decode it): read key and headers as bytes, decode what we can
        raw = conn.execute(SELECT_RAW_RECORDS, (topic, partition, start, limit)).fetchall()
        rows = [(offset, _utf8(key), value, _utf8(headers), ts) for offset, key, value, headers, ts in raw]
    return [translate_row(topic, partition, *row) for row in rows]


def _utf8(raw: bytes | None) -> str | bytes | None:
    try:
        return raw.decode() if raw is not None else None
    except UnicodeDecodeError:
        return raw


SELECT_RAW_RECORDS = (
    "SELECT offset, CAST(key AS BLOB), value, CAST(headers AS BLOB), ts FROM records"
    " WHERE topic = ? AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?"
)


def translate_row(topic: str, partition: int, offset: int, key: object, value: object, headers: object,
                  ts: object) -> Delivery:  # fmt: skip
    """Return the delivery of one ``records`` row; never raises.

    A row this module did not write — a key that is not text or not UTF-8,
    headers that are not a JSON object of strings, a value that is not a
    blob, a timestamp that is not a number — is a delivery with ``fault``
    saying what is wrong, its key and headers as far as they could be read.
    """
    if (key is None or type(key) is str) and type(value) is bytes and type(ts) is float:
        if headers is None:
            return Delivery(topic, partition, offset, value, key, NO_HEADERS, ts)
        if type(headers) is str:
            parsed = _headers(headers)
            if parsed is not None:
                return Delivery(topic, partition, offset, value, key, parsed, ts)
    faults: list[str] = []
    text_key = None if key is None else _text(key, "key", faults)
    body = value if type(value) is bytes else _text(value, "value", faults).encode()
    found: Mapping[str, str] = NO_HEADERS
    if headers is not None:
        raw_headers = _text(headers, "headers", faults)
        found = _headers(raw_headers) or NO_HEADERS
        if raw_headers and found is NO_HEADERS:
            faults.append("headers are not a JSON object of strings")
    stamp = ts if type(ts) is float else 0.0
    if type(ts) is int:
        stamp = float(ts)
    elif type(ts) is not float:
        faults.append("timestamp is not a number")
    fault = "; ".join(faults) or None
    return Delivery(topic, partition, offset, body, text_key, found, stamp, fault=fault)


def _headers(text: str) -> Mapping[str, str] | None:
    """The headers JSON ``text`` holds, or None if it is not an object of strings that encode as UTF-8."""
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(parsed, dict) or not all(type(v) is str for v in parsed.values()):
        return None
    if "\\u" in text:  # escapes may make lone surrogates, which cannot be stored again
        try:
            "".join((*parsed, *parsed.values())).encode()
        except UnicodeEncodeError:
            return None
    return parsed


def _text(raw: object, what: str, faults: list[str]) -> str:
    """``raw`` as text: bytes decoded (not UTF-8: a fault, shown as ``\\xNN``), anything else a fault."""
    if type(raw) is str:
        return raw
    if isinstance(raw, bytes):
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            faults.append(f"{what} is not UTF-8")
            return raw.decode("utf-8", "backslashreplace")
        if what == "key":
            faults.append("key is stored as a blob, not text")
        return text
    faults.append(f"{what} is a {type(raw).__name__}, not text")
    return str(raw)


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
        if position.kind == StartKind.LATEST:
            starts[partition] = end
        elif position.kind == StartKind.TIME:
            row = conn.execute(
                "SELECT MIN(offset) FROM records WHERE topic = ? AND partition = ? AND ts >= ?",
                (topic, partition, position.time),
            ).fetchone()
            starts[partition] = end if row[0] is None else int(row[0])
        elif position.kind == StartKind.OFFSETS and position.offsets is not None and partition in position.offsets:
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
