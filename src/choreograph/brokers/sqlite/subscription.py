"""One member of a consumer group: fetching from leased partitions and settling atomically."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from choreograph.core.broker import PARK_DELAY, DeadLetter, Delivery, Record, Settlement
from choreograph.core.errors import BrokerClosed, LeaseLost, StorageLost

from . import dead_letters, leases, log, reset
from .reader import Reader
from .store import Store
from .writer import WriteBatch

MIN_BACKOFF = 0.001
MAX_BACKOFF = 0.05
_SEEN_CHUNK = 500

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Partition:
    """This member's view of one leased partition.

    ``cursor`` is the next log offset to hand out (``None``: start from the
    committed offset). ``inflight`` maps each log offset handed out and not
    yet committed to whether it is settled; it is in offset order, and its
    settled prefix is dropped when the committed offset moves past it.
    """

    cursor: int | None = None
    inflight: dict[int, bool] = field(default_factory=dict)


class SqliteSubscription:
    """A member of ``group`` on ``topic`` (see :class:`choreograph.core.broker.Subscription`).

    Delivery: from the partitions this member leases, each partition in
    offset order from the committed offset, plus due retries; at least once.
    Handed-out deliveries are not handed out again by this member until they
    are settled (retried) or the partition moves; if the member dies, the
    partition's new owner redelivers everything after the committed offset.

    ``fetch`` and ``settle`` run on the event loop; heartbeats run on the
    broker's maintenance thread, so a busy handler does not lose its leases.
    A lock guards the state both touch. ``fetch``/``settle`` must not be
    called concurrently on one subscription (the protocol says so).
    """

    def __init__(self, store: Store, topic: str, group: str, member: str) -> None:
        self.topic = topic
        self.group = group
        self.member = member
        self.partitions = 0
        self._store = store
        self._lock = threading.Lock()
        self._parts: dict[int, _Partition] = {}
        self._draining: frozenset[int] = frozenset()
        self._retrying: set[tuple[int, int]] = set()
        self._generation = -1
        self._rotation = 0
        self._epoch: int | None = None
        """The group's reset epoch as of this member's last fetch (see :mod:`.reset`)."""
        self._closed = False

    # ---------------------------------------------------------------- leases

    def heartbeat(self, batch: WriteBatch) -> None:
        """Heartbeat and rebalance inside ``batch`` (writer thread); adopt the outcome on commit."""
        if self._closed:
            return
        ownership = leases.heartbeat(
            batch.conn,
            self.topic,
            self.group,
            self.member,
            self.partitions,
            now=time.time(),
            lease_timeout=self._store.config.lease_timeout,
            release_idle=self._release_idle,
        )
        batch.after_commit(lambda: self._adopt(ownership))

    def _release_idle(self, candidates: Sequence[int], count: int) -> list[int]:
        """Pick up to ``count`` of ``candidates`` with nothing in flight and stop fetching from them now.

        Runs on the writer thread while a heartbeat gives partitions away.
        Deciding "idle" and forgetting the partition happen under one lock
        hold, so a fetch racing on the reader thread either recorded its
        deliveries first (the partition is busy and is drained instead) or
        finds the partition gone and drops what it read (nothing handed out).
        If the heartbeat then fails to commit, the partition is only skipped
        until the next heartbeat adopts it again from its committed offset.
        """
        with self._lock:
            retrying = {p for p, _ in self._retrying}
            idle: list[int] = []
            for partition in candidates:
                if len(idle) >= count:
                    break
                part = self._parts.get(partition)
                if (part is None or not part.inflight) and partition not in retrying:
                    idle.append(partition)
            for partition in idle:
                self._parts.pop(partition, None)
            return idle

    def _adopt(self, ownership: leases.Ownership) -> None:
        with self._lock:
            if self._closed:
                return
            for partition in [p for p in self._parts if p not in ownership.held]:
                # lost or released: whatever was in flight is the new owner's to redeliver
                del self._parts[partition]
                self._retrying = {(p, o) for p, o in self._retrying if p != partition}
            for partition in ownership.held:
                self._parts.setdefault(partition, _Partition())
            self._draining = ownership.draining
            self._generation = ownership.generation

    def wants_rebalance(self, generation: int) -> bool:
        """Return True if the group changed since the last heartbeat or a drained partition can go."""
        with self._lock:
            if self._closed:
                return False
            if generation != self._generation:
                return True
            retrying = {p for p, _ in self._retrying}
            return any(p in self._parts and not self._parts[p].inflight and p not in retrying for p in self._draining)

    def held(self) -> set[int]:
        """Return the partitions this member currently leases (as of its last heartbeat)."""
        with self._lock:
            return set(self._parts)

    # ----------------------------------------------------------------- fetch

    async def fetch(self, max_records: int, timeout: float) -> Sequence[Delivery]:
        """Wait up to ``timeout`` seconds for up to ``max_records`` deliveries; ``[]`` on timeout.

        Returns at once if something is available. Otherwise waits for this
        process's writer to commit (no polling) while checking
        ``PRAGMA data_version`` for other processes' commits with a backoff
        from 1 ms doubling to 50 ms. Due retries come first, then log records
        per partition in offset order. Raises BrokerClosed if closed, and StorageLost once a write of
        this process (a heartbeat, at the latest) found the file deleted, replaced or truncated: an idle
        worker on lost storage stops too, rather than waiting for records that can never come.
        """
        self._check_open()
        store = self._store
        self._check_storage()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        limit = max(1, max_records)
        while True:
            waiter = store.notifier.arm()
            try:
                found, version, next_due = await store.reader.run(lambda conn: self._fetch_once(conn, limit), "fetch")
                if found:
                    return found
                delay = MIN_BACKOFF
                while True:
                    remaining = deadline - loop.time()
                    if remaining <= 0 or self._closed:
                        return []
                    await asyncio.wait({waiter}, timeout=min(delay, remaining))
                    self._check_storage()
                    if waiter.done() or (next_due is not None and store.clock.now() >= next_due):
                        break
                    if await store.reader.run(Reader.data_version, "fetch") != version:
                        break
                    delay = min(delay * 2, MAX_BACKOFF)
            finally:
                store.notifier.disarm(waiter)

    def _fetch_once(self, conn: sqlite3.Connection, limit: int) -> tuple[list[Delivery], int, float | None]:
        """Read what is deliverable now (reader thread); return it, the data version and the next due retry."""
        version = Reader.data_version(conn)  # first, so a commit during the reads is noticed later
        epoch = reset.read_epoch(conn, self.topic, self.group)
        with self._lock:
            if self._closed:
                return [], version, None
            if epoch != self._epoch:  # the group was reset: read on from the new committed offsets
                if self._epoch is not None:
                    self._parts = {p: _Partition() for p in self._parts}
                    self._retrying.clear()
                self._epoch = epoch
            active = [(p, part, part.cursor) for p, part in self._parts.items() if p not in self._draining]
            retrying = set(self._retrying)
        if not active:
            return [], version, None
        topic, group = self.topic, self.group
        committed: dict[int, int] = {}
        if any(cursor is None for _, _, cursor in active):
            committed = dict(
                conn.execute("SELECT partition, committed FROM offsets WHERE topic = ? AND grp = ?", (topic, group))
            )
        starts = {p: committed.get(p, 0) if cursor is None else cursor for p, _, cursor in active}
        now = self._store.clock.now()
        retries: list[Delivery] = []
        for row in conn.execute(
            "SELECT partition, offset, attempt, first_failure, key, value, headers, ts FROM retries"
            " WHERE grp = ? AND topic = ? AND due_at <= ? ORDER BY due_at, partition, offset LIMIT ?",
            (group, topic, now, limit + len(retrying)),
        ):
            partition, offset, attempt, first_failure, key, value, headers, ts = row
            start = starts.get(partition)
            # offsets at or past the cursor are still coming from the log: never hand one record out twice
            if start is None or offset >= start or (partition, offset) in retrying:
                continue
            headers = log.decode_headers(headers)
            retries.append(Delivery(topic, partition, offset, value, key, headers, ts, attempt + 1, first_failure))
            if len(retries) >= limit:
                break
        remaining = limit - len(retries)
        self._rotation = (self._rotation + 1) % max(1, len(active))
        order = active[self._rotation :] + active[: self._rotation]
        fresh: list[tuple[int, _Partition, int | None, int, list[Delivery]]] = []
        for partition, part, cursor in order:
            records = log.read_partition(conn, topic, partition, starts[partition], remaining) if remaining else []
            fresh.append((partition, part, cursor, starts[partition], records))
            remaining -= len(records)
        next_due = None
        if not retries and remaining == limit:
            row = conn.execute(
                "SELECT MIN(due_at) FROM retries WHERE grp = ? AND topic = ? AND due_at > ?", (group, topic, now)
            ).fetchone()
            next_due = row[0]
        return self._hand_out(retries, fresh), version, next_due

    def _hand_out(
        self, retries: list[Delivery], fresh: list[tuple[int, _Partition, int | None, int, list[Delivery]]]
    ) -> list[Delivery]:
        """Record what is handed out, dropping partitions that moved while the reads ran."""
        out: list[Delivery] = []
        with self._lock:
            for delivery in retries:
                if delivery.partition in self._parts:
                    self._retrying.add((delivery.partition, delivery.offset))
                    out.append(delivery)
            for partition, part, cursor, start, records in fresh:
                if self._parts.get(partition) is not part or part.cursor != cursor:
                    continue
                if records:
                    part.cursor = records[-1].offset + 1
                    inflight = part.inflight
                    for record in records:
                        inflight[record.offset] = False
                    out.extend(records)
                elif cursor is None:
                    part.cursor = start
        return out

    # ---------------------------------------------------------------- settle

    async def settle(self, settlement: Settlement) -> None:
        """Apply ``settlement`` in one transaction; raise BrokerError (nothing applied) if it fails.

        Acks move the committed offset of each partition to just past the
        highest offset up to which every delivery handed out is settled
        (acked, retried or dead-lettered). Retries become durable retry rows
        due at ``clock.now() + delay``; dead letters are stored with every
        field; outputs are appended like a publish; inbox keys are stored.
        Fails if this member no longer leases a partition it settles; the new
        owner then redelivers. A settle renews this member's leases (it is
        alive), in the same statement that checks them. After a failure the partitions involved are
        rewound to their committed offset, so their records are fetched again.
        """
        self._check_open()
        store = self._store
        deliveries = [*settlement.acks, *(d for d, _ in settlement.retries), *(d for d, _ in settlement.dead_letters)]
        touched = {d.partition for d in deliveries}
        with self._lock:
            from_retries = {(d.partition, d.offset) for d in deliveries if (d.partition, d.offset) in self._retrying}
            settled: dict[int, set[int]] = {}
            for d in deliveries:
                if (d.partition, d.offset) not in from_retries:
                    settled.setdefault(d.partition, set()).add(d.offset)
            commits: dict[int, int] = {}
            for partition, offsets in settled.items():
                part = self._parts.get(partition)
                if part is None:
                    continue
                for offset, done in part.inflight.items():
                    if not (done or offset in offsets):
                        break
                    commits[partition] = offset + 1
        topic, group, member = self.topic, self.group, self.member
        outputs: dict[str, list[Record]] = {}
        for output_topic, record in settlement.outputs:
            outputs.setdefault(output_topic, []).append(record)

        def work(batch: WriteBatch) -> None:
            conn = batch.conn
            if touched:
                held = leases.renew_held(
                    conn, topic, group, member, now=time.time(), lease_timeout=store.config.lease_timeout
                )
                lost = touched - held
                if lost:
                    raise LeaseLost(
                        f"member {member!r} of group {group!r} no longer leases partitions {sorted(lost)} "
                        f"of topic {topic!r}; their new owner redelivers them"
                    )
                if reset.read_epoch(conn, topic, group) != self._epoch:
                    raise LeaseLost(
                        f"group {group!r} was reset on topic {topic!r} after member {member!r} fetched "
                        "this batch; nothing of it was applied, the group reads on from its new position"
                    )
            now = store.clock.now()
            if commits:
                conn.executemany(
                    "UPDATE offsets SET committed = ? WHERE topic = ? AND grp = ? AND partition = ? AND committed < ?",
                    [(offset, topic, group, p, offset) for p, offset in commits.items()],
                )
            done_retries = [
                (group, d.topic, d.partition, d.offset)
                for d in (*settlement.acks, *(d for d, _ in settlement.dead_letters))
                if (d.partition, d.offset) in from_retries
            ]
            if done_retries:
                conn.executemany(dead_letters.DELETE_RETRY, done_retries)
            if settlement.retries:
                conn.executemany(
                    dead_letters.UPSERT_RETRY,
                    [dead_letters.retry_row(group, d, now + max(0.0, delay), now) for d, delay in settlement.retries],
                )
            if settlement.dead_letters:
                parked = dead_letters.store_or_park(conn, group, settlement.dead_letters, now)
                if parked:
                    batch.after_commit(lambda: self._parked(parked))
            for output_topic, records in outputs.items():
                log.append(batch, output_topic, records, store.config.partitions, now)
            if settlement.inbox:
                conn.executemany(
                    "INSERT OR IGNORE INTO inbox (grp, key, ts) VALUES (?, ?, ?)",
                    [(group, key, now) for key in settlement.inbox],
                )
            batch.after_commit(lambda: self._settled(settled, commits, from_retries))

        try:
            await store.writer.run(work, size=len(deliveries) + len(settlement.outputs) + 1)
        except BaseException:
            self._rewind(touched)
            raise

    def _parked(self, parked: list[tuple[Delivery, DeadLetter, str]]) -> None:
        """Count and log records parked by a settle that committed (writer thread)."""
        self._store.parked.add(self.topic, self.group, len(parked))
        for delivery, letter, error in parked:
            logger.error(
                "parked %s[%d]@%d of group %r for %.0f s: its dead letter (%s, %d bytes) cannot be stored: %s",
                delivery.topic, delivery.partition, delivery.offset, self.group, PARK_DELAY, letter.reason,
                len(letter.value), error,
            )  # fmt: skip

    def _settled(
        self, settled: dict[int, set[int]], commits: dict[int, int], from_retries: set[tuple[int, int]]
    ) -> None:
        with self._lock:
            self._retrying.difference_update(from_retries)
            for partition, offsets in settled.items():
                part = self._parts.get(partition)
                if part is None:
                    continue
                inflight = part.inflight
                for offset in offsets:
                    if offset in inflight:
                        inflight[offset] = True
                end = commits.get(partition)
                if end is not None:
                    for offset in [o for o in inflight if o < end]:
                        del inflight[offset]

    def _rewind(self, partitions: set[int]) -> None:
        with self._lock:
            for partition in partitions:
                if partition in self._parts:
                    self._parts[partition] = _Partition()
            self._retrying = {(p, o) for p, o in self._retrying if p not in partitions}

    # ------------------------------------------------------------ inbox/close

    async def seen(self, keys: Sequence[str]) -> set[str]:
        """Return which of ``keys`` the group's inbox holds (indexed lookups, off the event loop)."""
        self._check_open()
        if not keys:
            return set()
        group = self.group
        unique = list(dict.fromkeys(keys))

        def work(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for i in range(0, len(unique), _SEEN_CHUNK):
                chunk = unique[i : i + _SEEN_CHUNK]
                marks = ",".join("?" * len(chunk))
                found.update(
                    row[0]
                    for row in conn.execute(
                        f"SELECT key FROM inbox WHERE grp = ? AND key IN ({marks})", (group, *chunk)
                    )
                )
            return found

        return await self._store.reader.run(work, "inbox lookup")

    async def close(self) -> None:
        """Leave the group and release the leases at once; unsettled deliveries go back. Idempotent.

        If leaving fails (a full disk, a lock held past ``busy_timeout``), the
        member is forgotten here all the same and the error is raised: nothing
        renews its leases any more, so they lapse after ``lease_timeout`` and
        the other members take its partitions (never a zombie that keeps them).
        """
        if self._closed:
            return
        try:
            await self._store.writer.run(self.leave)
        except BrokerClosed:
            pass
        finally:
            self.leave_locally()

    def leave(self, batch: WriteBatch) -> None:
        """Release this member's leases inside ``batch`` (writer thread)."""
        if self._closed:
            return
        leases.leave(batch.conn, self.topic, self.group, self.member)
        batch.after_commit(self.leave_locally)

    def leave_locally(self) -> None:
        """Forget all state; later calls raise BrokerClosed."""
        with self._lock:
            self._closed = True
            self._parts.clear()
            self._retrying.clear()
        self._store.notifier.notify()

    @property
    def closed(self) -> bool:
        """True once the member left."""
        return self._closed

    def _check_storage(self) -> None:
        lost = self._store.writer.lost
        if lost is not None:
            raise StorageLost(str(lost))

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosed(f"subscription of group {self.group!r} to {self.topic!r} is closed")
