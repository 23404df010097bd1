"""Online backup and restore of the SQLite log file.

:func:`backup` copies a log file that workers may be writing to at the same
time, with SQLite's online backup API. The copy is one consistent snapshot:
the backup holds a read transaction on the source for its whole duration, so
every page comes from the same WAL snapshot (without it, each write by
another connection restarts the copy, and a busy log never finishes).
Workers are not blocked — in WAL mode readers and the writer do not wait for
each other — but no checkpoint can go past the snapshot until the backup
ends, so the WAL grows meanwhile. What was committed (published, settled,
recorded in the inbox) before the backup started is in it; what was
committed after is not.

:func:`restore` copies a backup over a log file. It refuses while members of
a consumer group heartbeated in that file within the lease timeout (workers
are probably using it), and refuses an existing file unless ``force`` is
set. It writes a temporary file next to the target, checks it, drops the
group members and partition leases of the backup's time (those processes
are gone; their leases would hold the partitions for a lease timeout), removes the
target's WAL and shared-memory files (a stale WAL replayed onto the restored
pages would corrupt it) and renames the temporary file into place, so a
failed restore leaves the old file as it was.

Both report progress through ``progress(copied_pages, total_pages)`` after
each step of ``step_pages`` pages; both are blocking: call them from a
thread when an event loop runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import time
from pathlib import Path
from typing import Final
from urllib.parse import quote

from choreograph.core.errors import BrokerUnavailable, ChoreographError
from choreograph.core.local_log import BackupSummary, Progress

from .database import SCHEMA_VERSION

DEFAULT_STEP_PAGES: Final = 1024
"""Pages copied per step (4 MiB with SQLite's default 4 KiB pages): how often progress is reported."""

_SIDE_FILES: Final = ("-wal", "-shm", "-journal")


class BackupError(ChoreographError):
    """A backup or restore was refused or failed; the message says why and what to do."""


def _close_quietly(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.close()


def _read_only(path: str) -> sqlite3.Connection:
    """Open ``path`` read-only (any character in the path: it is percent-encoded into the URI)."""
    return sqlite3.connect(f"file:{quote(Path(path).absolute().as_posix())}?mode=ro", uri=True, isolation_level=None)


def _copy(source: sqlite3.Connection, target: sqlite3.Connection, step_pages: int, progress: Progress | None) -> None:
    def report(status: int, remaining: int, total: int) -> None:
        if progress is not None:
            progress(total - remaining, total)

    source.backup(target, pages=step_pages, progress=report, sleep=0)
    # The copy carries the source's WAL flag; a backup is one self-contained file (a log
    # reopened by the broker switches back to WAL itself).
    target.execute("PRAGMA journal_mode = DELETE")


def inspect(path: str | os.PathLike[str]) -> BackupSummary:
    """Check that ``path`` is an intact choreograph log file and count what it holds.

    Runs ``PRAGMA quick_check`` and reads the schema version. Raises
    BackupError if the file is missing, not SQLite, damaged or not a
    choreograph log of a schema version this code reads.
    """
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise BackupError(f"{name!r} does not exist or is not a file")
    try:
        conn = _read_only(name)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {name!r}: {exc}") from exc
    try:
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"{name!r} is damaged: {check}")
        row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        if row is None or row[0] != str(SCHEMA_VERSION):
            found = "none" if row is None else row[0]
            raise BackupError(f"{name!r} has log schema version {found}, this choreograph reads {SCHEMA_VERSION}")

        def count(sql: str) -> int:
            return int(conn.execute(sql).fetchone()[0])

        return BackupSummary(
            path=name,
            pages=count("PRAGMA page_count"),
            page_size=count("PRAGMA page_size"),
            records=count("SELECT COUNT(*) FROM records"),
            committed_groups=count("SELECT COUNT(*) FROM (SELECT DISTINCT topic, grp FROM offsets)"),
            inbox_keys=count("SELECT COUNT(*) FROM inbox"),
            dead_letters=count("SELECT COUNT(*) FROM dead_letters"),
        )
    except sqlite3.DatabaseError as exc:  # not a database, or not a choreograph one (no meta table)
        raise BackupError(f"{name!r} is not a choreograph log file: {exc}") from exc
    finally:
        _close_quietly(conn)


def backup(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
    step_pages: int = DEFAULT_STEP_PAGES,
    overwrite: bool = False,
) -> BackupSummary:
    """Copy the log at ``source`` to ``target`` as one consistent snapshot; return what it holds.

    Safe while workers publish and settle on ``source`` (see the module
    docstring). ``target`` must not exist unless ``overwrite``; it is written
    through a temporary file, so a failed backup leaves no partial file.
    Raises BrokerUnavailable if ``source`` cannot be read, BackupError for
    a refused target or a copy that fails its check.
    """
    src_name, dst_name = os.fspath(source), os.fspath(target)
    if step_pages < 1:
        raise BackupError(f"step_pages must be at least 1, got {step_pages}")
    if not os.path.isfile(src_name):
        raise BrokerUnavailable(f"SQLite log file {src_name!r} does not exist")
    if os.path.exists(dst_name) and not overwrite:
        raise BackupError(f"{dst_name!r} already exists; choose another name, or overwrite it (--force)")
    if Path(dst_name).resolve() == Path(src_name).resolve():
        raise BackupError("the backup cannot be written over the log it copies")
    temporary = f"{dst_name}.partial"
    _remove_with_side_files(temporary)
    try:
        src = _read_only(src_name)
        src.execute("PRAGMA busy_timeout = 5000")
        src.execute("BEGIN")
        src.execute("SELECT COUNT(*) FROM meta").fetchone()  # takes the read snapshot now
    except sqlite3.Error as exc:
        raise BrokerUnavailable(f"cannot read SQLite log file {src_name!r}: {exc}") from exc
    try:
        dst = sqlite3.connect(temporary, isolation_level=None)
        try:
            _copy(src, dst, step_pages, progress)
        finally:
            _close_quietly(dst)
    except sqlite3.Error as exc:
        _remove_with_side_files(temporary)
        raise BackupError(f"backup of {src_name!r} to {dst_name!r} failed: {exc}") from exc
    finally:
        _close_quietly(src)
    try:
        summary = inspect(temporary)
        os.replace(temporary, dst_name)
    finally:
        _remove_with_side_files(temporary)
    return dataclasses.replace(summary, path=dst_name)


def live_members(path: str | os.PathLike[str], *, within: float, now: float | None = None) -> list[str]:
    """Return ``group/member`` of every member that heartbeated in the log at ``path`` within ``within`` seconds.

    Leases run on wall-clock time (``time.time()``), so this is how another
    process on the machine tells whether workers are using the file. A
    process killed less than ``within`` seconds ago still counts.
    """
    name = os.fspath(path)
    now = time.time() if now is None else now
    try:
        conn = _read_only(name)
        try:
            rows = conn.execute(
                "SELECT grp, member FROM members WHERE heartbeat_at > ? ORDER BY grp, member", (now - within,)
            ).fetchall()
        finally:
            _close_quietly(conn)
    except sqlite3.Error:  # no members table: not a log in use by workers of this version
        return []
    return [f"{group}/{member}" for group, member in rows]


def restore(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    force: bool = False,
    lease_timeout: float = 10.0,
    progress: Progress | None = None,
    step_pages: int = DEFAULT_STEP_PAGES,
) -> BackupSummary:
    """Replace the log at ``target`` with the backup at ``source``; return what it now holds.

    Refuses (BackupError) if the backup fails its check, if members
    heartbeated in ``target`` within ``lease_timeout`` seconds (stop the
    workers first: their open connections would keep writing to the replaced
    file), or if ``target`` exists and ``force`` is not set. Workers started
    after the restore resume from the offsets, inbox, retries and dead
    letters of the backup: what they handled after the backup was taken is
    delivered again, and what the backup's inbox holds is still dropped. The
    backup's group members and partition leases are dropped (their processes
    are gone), so resumed workers take the partitions at once.
    """
    src_name, dst_name = os.fspath(source), os.fspath(target)
    inspect(src_name)
    if Path(dst_name).exists() and Path(dst_name).resolve() == Path(src_name).resolve():
        raise BackupError("a backup cannot be restored over itself")
    if os.path.exists(dst_name):
        busy = live_members(dst_name, within=lease_timeout)
        if busy:
            shown = ", ".join(busy[:5]) + (f" and {len(busy) - 5} more" if len(busy) > 5 else "")
            raise BackupError(
                f"{dst_name!r} is in use: {len(busy)} consumer(s) heartbeated in the last {lease_timeout:g} s"
                f" ({shown}); stop the workers, wait for their leases to expire, then restore"
            )
        if not force:
            raise BackupError(f"{dst_name!r} already exists; restoring replaces it (use --force to do so)")
    temporary = f"{dst_name}.restoring"
    _remove_with_side_files(temporary)
    try:
        src = _read_only(src_name)
        dst = sqlite3.connect(temporary, isolation_level=None)
        try:
            _copy(src, dst, step_pages, progress)
        finally:
            _close_quietly(dst)
            _close_quietly(src)
        summary = inspect(temporary)
        _forget_members(temporary)
        for suffix in _SIDE_FILES:  # never let an old WAL be replayed onto the restored pages
            with contextlib.suppress(FileNotFoundError):
                os.remove(dst_name + suffix)
        os.replace(temporary, dst_name)
    except sqlite3.Error as exc:
        raise BackupError(f"restore of {src_name!r} to {dst_name!r} failed: {exc}") from exc
    finally:
        _remove_with_side_files(temporary)
    return dataclasses.replace(summary, path=dst_name)


def _forget_members(path: str) -> None:
    """Drop the group members and partition leases the backup recorded.

    No process of the backup's time is alive in the restored log (restore
    refuses while workers run), yet their leases look fresh: without this,
    resumed workers would wait a lease timeout before taking the partitions.
    Committed offsets, retries, the inbox and dead letters are kept.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM leases")
        conn.execute("DELETE FROM members")
        conn.execute("UPDATE groups SET generation = generation + 1")
        conn.execute("COMMIT")
    finally:
        _close_quietly(conn)


def _remove_with_side_files(path: str) -> None:
    for suffix in ("", *_SIDE_FILES):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)
