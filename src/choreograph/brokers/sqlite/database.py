"""The SQLite file: connections, schema, and translation of sqlite3 errors.

Every table that is appended to in key order is ``WITHOUT ROWID`` with the
natural key as primary key, so an insert lands at the right edge of one
b-tree instead of updating a rowid table and a separate index.
"""

from __future__ import annotations

import os
import sqlite3
import stat

from choreograph.core.errors import BrokerError, BrokerUnavailable, ConfigurationError, StorageLost
from choreograph.core.options import create_private_file

from .config import SqliteConfig

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- one row per partition; next_offset is the offset the next append gets
CREATE TABLE IF NOT EXISTS partitions (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;

-- the log: append-only per (topic, partition), trimmed from the front
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    key TEXT,
    value BLOB NOT NULL,
    headers TEXT,
    ts REAL NOT NULL,
    PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;

-- committed offset of a group per partition: the next offset to deliver
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    partition INTEGER NOT NULL,
    committed INTEGER NOT NULL,
    PRIMARY KEY (topic, grp, partition)
) WITHOUT ROWID;

-- generation is bumped whenever membership or lease ownership changes, so
-- members can notice with one cheap read and rebalance early
CREATE TABLE IF NOT EXISTS groups (
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (topic, grp)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS members (
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    member TEXT NOT NULL,
    heartbeat_at REAL NOT NULL,
    PRIMARY KEY (topic, grp, member)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS leases (
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    partition INTEGER NOT NULL,
    member TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (topic, grp, partition)
) WITHOUT ROWID;

-- records a group will see again: nacked with a delay, or resubmitted dead
-- letters. They carry their own bytes (a resubmission may replace them, and
-- retention may trim the log record meanwhile).
CREATE TABLE IF NOT EXISTS retries (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    first_failure REAL,
    due_at REAL NOT NULL,
    key TEXT,
    value BLOB NOT NULL,
    headers TEXT,
    ts REAL NOT NULL,
    PRIMARY KEY (grp, topic, partition, offset)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS retries_due ON retries (grp, topic, due_at);

-- dedupe keys "source\\x1fUUIDv7": time ordered, so inserts append
CREATE TABLE IF NOT EXISTS inbox (
    grp TEXT NOT NULL,
    key TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (grp, key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    handler TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    key TEXT,
    value BLOB NOT NULL,
    headers TEXT,
    event_id TEXT,
    event_type TEXT,
    reason TEXT NOT NULL,
    error_type TEXT NOT NULL,
    error_message TEXT NOT NULL,
    stack TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_failure REAL NOT NULL,
    last_failure REAL NOT NULL,
    status TEXT NOT NULL,
    stored_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_group ON dead_letters (grp, status);
-- covers dead_letter_counts (metrics scrapes): counting never walks the rows' value overflow pages
CREATE INDEX IF NOT EXISTS dead_letters_counts ON dead_letters (status, topic, grp, reason);
"""


def connect(path: str, config: SqliteConfig, *, writer: bool = False) -> sqlite3.Connection:
    """Open a connection in autocommit mode (transactions are explicit), WAL, busy timeout set.

    Each connection is used by one thread only. The writer connection also
    sets the durability (``synchronous``) and creates the schema. A new file
    is created readable and writable by its owner only (0600); SQLite gives
    its ``-wal`` and ``-shm`` files the same mode. An existing file keeps its mode.
    Refuses (ConfigurationError) a directory every user may write to without
    the sticky bit: anyone could replace the file or its ``-wal`` there.
    """
    check_directory(path)
    create_private_file(path)
    try:
        conn = sqlite3.connect(path, timeout=config.busy_timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise BrokerUnavailable(f"cannot open SQLite broker file {path!r}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(config.busy_timeout * 1000)}")
        if writer:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise BrokerUnavailable(f"SQLite file {path!r} cannot use WAL mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {config.sync.upper()}")
            # Deleted rows (trimmed records, deleted dead letters) are overwritten with zeros, not left
            # readable in free pages: they may hold personal data that must be erasable.
            conn.execute("PRAGMA secure_delete = ON")
            conn.executescript(SCHEMA)
            conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
    except sqlite3.Error as exc:
        conn.close()
        raise BrokerUnavailable(f"cannot use SQLite broker file {path!r}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def check_directory(path: str) -> None:
    """Raise ConfigurationError if the directory of ``path`` is writable by every user and not sticky.

    In such a directory any local user may delete or rename the database, its
    ``-wal`` or ``-shm`` file and put their own in its place (forged records,
    dead letters); the sticky bit (``/tmp``) stops that. A directory that
    cannot be examined is left for SQLite's own open to report.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(directory).st_mode
    except OSError:
        return
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        raise ConfigurationError(
            f"the directory {directory!r} of the SQLite broker file is writable by every user "
            f"(mode {stat.S_IMODE(mode):04o}, no sticky bit): anyone on this machine could replace the database "
            f"or its -wal file; run 'chmod o-w {directory}' (or 'chmod +t'), or keep the database in a directory "
            "only this service can write"
        )


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the write-ahead log into the database and truncate it to zero bytes (outside a transaction).

    Waits up to the busy timeout for readers; if one still holds an old
    snapshot, the log is copied as far as possible and a later checkpoint
    finishes. Raises sqlite3.Error.
    """
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def translate(exc: sqlite3.Error, path: str, action: str) -> BrokerError:
    """Return the choreograph error for a sqlite3 error raised while doing ``action``."""
    message = f"SQLite broker {path!r}: {action} failed: {exc}"
    code = getattr(exc, "sqlite_errorname", "")
    if code == "SQLITE_FULL":
        message = (
            f"SQLite broker {path!r}: {action} failed: the disk is full, or the file reached its size limit "
            f"({exc}); nothing of this write was kept, what was acknowledged before is intact, and writes "
            "go through again once there is space"
        )
    if isinstance(exc, sqlite3.OperationalError) and (
        "unable to open" in str(exc) or code in {"SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_FULL"}
    ):
        return BrokerUnavailable(message)
    if isinstance(exc, sqlite3.DatabaseError) and code in {"SQLITE_CORRUPT", "SQLITE_NOTADB"}:
        return BrokerUnavailable(message)
    return BrokerError(message)


_HEADER = b"SQLite format 3\x00"


class StorageCheck:
    """Notices that the file under an open connection was deleted, replaced or truncated.

    An open SQLite connection keeps writing into its file descriptor whatever
    happens to the path: a deleted file goes on taking (and acknowledging)
    writes into an inode nobody will ever open again. :meth:`check` compares
    the path with the file opened (device and inode, one ``stat``); when the
    file got smaller it also reads the header, and fails if the file is
    shorter than the database it declares (a checkpointed database never is).
    Cheap enough to run before every write transaction. Not thread-safe: one
    per thread.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        opened = os.stat(path)
        self._identity = (opened.st_dev, opened.st_ino)
        self._size = opened.st_size

    def check(self) -> None:
        """Raise StorageLost, naming the path and what happened, if the file is not the one opened, intact."""
        try:
            now = os.stat(self._path)
        except FileNotFoundError:
            raise StorageLost(f"SQLite broker file {self._path!r} no longer exists (deleted or moved away)") from None
        except OSError as exc:
            raise StorageLost(f"SQLite broker file {self._path!r} cannot be checked: {exc}") from exc
        if (now.st_dev, now.st_ino) != self._identity:
            raise StorageLost(f"SQLite broker file {self._path!r} was replaced by another file while open")
        if now.st_size < self._size:
            declared = _declared_size(self._path)
            if declared is None or now.st_size < declared:
                raise StorageLost(
                    f"SQLite broker file {self._path!r} was truncated while open "
                    f"({now.st_size} bytes, its header declares {declared if declared is not None else 'none'})"
                )
        self._size = now.st_size


def _declared_size(path: str) -> int | None:
    """The size in bytes the header of the database file ``path`` declares, or None without a valid header."""
    try:
        with open(path, "rb") as file:
            header = file.read(32)
    except OSError:
        return None
    if len(header) < 32 or not header.startswith(_HEADER):
        return None
    page_size = int.from_bytes(header[16:18], "big")
    pages = int.from_bytes(header[28:32], "big")
    return (65536 if page_size == 1 else page_size) * pages
