"""Dead letters and retries as rows: storing, listing, resubmitting, purging.

A retry row is a record a group will see again: nacked with a delay, or a
resubmitted dead letter. It carries its own bytes, so a resubmission can
replace them and retention can trim the log record in the meantime. The
next delivery of a retry row has ``attempt = row.attempt + 1``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from choreograph.core.broker import PARK_DELAY, DeadLetter, Delivery
from choreograph.core.errors import NotFound
from choreograph.core.headers import DEAD_LETTER_ID_HEADER

from .log import decode_headers, encode_headers

COLUMNS = (
    "id, topic, grp, handler, partition, offset, key, value, headers, event_id, event_type, reason,"
    " error_type, error_message, stack, attempts, first_failure, last_failure, status"
)

UPSERT_RETRY = (
    "INSERT INTO retries (grp, topic, partition, offset, attempt, first_failure, due_at, key, value, headers, ts)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (grp, topic, partition, offset) DO UPDATE SET attempt = excluded.attempt,"
    " first_failure = excluded.first_failure, due_at = excluded.due_at, key = excluded.key,"
    " value = excluded.value, headers = excluded.headers, ts = excluded.ts"
)

DELETE_RETRY = "DELETE FROM retries WHERE grp = ? AND topic = ? AND partition = ? AND offset = ?"


def retry_row(group: str, delivery: Delivery, due_at: float, now: float) -> tuple[object, ...]:
    """Return the retry row for a failed ``delivery``; its first failure is kept, or set to ``now``."""
    first_failure = now if delivery.first_failure is None else delivery.first_failure
    return (
        group,
        delivery.topic,
        delivery.partition,
        delivery.offset,
        delivery.attempt,
        first_failure,
        due_at,
        delivery.key,
        delivery.value,
        encode_headers(delivery.headers),
        delivery.timestamp,
    )


def store(conn: sqlite3.Connection, letters: Iterable[DeadLetter], stored_at: float) -> None:
    """Insert dead letters; one already stored under the same id is kept as it is (idempotent)."""
    conn.executemany(
        f"INSERT OR IGNORE INTO dead_letters ({COLUMNS}, stored_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                dl.id,
                dl.topic,
                dl.group,
                dl.handler,
                dl.partition,
                dl.offset,
                dl.key,
                bytes(dl.value),
                encode_headers(dl.headers),
                dl.event_id,
                dl.event_type,
                dl.reason,
                dl.error_type,
                dl.error_message,
                dl.stack,
                dl.attempts,
                dl.first_failure,
                dl.last_failure,
                dl.status,
                stored_at,
            )
            for dl in letters
        ],
    )


_REFUSED_FOR_GOOD = frozenset({"SQLITE_TOOBIG"})
"""Errors of a dead-letter insert that trying again cannot mend: the row is over the database's length limit."""


def store_or_park(
    conn: sqlite3.Connection, group: str, letters: Sequence[tuple[Delivery, DeadLetter]], now: float
) -> list[tuple[Delivery, DeadLetter, str]]:
    """Store each dead letter; park the record of one the database refuses for good; return those parked.

    A dead letter is bigger than its record (it adds the error, the stack,
    the ids), so a record near SQLite's length limit can be accepted and its
    dead letter not. Such a record is *parked* rather than failing the whole
    settle: a retry row due in ``PARK_DELAY`` seconds keeps it (never acked
    into nothing) while the rest of its partition moves on. Any other error
    (a full disk, a lock) fails the settle as before: it may pass next time.
    """
    parked: list[tuple[Delivery, DeadLetter, str]] = []
    for delivery, letter in letters:
        conn.execute("SAVEPOINT dead_letter")
        try:
            store(conn, [letter], now)
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK TO dead_letter")
            conn.execute("RELEASE dead_letter")
            if getattr(exc, "sqlite_errorname", "") not in _REFUSED_FOR_GOOD:
                raise
            conn.execute(UPSERT_RETRY, retry_row(group, delivery, now + PARK_DELAY, now))
            parked.append((delivery, letter, str(exc)))
        else:
            conn.execute("RELEASE dead_letter")
    return parked


