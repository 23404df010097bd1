"""Schema store backends: in memory, in the embedded broker's SQLite file, and a directory of files."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

from choreograph.core.errors import ConfigurationError
from choreograph.core.options import create_private_file, sqlite_file_path
from choreograph.schema.compatibility import Compatibility
from choreograph.schema.derive import fingerprint
from choreograph.schema.errors import SchemaConflict, SchemaStoreError
from choreograph.schema.store import SchemaRecord, SchemaStore, Subject, SubjectCheck

T = TypeVar("T")


def version_conflict(record: SchemaRecord, existing_fingerprint: str) -> SchemaConflict:
    """The error for a version registered again with another schema."""
    return SchemaConflict(
        f"{record.event_type} v{record.version} is already registered with a different schema "
        f"({existing_fingerprint[:19]} != {record.fingerprint[:19]}); registered versions are "
        "immutable: give the changed event a new version number and an upcaster"
    )


class MemorySchemaStore:
    """Keeps schemas in this process only. For tests and for the in-memory broker. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, dict[int, SchemaRecord]] = {}
        self._modes: dict[str, Compatibility] = {}

    def event_types(self) -> list[str]:
        """Return every known event type, sorted."""
        with self._lock:
            return sorted({*self._records, *self._modes})

    def subject(self, event_type: str) -> Subject:
        """Return a snapshot of the type's mode and versions."""
        with self._lock:
            return self._subject(event_type)

    def _subject(self, event_type: str) -> Subject:
        records = self._records.get(event_type, {})
        return Subject(event_type, self._modes.get(event_type), tuple(records[v] for v in sorted(records)))

    def add(self, record: SchemaRecord) -> bool:
        """Store ``record`` if its version is new (see :meth:`SchemaStore.add`)."""
        with self._lock:
            return self._add(record)

    def _add(self, record: SchemaRecord) -> bool:
        versions = self._records.setdefault(record.event_type, {})
        existing = versions.get(record.version)
        if existing is not None:
            if existing.fingerprint != record.fingerprint:
                raise version_conflict(record, existing.fingerprint)
            return False
        versions[record.version] = record
        return True

    def add_checked(self, record: SchemaRecord, check: SubjectCheck) -> Subject:
        """Add ``record`` if ``check`` passes, both under the store's lock (see :class:`CheckedSchemaStore`)."""
        with self._lock:
            check(self._subject(record.event_type))
            self._add(record)
            return self._subject(record.event_type)

    def set_mode(self, event_type: str, mode: Compatibility) -> None:
        """Set the type's compatibility mode."""
        with self._lock:
            self._modes[event_type] = mode


_SQLITE_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS schemas (
    event_type    TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    fingerprint   TEXT    NOT NULL,
    schema        TEXT    NOT NULL,
    registered_at REAL    NOT NULL,
    PRIMARY KEY (event_type, version)
);
CREATE TABLE IF NOT EXISTS schema_modes (
    event_type TEXT PRIMARY KEY,
    mode       TEXT NOT NULL
);
"""


def sqlite_path_from_url(url: str) -> str:
    """Return the file path of a ``sqlite:///path.db`` broker URL (query options are the broker's)."""
    return sqlite_file_path(url)


class SqliteSchemaStore:
    """Keeps schemas in a ``schemas`` table of the embedded broker's SQLite file.

    Opens its own connection (WAL mode, busy timeout), so it can sit next to a
    running broker and in several processes at once. Every method blocks on
    the database and is safe to call from several threads. ``add`` runs in an
    immediate transaction, so concurrent registrations of one version cannot
    both win.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        create_private_file(self.path)  # 0600: the same file as the broker's, often
        try:
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.executescript(_SQLITE_SCHEMA)
        except sqlite3.Error as exc:
            raise SchemaStoreError(f"cannot open schema store {self.path!r}: {exc}") from exc

    @classmethod
    def from_url(cls, url: str) -> SqliteSchemaStore:
        """Open the store in the file of a ``sqlite:///path.db`` broker URL."""
        return cls(sqlite_path_from_url(url))

    def _run(self, action: str, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                return work(self._conn)
            except sqlite3.Error as exc:
                raise SchemaStoreError(f"schema store {self.path!r}: cannot {action}: {exc}") from exc

    def event_types(self) -> list[str]:
        """Return every event type with a version or a mode, sorted."""

        def work(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT event_type FROM schemas UNION SELECT event_type FROM schema_modes ORDER BY 1"
            ).fetchall()
            return [str(r[0]) for r in rows]

        return self._run("list event types", work)

    @staticmethod
    def _read_subject(conn: sqlite3.Connection, event_type: str) -> Subject:
        rows = conn.execute(
            "SELECT version, fingerprint, schema, registered_at FROM schemas WHERE event_type = ? ORDER BY version",
            (event_type,),
        ).fetchall()
        mode_row = conn.execute("SELECT mode FROM schema_modes WHERE event_type = ?", (event_type,)).fetchone()
        records = tuple(SchemaRecord(event_type, int(v), json.loads(s), str(fp), float(at)) for v, fp, s, at in rows)
        return Subject(event_type, Compatibility(mode_row[0]) if mode_row else None, records)

    def subject(self, event_type: str) -> Subject:
        """Return the type's mode and versions, read in one transaction."""

        def work(conn: sqlite3.Connection) -> Subject:
            conn.execute("BEGIN")
            try:
                return self._read_subject(conn, event_type)
            finally:
                conn.execute("COMMIT")

        return self._run(f"read {event_type}", work)

    def add(self, record: SchemaRecord) -> bool:
        """Insert ``record`` if its version is new (see :meth:`SchemaStore.add`)."""
        return self._add(record, None)[0]

    def add_checked(self, record: SchemaRecord, check: SubjectCheck) -> Subject:
        """Add ``record`` if ``check`` passes, in one write transaction (see :class:`CheckedSchemaStore`).

        The transaction takes SQLite's write lock before reading, so a writer in
        another process waits until this check and insert have committed.
        """
        return self._add(record, check)[1]

    def _add(self, record: SchemaRecord, check: SubjectCheck | None) -> tuple[bool, Subject]:
        def work(conn: sqlite3.Connection) -> tuple[bool, Subject]:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if check is not None:
                    check(self._read_subject(conn, record.event_type))
                row = conn.execute(
                    "SELECT fingerprint FROM schemas WHERE event_type = ? AND version = ?",
                    (record.event_type, record.version),
                ).fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO schemas (event_type, version, fingerprint, schema, registered_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (
                            record.event_type,
                            record.version,
                            record.fingerprint,
                            json.dumps(record.schema),
                            record.registered_at if record.registered_at is not None else time.time(),
                        ),
                    )
                after = self._read_subject(conn, record.event_type) if check is not None else Subject(record.event_type)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            if row is not None and row[0] != record.fingerprint:
                raise version_conflict(record, str(row[0]))
            return row is None, after

        return self._run(f"add {record.event_type} v{record.version}", work)

    def set_mode(self, event_type: str, mode: Compatibility) -> None:
        """Set the type's compatibility mode."""

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO schema_modes (event_type, mode) VALUES (?, ?) "
                "ON CONFLICT (event_type) DO UPDATE SET mode = excluded.mode",
                (event_type, mode.value),
            )

        self._run(f"set the mode of {event_type}", work)

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SqliteSchemaStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_VERSION_FILE: Final = re.compile(r"^v([1-9][0-9]*)\.json$")
MODE_FILE: Final = "compatibility.json"


