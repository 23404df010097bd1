"""A schema store on any broker's key-value store: one document per event type, changed by compare-and-set.

:class:`KeyValueSchemaStore` keeps each event type's history (its mode and
every version's schema) as one JSON document in a
:class:`~choreograph.core.kv.KeyValueStore` namespace (``schemas`` by
default): a NATS KV bucket, a Redis hash, a Kafka compacted topic, a SQLite
table. Every change reads the document, decides, and writes it back with
``expect=<the revision read>``; when another process wrote it in between the
write fails with :class:`~choreograph.core.kv.KeyConflict`, and the change is
decided again on the new document. So two processes registering versions of
one type at the same moment end with one history that both see, and a version
incompatible with that history is refused wherever it is registered: the
registry's check runs inside the loop (:meth:`KeyValueSchemaStore.add_checked`).

The store is synchronous, as :class:`~choreograph.schema.store.SchemaStore`
is, while key-value stores are asynchronous: each call runs a coroutine on a
:class:`LoopThread`, an event loop in a thread of its own that holds the
broker connection the store uses. A call blocks its caller for the round
trips it needs (one read and one write when nobody races), from any thread,
including a thread that runs another event loop. A broker that cannot be
reached raises its :class:`~choreograph.core.errors.BrokerError`, as the log
does; an unreadable document or a history over the size limit raises
:class:`~choreograph.schema.errors.SchemaStoreError`.

Keys: ``t.<event type>`` (types up to 198 characters, the key limit), else
``h.<sha256 of the type>``; the document always names its type. A document
is at most 512 KiB (the key-value limit): about a hundred versions of a
typical event schema.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar

from choreograph.core.errors import BrokerError, BrokerUnavailable, ChoreographError, ConfigurationError
from choreograph.core.kv import MAX_KEY_LENGTH, Entry, KeyConflict, KeyValueStore
from choreograph.schema.compatibility import Compatibility
from choreograph.schema.errors import SchemaError, SchemaStoreError
from choreograph.schema.store import SchemaRecord, Subject, SubjectCheck
from choreograph.schema.stores import version_conflict

T = TypeVar("T")

NAMESPACE: Final = "schemas"
"""The key-value namespace the registry uses unless told otherwise."""
MAX_ATTEMPTS: Final = 64
"""Compare-and-set rounds before a change gives up (each lost round means another writer's change went in)."""
CALL_TIMEOUT: Final = 60.0
"""Seconds one store call may take (its round trips to the broker) before it fails."""
_TYPE_PREFIX: Final = "t."
_HASH_PREFIX: Final = "h."


class LoopThread:
    """An event loop running in a daemon thread of its own; :meth:`run` runs a coroutine there and waits.

    Thread-safe. Calling :meth:`run` from the loop's own thread would wait for
    itself: it raises instead.
    """

    def __init__(self, name: str = "choreograph-store") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self._closed = False

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = CALL_TIMEOUT) -> T:
        """Run ``coro`` on the loop and return its result (or raise what it raised)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LoopThread.run called from its own loop; await the coroutine instead")
        if self._closed:
            coro.close()
            raise SchemaStoreError("the schema store is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise BrokerUnavailable(f"the broker did not answer the schema store within {timeout:g} s") from None

    def close(self) -> None:
        """Stop the loop and join the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def subject_key(event_type: str) -> str:
    """The key of ``event_type``'s document."""
    if len(_TYPE_PREFIX) + len(event_type) <= MAX_KEY_LENGTH:
        return _TYPE_PREFIX + event_type
    return _HASH_PREFIX + hashlib.sha256(event_type.encode()).hexdigest()