def _from_row(row: Sequence[Any]) -> DeadLetter:
    (id_, topic, grp, handler, partition, offset, key, value, headers, event_id, event_type, reason) = row[:12]
    (error_type, error_message, stack, attempts, first_failure, last_failure, status) = row[12:]
    header_map = dict(decode_headers(headers))
    return DeadLetter(
        id=str(id_),
        topic=str(topic),
        group=str(grp),
        handler=str(handler),
        partition=int(partition),
        offset=int(offset),
        key=None if key is None else str(key),
        value=bytes(value),
        headers=header_map,
        event_id=None if event_id is None else str(event_id),
        event_type=None if event_type is None else str(event_type),
        reason=str(reason),
        error_type=str(error_type),
        error_message=str(error_message),
        stack=str(stack),
        attempts=int(attempts),
        first_failure=float(first_failure),
        last_failure=float(last_failure),
        status=str(status),
        predecessor=header_map.get(DEAD_LETTER_ID_HEADER),  # the header its resubmission carried
    )


def select(conn: sqlite3.Connection, group: str | None, status: str | None, limit: int) -> list[DeadLetter]:
    """Return dead letters, oldest first, optionally of one group and/or status."""
    clauses, params = [], []
    if group is not None:
        clauses.append("grp = ?")
        params.append(group)
    if status is not None:
        clauses.append("status = ?")
        params.append(status)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(f"SELECT {COLUMNS} FROM dead_letters{where} ORDER BY seq LIMIT ?", (*params, limit))
    return [_from_row(row) for row in rows]


def counts(conn: sqlite3.Connection, status: str | None) -> dict[tuple[str, str, str], int]:
    """Return how many dead letters have ``status`` (``None``: any) per (topic, group, reason); reads no values."""
    where, params = ("WHERE status = ?", (status,)) if status is not None else ("", ())
    rows = conn.execute(
        f"SELECT topic, grp, reason, count(*) FROM dead_letters {where} GROUP BY topic, grp, reason", params
    )
    return {(str(topic), str(grp), str(reason)): int(n) for topic, grp, reason, n in rows}


def fetch_one(conn: sqlite3.Connection, dead_letter_id: str) -> DeadLetter:
    """Return one dead letter; raise NotFound if there is none with that id."""
    row = conn.execute(f"SELECT {COLUMNS} FROM dead_letters WHERE id = ?", (dead_letter_id,)).fetchone()
    if row is None:
        raise NotFound(f"no dead letter with id {dead_letter_id!r}")
    return _from_row(row)


def resubmit(conn: sqlite3.Connection, dead_letter_id: str, value: bytes | None, now: float) -> bool:
    """Mark an open dead letter resubmitted and schedule it for its group now; run in a write transaction.

    The retry row restarts the attempt count (the next delivery is attempt 1)
    and carries ``value`` if given, else the original bytes, and the original
    headers plus ``choreograph-dead-letter-id``. Returns False,
    changing nothing, if the entry is not ``open``.
    """
    letter = fetch_one(conn, dead_letter_id)
    updated = conn.execute(
        "UPDATE dead_letters SET status = 'resubmitted' WHERE id = ? AND status = 'open'", (dead_letter_id,)
    ).rowcount
    if not updated:
        return False
    conn.execute(
        UPSERT_RETRY,
        (
            letter.group,
            letter.topic,
            letter.partition,
            letter.offset,
            0,
            None,
            now,
            letter.key,
            letter.value if value is None else bytes(value),
            encode_headers({**letter.headers, DEAD_LETTER_ID_HEADER: letter.id}),
            now,
        ),
    )
    return True


def delete(conn: sqlite3.Connection, dead_letter_ids: Sequence[str] | None) -> int:
    """Delete entries, whatever their status (all if ``None``); return how many went.

    The writer connection runs with ``PRAGMA secure_delete``, so the rows'
    bytes are overwritten with zeros in the pages they leave.
    """
    if dead_letter_ids is None:
        return conn.execute("DELETE FROM dead_letters").rowcount
    return sum(conn.execute("DELETE FROM dead_letters WHERE id = ?", (i,)).rowcount for i in dead_letter_ids)


def expire(conn: sqlite3.Connection, stored_before: float) -> int:
    """Delete entries stored before ``stored_before``, whatever their status; return how many went."""
    return conn.execute("DELETE FROM dead_letters WHERE stored_at < ?", (stored_before,)).rowcount


def purge(conn: sqlite3.Connection, dead_letter_ids: Sequence[str] | None) -> int:
    """Mark entries purged (all open ones if ``None``); return how many changed."""
    if dead_letter_ids is None:
        return conn.execute("UPDATE dead_letters SET status = 'purged' WHERE status = 'open'").rowcount
    return sum(
        conn.execute(
            "UPDATE dead_letters SET status = 'purged' WHERE id = ? AND status != 'purged'", (dead_letter_id,)
        ).rowcount
        for dead_letter_id in dead_letter_ids
    )
