"""The embedded broker: a durable partitioned log in one SQLite file, shared by processes."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import threading
import uuid
from collections.abc import Sequence

from choreograph.core.broker import (
    Capabilities,
    DeadLetter,
    Delivery,
    PartitionLag,
    Position,
    Record,
    TopicInfo,
)
from choreograph.core.clock import Clock, SystemClock
from choreograph.core.enums import DeadLetterStatus
from choreograph.core.errors import BrokerClosed, BrokerUnavailable, ConfigurationError, StorageLost
from choreograph.core.names import check_group, check_topic
from choreograph.core.retention import LogSize, Retention

from . import dead_letters, log, retention
from .config import SqliteConfig, parse_url
from .database import checkpoint
from .health import SqliteHealth
from .kv import KeyValueNamespaces
from .local_log import LocalLogFile
from .maintenance import Maintenance
from .notifier import Notifier
from .reader import Reader
from .reset import GroupReset
from .store import Store
from .subscription import SqliteSubscription
from .writer import WriteBatch, Writer

_EARLIEST = Position.earliest()


class SqliteBroker(KeyValueNamespaces, GroupReset, LocalLogFile, SqliteHealth):
    """A :class:`~choreograph.core.broker.Broker` on one SQLite file in WAL mode.

    Implements Broker, LagReporter, TopicAdmin, LogReader, DeadLetterStore, RetentionReporter,
    LogSizeReporter, PositionResolver and KeyValueProvider (:mod:`.kv`).
    Several OS processes may open the same file: they share topics, groups,
    leases and dead letters.

    Threads: one writer (group commit), one reader, one maintenance thread
    (heartbeats, rebalancing, retention). All methods are coroutines, safe to
    call concurrently, and never block the event loop on SQLite.

    Time: ``clock`` stamps records, retry due times, dead letters and inbox
    keys, and drives retention; leases use the machine's wall clock because
    every process must agree on it.
    """

    capabilities = Capabilities(
        per_key_order=True,
        persistent=True,
        replay=True,
        lag=True,
        native_delay=True,
        atomic_settle=True,
        cross_process=True,
        dead_letter_store=True,
        fenced_reset=True,
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: SqliteConfig | None = None,
        *,
        clock: Clock | None = None,
        client: None = None,
    ) -> None:
        """Open (creating if needed) the broker file at ``path``; starts the background threads.

        The other brokers take ``XBroker(config=None, *, clock=None, client=None)`` with the location
        in the config; SQLite's location is the file, first, and its config holds only URL options
        (every field of it is one). It takes no ``client``: its threads open their own connections.
        """
        if client is not None:
            raise ConfigurationError("the sqlite broker takes no client: it opens its own connections to the file")
        self._path = os.fspath(path)
        self._config = config or SqliteConfig()
        writer = Writer(self._path, self._config, on_commit=self._committed)
        try:
            reader = Reader(self._path, self._config)
        except BaseException:
            writer.close()
            raise
        self._notifier = Notifier()
        self._store = Store(self._path, self._config, clock or SystemClock(), writer, reader, self._notifier)
        self._subscriptions: list[SqliteSubscription] = []
        self._subscriptions_lock = threading.Lock()
        self._maintenance = Maintenance(self._store, self._members)
        self._member_prefix = f"{socket.gethostname()}:{os.getpid()}:"
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None) -> SqliteBroker:
        """Open ``sqlite:///relative.db?partitions=4&sync=full`` (or ``sqlite:////abs.db``).

        Query options are :class:`SqliteConfig` fields; an unknown one raises
        ConfigurationError naming it.
        """
        path, config = parse_url(url)
        return cls(path, config, clock=clock)

    @property
    def path(self) -> str:
        """The broker file."""
        return self._path

    def parked_counts(self) -> dict[tuple[str, str], int]:
        """Records parked since this broker opened, per (topic, group): their dead letter was over the
        database's length limit (see ``dead_letters.store_or_park``; ``core.broker.ParkReporter``)."""
        return self._store.parked.counts()

    @property
    def config(self) -> SqliteConfig:
        """The settings this broker was opened with."""
        return self._config

    # ---------------------------------------------------------------- Broker

    async def publish(self, topic: str, records: Sequence[Record]) -> None:
        """Append ``records`` to ``topic`` in order; durable per ``sync`` once it returns.

        Safe to call concurrently: calls are group-committed, and records of
        one call keep their order within each partition (so per key). Creates
        the topic with ``config.partitions`` partitions if needed.
        """
        self._check_topic(topic)
        if not records:
            self._check_open()
            return
        store = self._store
        batch_records = list(records)
        await store.writer.run(
            lambda batch: log.append(batch, topic, batch_records, store.config.partitions, store.clock.now()),
            size=len(batch_records),
        )

    async def subscribe(self, topic: str, group: str, *, start: Position = _EARLIEST) -> SqliteSubscription:
        """Join ``group`` on ``topic`` and lease a fair share of its partitions.

        ``start`` applies only when the group has never read this topic: it
        sets the group's committed offsets. Creates the topic if needed.
        """
        self._check_topic(topic)
        check_group(group)
        self._check_open()
        store = self._store
        member = SqliteSubscription(store, topic, group, f"{self._member_prefix}{uuid.uuid4().hex[:12]}")

        def join(batch: WriteBatch) -> None:
            conn = batch.conn
            member.partitions = len(batch.next_offsets(topic, store.config.partitions))
            batch.flush()  # so resolving ``start`` sees appends earlier in this batch
            known = conn.execute("SELECT 1 FROM offsets WHERE topic = ? AND grp = ? LIMIT 1", (topic, group))
            if known.fetchone() is None:
                starts = log.start_offsets(conn, topic, start)
                conn.executemany(
                    "INSERT INTO offsets (topic, grp, partition, committed) VALUES (?, ?, ?, ?)",
                    [(topic, group, p, offset) for p, offset in starts.items()],
                )
            member.heartbeat(batch)

        await store.writer.run(join)
        with self._subscriptions_lock:
            self._subscriptions.append(member)
        return member

    async def ping(self) -> None:
        """Return if the file is usable; raise BrokerUnavailable naming the path and the reason."""
        if self._closed:
            raise BrokerUnavailable(f"SQLite broker {self._path!r} is closed")
        try:
            await asyncio.to_thread(self._store.writer.check_storage)
        except StorageLost as exc:
            raise BrokerUnavailable(str(exc)) from exc
        try:
            await self._store.reader.run(lambda conn: conn.execute("SELECT COUNT(*) FROM meta").fetchone(), "ping")
        except BrokerClosed as exc:
            raise BrokerUnavailable(f"SQLite broker {self._path!r} is closed") from exc
        except BrokerUnavailable:
            raise
        except Exception as exc:
            raise BrokerUnavailable(f"SQLite broker file {self._path!r} is not usable: {exc}") from exc

    async def close(self) -> None:
        """Leave every group, commit pending publishes, stop the threads, close the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for member in self._members():
            if not member.closed:
                await member.close()
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._maintenance.close()
        self._store.writer.close()
        self._store.reader.close()

    # ------------------------------------------------- LagReporter, TopicAdmin

    async def lag(self, group: str | None = None) -> list[PartitionLag]:
        """Return ``end_offset - committed`` per (topic, group, partition), sorted; one group or all."""
        self._check_open()
        where, params = ("WHERE o.grp = ?", (group,)) if group is not None else ("", ())
        rows = await self._store.reader.run(
            lambda conn: conn.execute(
                "SELECT o.topic, o.grp, o.partition, p.next_offset, o.committed FROM offsets o"
                " JOIN partitions p ON p.topic = o.topic AND p.partition = o.partition"
                f" {where} ORDER BY o.topic, o.grp, o.partition",
                params,
            ).fetchall(),
            "lag",
        )
        return [PartitionLag(*row) for row in rows]

    async def topics(self) -> list[TopicInfo]:
        """Return every topic sorted by name, with partitions, retained records and total end offset."""
        self._check_open()

        def work(conn: sqlite3.Connection) -> list[TopicInfo]:
            by_topic: dict[str, list[tuple[int, int]]] = {}
            for topic, partition, end in conn.execute(
                "SELECT topic, partition, next_offset FROM partitions ORDER BY topic, partition"
            ):
                by_topic.setdefault(topic, []).append((partition, end))
            infos = []
            for topic, parts in by_topic.items():
                retained = sum(end - log.first_offset(conn, topic, p, end) for p, end in parts)
                infos.append(TopicInfo(topic, len(parts), retained, sum(end for _, end in parts)))
            return infos

        return await self._store.reader.run(work, "list topics")

    # --------------------------------------------------------------- LogReader

    async def read(self, topic: str, start: Position = _EARLIEST, *, limit: int = 1000) -> Sequence[Delivery]:
        """Return up to ``limit`` records from ``start`` in (partition, offset) order. Never blocks on writers."""
        self._check_open()
        return await self._store.reader.run(lambda conn: log.read(conn, topic, start, limit), "read")

    # --------------------------------------------------------- DeadLetterStore

    async def dead_letters(
        self, *, group: str | None = None, status: str | None = DeadLetterStatus.OPEN, limit: int = 100
    ) -> list[DeadLetter]:
        """Return dead letters, oldest first."""
        self._check_open()
        return await self._store.reader.run(
            lambda conn: dead_letters.select(conn, group, status, limit), "list dead letters"
        )

    async def dead_letter(self, dead_letter_id: str) -> DeadLetter:
        """Return one dead letter; raise NotFound if absent."""
        self._check_open()
        return await self._store.reader.run(
            lambda conn: dead_letters.fetch_one(conn, dead_letter_id), "read dead letter"
        )

    async def dead_letter_counts(
        self, *, status: str | None = DeadLetterStatus.OPEN
    ) -> dict[tuple[str, str, str], int]:
        """Return how many dead letters have ``status`` (``None``: any) per (topic, group, reason); reads no values."""
        self._check_open()
        return await self._store.reader.run(lambda conn: dead_letters.counts(conn, status), "count dead letters")

    async def resubmit(self, dead_letter_id: str, value: bytes | None = None) -> bool:
        """Hand an open dead letter back to its group, due now, as attempt 1; False if not open.

        Atomic: the status change and the retry row commit together, so a
        second resubmission of the same entry does nothing. ``value``
        replaces the bytes (edit-and-retry). Raises NotFound if absent.
        """
        self._check_open()
        clock = self._store.clock
        return await self._store.writer.run(
            lambda batch: dead_letters.resubmit(batch.conn, dead_letter_id, value, clock.now())
        )

    async def purge(self, dead_letter_ids: Sequence[str] | None = None, *, delete: bool = False) -> int:
        """Mark entries purged (all open entries if ``None``); return how many.

        With ``delete`` the rows are deleted instead (any status; all if
        ``None``): their bytes are zeroed in the pages they leave
        (``secure_delete``) and a checkpoint then truncates the write-ahead
        log, so the files no longer hold them (if another process is reading
        at that moment, its later checkpoints finish the job). The record's
        copy in its topic's log stays until log retention trims it.
        """
        self._check_open()
        ids = None if dead_letter_ids is None else list(dead_letter_ids)
        if not delete:
            return await self._store.writer.run(lambda batch: dead_letters.purge(batch.conn, ids))

        def remove(batch: WriteBatch) -> int:
            removed = dead_letters.delete(batch.conn, ids)
            if removed:
                batch.after_commit(lambda: checkpoint(batch.conn))
            return removed

        return await self._store.writer.run(remove)

    # -------------------------------------------------------------- retention

    async def trim(self) -> int:
        """Apply retention now (it also runs every ``retention_interval``); return records removed."""
        self._check_open()
        store = self._store
        return await store.writer.run(lambda batch: retention.trim(batch.conn, store.config, store.clock.now()))

    def describe_retention(self) -> Retention:
        """Return the retention in effect (``retention``, 7 days by default); no I/O."""
        return retention.describe(self._config)

    async def log_size(self) -> LogSize:
        """Return retained records per topic and the bytes of the file and its WAL; reads no records."""
        self._check_open()
        return await self._store.reader.run(lambda conn: retention.size(conn, self._path), "measure the log")

    async def resolve_position(self, topic: str, start: Position) -> dict[int, int]:
        """Return partition -> first offset to read for ``start`` (see :func:`.log.start_offsets`)."""
        self._check_open()
        return await self._store.reader.run(lambda conn: log.start_offsets(conn, topic, start), "resolve a position")

    # ---------------------------------------------------------------- private

    def _members(self) -> list[SqliteSubscription]:
        with self._subscriptions_lock:
            self._subscriptions = [s for s in self._subscriptions if not s.closed]
            return list(self._subscriptions)

    def _committed(self) -> None:
        self._notifier.notify()

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosed(f"SQLite broker {self._path!r} is closed")

    @staticmethod
    def _check_topic(topic: str) -> None:
        check_topic(topic)