def encode_subject(subject: Subject) -> bytes:
    """The document form of ``subject`` (JSON)."""
    doc = {
        "event_type": subject.event_type,
        "mode": subject.mode.value if subject.mode is not None else None,
        "versions": [
            {
                "version": r.version,
                "fingerprint": r.fingerprint,
                "schema": r.schema,
                "registered_at": r.registered_at,
            }
            for r in subject.records
        ],
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def decode_subject(key: str, raw: bytes) -> Subject:
    """Read a document written by :func:`encode_subject`; SchemaStoreError naming the key if it is not one."""
    try:
        doc = json.loads(raw)
        mode = doc["mode"]
        records = tuple(
            SchemaRecord(
                str(doc["event_type"]),
                int(v["version"]),
                dict(v["schema"]),
                str(v["fingerprint"]),
                None if v.get("registered_at") is None else float(v["registered_at"]),
            )
            for v in doc["versions"]
        )
        return Subject(
            str(doc["event_type"]),
            None if mode is None else Compatibility(mode),
            tuple(sorted(records, key=lambda r: r.version)),
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SchemaStoreError(f"schema document {key!r} is not readable: {type(exc).__name__}: {exc}") from exc


Change = Callable[[Subject], Subject | None]
"""Given the current subject, the subject to write, or None to write nothing."""


class KeyValueSchemaStore:
    """A :class:`~choreograph.schema.store.CheckedSchemaStore` on a key-value store (see the module).

    ``run`` runs a coroutine to completion from synchronous code (usually
    :meth:`LoopThread.run`); ``on_close`` (a coroutine function) is awaited
    through it by :meth:`close`, for a store that owns its broker connection.
    Safe to call from several threads and processes at once.
    """

    def __init__(
        self,
        kv: KeyValueStore,
        run: Callable[[Coroutine[Any, Any, Any]], Any],
        *,
        on_close: Callable[[], Awaitable[None]] | None = None,
        where: str = "the broker's key-value store",
    ) -> None:
        self.kv = kv
        self._run = run
        self._on_close = on_close
        self.where = where
        self.conflicts = 0
        """Compare-and-set writes this store lost to another writer (each one decided again on the newer history)."""
        self._closed = False
        self._lock = threading.Lock()

    def _call(self, action: str, coro: Coroutine[Any, Any, T]) -> T:
        try:
            result: T = self._run(coro)
        except (SchemaError, BrokerError):  # refused by the check, a conflict, unreadable; the broker's own errors
            raise
        except OSError as exc:  # a client library's own connection error
            raise BrokerUnavailable(f"schema store in {self.where}: cannot {action}: {exc}") from exc
        except ChoreographError as exc:  # ConfigurationError: a history over the value size limit
            raise SchemaStoreError(f"schema store in {self.where}: cannot {action}: {exc}") from exc
        return result

    # -- reading -----------------------------------------------------------------------------

    def event_types(self) -> list[str]:
        """Return every event type with a version or a mode, sorted (one listing, plus a read per long name)."""

        async def work() -> list[str]:
            names = [key[len(_TYPE_PREFIX) :] for key in await self.kv.keys(_TYPE_PREFIX)]
            for key in await self.kv.keys(_HASH_PREFIX):
                entry = await self.kv.get(key)
                if entry is not None:
                    names.append(decode_subject(key, entry.value).event_type)
            return sorted(names)

        return self._call("list event types", work())

    def subject(self, event_type: str) -> Subject:
        """Return the type's mode and versions: one read of its document, so a consistent snapshot."""
        return self._call(f"read {event_type}", self._read(event_type))[0]

    async def _read(self, event_type: str) -> tuple[Subject, int]:
        key = subject_key(event_type)
        entry: Entry | None = await self.kv.get(key)
        if entry is None:
            return Subject(event_type), 0
        return decode_subject(key, entry.value), entry.revision

    # -- writing -----------------------------------------------------------------------------

    async def _change(self, event_type: str, change: Change) -> Subject:
        """Apply ``change`` by compare-and-set on the type's document, again on the new one after a lost race."""
        key = subject_key(event_type)
        for _ in range(MAX_ATTEMPTS):
            current, revision = await self._read(event_type)
            wanted = change(current)
            if wanted is None:
                return current
            try:
                await self.kv.put(key, encode_subject(wanted), expect=revision)
            except KeyConflict:
                self.conflicts += 1
                continue  # another writer changed the type: decide again on what it wrote
            return wanted
        raise SchemaStoreError(
            f"{event_type}: gave up after {MAX_ATTEMPTS} concurrent changes to its schema history; try again"
        )

    def add(self, record: SchemaRecord) -> bool:
        """Add ``record`` unless its version exists (see :meth:`SchemaStore.add`)."""
        added = False

        def change(subject: Subject) -> Subject | None:
            nonlocal added
            wanted = _with_record(subject, record)
            added = wanted is not None
            return wanted

        self._call(f"add {record.event_type} v{record.version}", self._change(record.event_type, change))
        return added

    def add_checked(self, record: SchemaRecord, check: SubjectCheck) -> Subject:
        """Add ``record`` if ``check`` passes on the history it is added to (see :class:`CheckedSchemaStore`)."""

        def change(subject: Subject) -> Subject | None:
            check(subject)
            return _with_record(subject, record)

        return self._call(f"add {record.event_type} v{record.version}", self._change(record.event_type, change))

    def set_mode(self, event_type: str, mode: Compatibility) -> None:
        """Set the type's compatibility mode (compare-and-set, so no version added meanwhile is lost)."""

        def change(subject: Subject) -> Subject | None:
            if subject.mode == mode:
                return None
            return Subject(subject.event_type, mode, subject.records)

        self._call(f"set the mode of {event_type}", self._change(event_type, change))

    def close(self) -> None:
        """Release the key-value store (and the broker connection, if this store owns one). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True

        async def work() -> None:
            try:
                await self.kv.close()
            finally:
                if self._on_close is not None:
                    await self._on_close()

        self._run(work())

    def __enter__(self) -> KeyValueSchemaStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _with_record(subject: Subject, record: SchemaRecord) -> Subject | None:
    """The subject with ``record`` added; None if that version is there already; SchemaConflict if different."""
    existing = subject.record(record.version)
    if existing is not None:
        if existing.fingerprint != record.fingerprint:
            raise version_conflict(record, existing.fingerprint)
        return None
    if record.event_type != subject.event_type:
        raise ConfigurationError(f"record of {record.event_type} added to the history of {subject.event_type}")
    records = tuple(sorted((*subject.records, record), key=lambda r: r.version))
    return Subject(subject.event_type, subject.mode, records)