def schema_json(schema: Mapping[str, Any]) -> str:
    """Return the file form of a schema: indented JSON, field order kept, trailing newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


class DirectorySchemaStore:
    """Keeps schemas as files, ``<root>/<type>/v<N>.json``, for review in git.

    The mode of a type lives in ``<root>/<type>/compatibility.json``. Files
    are written atomically (temporary file, then a hard link that fails if the
    version exists), so concurrent writers cannot overwrite each other.
    ``registered_at`` is not kept.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _dir(self, event_type: str) -> Path:
        if "/" in event_type or "\\" in event_type or event_type in ("", ".", ".."):
            raise SchemaStoreError(f"event type {event_type!r} cannot be a directory name")
        return self.root / event_type

    def event_types(self) -> list[str]:
        """Return the type directories that hold a version or a mode file, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            d.name
            for d in self.root.iterdir()
            if d.is_dir() and any(_VERSION_FILE.match(f.name) or f.name == MODE_FILE for f in d.iterdir())
        )

    def subject(self, event_type: str) -> Subject:
        """Read the type's version files and mode file."""
        directory = self._dir(event_type)
        if not directory.is_dir():
            return Subject(event_type)
        records: list[SchemaRecord] = []
        for path in directory.iterdir():
            match = _VERSION_FILE.match(path.name)
            if match:
                schema = self._read(path)
                records.append(SchemaRecord(event_type, int(match.group(1)), schema, fingerprint(schema)))
        mode: Compatibility | None = None
        mode_path = directory / MODE_FILE
        if mode_path.exists():
            text = self._read(mode_path).get("compatibility")
            try:
                mode = Compatibility.parse(str(text))
            except ConfigurationError as exc:
                raise SchemaStoreError(f"{mode_path}: {exc}") from exc
        return Subject(event_type, mode, tuple(sorted(records, key=lambda r: r.version)))

    def add(self, record: SchemaRecord) -> bool:
        """Write ``<type>/v<N>.json`` unless it exists (see :meth:`SchemaStore.add`)."""
        path = self._dir(record.event_type) / f"v{record.version}.json"
        try:
            self._write_new(path, schema_json(record.schema))
        except FileExistsError:
            existing = fingerprint(self._read(path))
            if existing != record.fingerprint:
                raise version_conflict(record, existing) from None
            return False
        return True

    def set_mode(self, event_type: str, mode: Compatibility) -> None:
        """Write ``<type>/compatibility.json``."""
        path = self._dir(event_type) / MODE_FILE
        text = json.dumps({"event_type": event_type, "compatibility": mode.value}, indent=2) + "\n"
        tmp = self._temp(path, text)
        os.replace(tmp, path)

    def _temp(self, path: Path, text: str) -> str:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise SchemaStoreError(f"cannot write {path}: {exc}") from exc
        return tmp

    def _write_new(self, path: Path, text: str) -> None:
        tmp = self._temp(path, text)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError as exc:
            raise SchemaStoreError(f"cannot write {path}: {exc}") from exc
        finally:
            os.unlink(tmp)

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SchemaStoreError(f"cannot read {path}: {exc}") from exc
        if not isinstance(doc, dict):
            raise SchemaStoreError(f"{path} does not hold a JSON object")
        return doc


def sync_stores(source: SchemaStore, target: SchemaStore) -> list[SchemaRecord]:
    """Copy every version and mode from ``source`` into ``target``; return the records added.

    Idempotent: versions already in ``target`` with the same schema are skipped;
    a different schema under the same version raises SchemaConflict.
    """
    added: list[SchemaRecord] = []
    for event_type in source.event_types():
        subject = source.subject(event_type)
        if subject.mode is not None:
            target.set_mode(event_type, subject.mode)
        added += [r for r in subject.records if target.add(r)]
    return added
