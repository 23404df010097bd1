"""Ship committed outbox rows to the broker: in order per partition key, at least once.

A relay round claims work, publishes it, then marks it shipped:

- **PostgreSQL**: the outbox is split into lanes (``lane_of(key)``; a key's
  events are all in one lane). A round picks the lanes whose oldest pending
  event is oldest, locks their rows in ``choreograph_outbox_lane`` with
  ``FOR UPDATE SKIP LOCKED``, reads their pending events in position order,
  publishes them and marks them shipped in the same transaction. Another relay
  skips locked lanes and takes others, so several relays share the work and a
  key's events are never shipped by two relays side by side. A relay killed
  mid-round loses its connection, PostgreSQL releases its locks, and the next
  relay ships the whole round again (its events were not marked).
- **SQLite** (no row locks): one lease row. The relay that holds it ships
  everything; the others wait for it to expire (``lease_timeout``). Marking a
  round shipped renews the lease in the same transaction, so a relay that
  lost it marks nothing.

At least once: an event published but not yet marked is published again by
the next round. Its id and bytes never change (they were fixed when staged), so
a downstream inbox drops the repeat; and since every shipper sends a key's
events in position order, the first copies downstream sees stay in that order
even if two relays overlap after a lease expired. Order per key is the order
of ``position``, i.e. of staging: producers that write one key concurrently
order their transactions (a lock on the aggregate row), as they must anyway.

Wake-up: on PostgreSQL the relay LISTENs on ``choreograph_outbox``, which the
shipped trigger NOTIFYs at each commit that staged events; in-process
producers call :meth:`Relay.wake` (``Outbox.on_commit``). Otherwise it polls
every ``poll_interval`` seconds. Shipped rows older than ``retention`` and
inbox keys older than ``inbox_retention`` are deleted every
``cleanup_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from prometheus_client import CollectorRegistry
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from choreograph.core.broker import Broker, Record
from choreograph.core.errors import BrokerError, ConfigurationError
from choreograph.outbox.metrics import RelayMetrics
from choreograph.outbox.tables import CHANNEL, inbox, lease, outbox
from choreograph.runtime.app import App

logger = logging.getLogger("choreograph.outbox.relay")

LEASE_NAME = "relay"

_HEADS = text(
    "SELECT lane FROM (SELECT l.lane, (SELECT o.position FROM choreograph_outbox o "
    "WHERE o.lane = l.lane AND o.shipped_at IS NULL ORDER BY o.position LIMIT 1) AS head "
    "FROM choreograph_outbox_lane l) h WHERE head IS NOT NULL ORDER BY head LIMIT :n"
)
_LOCK = text(
    "SELECT lane FROM choreograph_outbox_lane WHERE lane = ANY(:lanes) "
    "ORDER BY array_position(CAST(:lanes AS integer[]), lane) LIMIT :n FOR UPDATE SKIP LOCKED"
)


class Pending(NamedTuple):
    """One outbox row to ship."""

    position: int
    topic: str
    partition_key: str | None
    payload: bytes
    created_at: float


async def _pending(conn: AsyncConnection, limit: int, *where: ColumnElement[bool]) -> list[Pending]:
    """The first ``limit`` unshipped rows (also matching ``where``), in position order."""
    rows = (
        await conn.execute(
            select(outbox.c.position, outbox.c.topic, outbox.c.partition_key, outbox.c.payload, outbox.c.created_at)
            .where(outbox.c.shipped_at.is_(None), *where)
            .order_by(outbox.c.position)
            .limit(limit)
        )
    ).all()
    return [Pending(row[0], row[1], row[2], bytes(row[3]), row[4]) for row in rows]


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """How a relay works. Durations in seconds."""

    batch_size: int = 500
    """Most events shipped per round."""
    lanes_per_round: int = 16
    """PostgreSQL: most lanes one round claims (other relays take the rest)."""
    poll_interval: float = 1.0
    """Longest wait between rounds when nothing wakes the relay."""
    lease_timeout: float = 10.0
    """SQLite: a lease not renewed for this long passes to another relay."""
    retention: float = 7 * 86400.0
    """Shipped rows are deleted this long after shipping."""
    inbox_retention: float = 14 * 86400.0
    """Inbox keys are deleted this long after handling: keep it past the longest retry and resubmission horizon."""
    cleanup_interval: float = 300.0
    metrics_interval: float = 5.0
    error_delay: float = 1.0
    """Wait after a failed round (broker or database down) before the next."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "lanes_per_round"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"RelayConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("poll_interval", "lease_timeout", "retention", "inbox_retention", "cleanup_interval"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"RelayConfig.{name} must be > 0 seconds, got {getattr(self, name)!r}")


class Relay:
    """Ships an outbox's committed events to a broker. Run one or several per database.

    ``broker`` is a Broker, or an App whose broker is used (opened on first
    round). The relay only reads and updates the outbox tables; it never
    touches business rows. One relay object runs one loop at a time.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        broker: Broker | App,
        *,
        config: RelayConfig | None = None,
        metrics: RelayMetrics | None = None,
        name: str | None = None,
    ) -> None:
        self._engine = engine
        self._target = broker
        self.config = config or RelayConfig()
        self.metrics = metrics
        self.name = name or f"relay-{uuid.uuid4().hex[:12]}"
        self._dialect = engine.dialect.name
        if self._dialect not in ("postgresql", "sqlite"):
            raise ConfigurationError(f"the outbox relay supports PostgreSQL and SQLite, not {self._dialect!r}")
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_cleanup = 0.0
        self._next_metrics = 0.0
        self.shipped = 0
        """Events this relay shipped (published and marked)."""
        self.rounds = 0
        """Rounds this relay finished (shipping something or nothing)."""
        self.listening = False
        """True while a PostgreSQL relay's LISTEN is in effect (commits elsewhere wake it)."""

    def instrument(self, registry: CollectorRegistry) -> None:
        """Export this relay's metrics into ``registry`` (the App's, under ``choreograph run``), if it has none yet."""
        if self.metrics is None:
            try:
                self.metrics = RelayMetrics(registry)
            except ValueError:  # another relay of this App exports there already (the series carry no labels)
                logger.warning(
                    "relay %s: a relay already exports outbox metrics here; this one exports none", self.name
                )

    @property
    def broker(self) -> Broker:
        """The broker rounds publish to (an App's is opened on first use)."""
        target = self._target
        return target.broker if isinstance(target, App) else target

    def wake(self) -> None:
        """Start the next round now. Safe from any thread (``Outbox.on_commit(relay.wake)``)."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wakeup.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing to wake
                loop.call_soon_threadsafe(self._wakeup.set)

    # -- one round --------------------------------------------------------

    async def ship_once(self) -> int:
        """Ship one round (up to ``batch_size`` events); return how many were shipped.

        Raises what the broker or database raised; nothing is marked shipped
        then, so the round is shipped again later.
        """
        shipped = await (self._ship_lanes() if self._dialect == "postgresql" else self._ship_leased())
        self.shipped += shipped
        self.rounds += 1
        if self.metrics is not None:
            self.metrics.last_round.set(time.time())
        return shipped

    async def _ship_lanes(self) -> int:
        cfg = self.config
        async with self._engine.begin() as conn:
            # Candidates beyond what one round takes: lanes another relay holds are skipped, not waited for.
            heads = (await conn.execute(_HEADS, {"n": 4 * cfg.lanes_per_round})).scalars().all()
            if not heads:
                return 0
            claimed = (await conn.execute(_LOCK, {"lanes": list(heads), "n": cfg.lanes_per_round})).scalars().all()
            if not claimed:
                return 0
            rows = await _pending(conn, cfg.batch_size, outbox.c.lane.in_(claimed))
            await self._publish(rows)
            await self._mark(conn, rows)
        return len(rows)

    async def _ship_leased(self) -> int:
        cfg = self.config
        if not await self._hold_lease():
            return 0
        async with self._engine.connect() as conn:
            rows = await _pending(conn, cfg.batch_size)
            await conn.rollback()  # a read: end it before the (slow) publish, so producers are not held
        if not rows:
            return 0
        await self._publish(rows)
        async with self._engine.begin() as conn:
            if not await self._renew(conn):
                logger.warning("relay %s lost the outbox lease while shipping; another relay ships these", self.name)
                return 0
            await self._mark(conn, rows)
        return len(rows)

    async def _hold_lease(self) -> bool:
        async with self._engine.begin() as conn:
            return await self._renew(conn, take=True)

    async def _renew(self, conn: AsyncConnection, *, take: bool = False) -> bool:
        now = time.time()
        mine = lease.c.owner == self.name
        condition = (mine | lease.c.owner.is_(None) | (lease.c.expires_at < now)) if take else mine
        result = await conn.execute(
            update(lease)
            .where(lease.c.name == LEASE_NAME, condition)
            .values(owner=self.name, expires_at=now + self.config.lease_timeout)
        )
        return bool(result.rowcount)

    async def _release_lease(self) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(lease)
                .where(lease.c.name == LEASE_NAME, lease.c.owner == self.name)
                .values(owner=None, expires_at=0)
            )

    async def _publish(self, rows: Sequence[Pending]) -> None:
        """Publish ``rows`` (in position order) grouped by topic; each topic's records keep their order."""
        by_topic: dict[str, list[Record]] = {}
        for row in rows:
            by_topic.setdefault(row.topic, []).append(Record(row.payload, row.partition_key))
        broker = self.broker
        for topic, records in by_topic.items():
            await broker.publish(topic, records)

    async def _mark(self, conn: AsyncConnection, rows: Sequence[Pending]) -> None:
        now = time.time()
        await conn.execute(
            update(outbox).where(outbox.c.position.in_([row.position for row in rows])).values(shipped_at=now)
        )
        if self.metrics is not None:
            self.metrics.shipped.inc(len(rows))
            for row in rows:
                self.metrics.lag.observe(max(0.0, now - row.created_at))

    # -- housekeeping -------------------------------------------------------

    async def cleanup(self, now: float | None = None) -> tuple[int, int]:
        """Delete shipped rows past ``retention`` and inbox keys past ``inbox_retention``; return both counts."""
        at = time.time() if now is None else now
        async with self._engine.begin() as conn:
            shipped = await conn.execute(delete(outbox).where(outbox.c.shipped_at < at - self.config.retention))
            keys = await conn.execute(delete(inbox).where(inbox.c.handled_at < at - self.config.inbox_retention))
        return shipped.rowcount, keys.rowcount

    async def depth(self) -> tuple[int, float]:
        """Return (events not shipped, age in seconds of the oldest of them — 0 when none)."""
        async with self._engine.connect() as conn:
            count, oldest = (
                await conn.execute(
                    select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.shipped_at.is_(None))
                )
            ).one()
        return int(count), (max(0.0, time.time() - oldest) if oldest is not None else 0.0)

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_cleanup:
            self._next_cleanup = now + self.config.cleanup_interval
            await self.cleanup()
        if self.metrics is not None and now >= self._next_metrics:
            self._next_metrics = now + self.config.metrics_interval
            await self.report()

    async def report(self) -> None:
        """Read the outbox's depth and oldest age into the metrics now (the loop does it every ``metrics_interval``)."""
        if self.metrics is not None:
            count, age = await self.depth()
            self.metrics.depth.set(count)
            self.metrics.oldest_age.set(age)

    # -- the loop -----------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Ship rounds until ``stop`` is set (or the task is cancelled).

        A failed round (broker or database down) is logged, counted and
        retried after ``error_delay``; nothing is lost. On stop, a SQLite
        relay hands its lease back so another relay takes over at once.
        """
        stop = stop or asyncio.Event()
        self._loop = asyncio.get_running_loop()
        listener = asyncio.create_task(self._listen()) if self._dialect == "postgresql" else None
        try:
            while not stop.is_set():
                self._wakeup.clear()
                try:
                    shipped = await self.ship_once()
                    await self._housekeeping()
                except BrokerError as exc:  # the broker is down or closing: nothing was marked, the round comes back
                    logger.warning("relay %s: broker unavailable (%s); retrying", self.name, exc)
                    if self.metrics is not None:
                        self.metrics.errors.inc()
                    await _wait_any(stop, None, self.config.error_delay)
                    continue
                except Exception:
                    logger.exception("relay %s: shipping round failed; retrying", self.name)
                    if self.metrics is not None:
                        self.metrics.errors.inc()
                    await _wait_any(stop, None, self.config.error_delay)
                    continue
                if shipped < self.config.batch_size:
                    await _wait_any(stop, self._wakeup, self.config.poll_interval)
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
                self.listening = False
            if self._dialect == "sqlite":
                with contextlib.suppress(Exception):
                    await self._release_lease()
            self._loop = None

    async def run_beside(self, stop: asyncio.Event) -> None:
        """Run next to an App's consumers (``choreograph run``): the same as :meth:`run`."""
        await self.run(stop)

    async def _listen(self) -> None:
        """LISTEN for commits that staged events and wake the loop; on any failure fall back to polling."""
        try:
            import psycopg
        except ImportError:  # pragma: no cover - the outbox extra installs it
            logger.info("psycopg is not installed: relay %s polls every %ss", self.name, self.config.poll_interval)
            return
        conninfo = self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening = True
                    self._wakeup.set()  # anything committed before LISTEN took effect is found by this round
                    async for _ in conn.notifies():
                        self._wakeup.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning(
                    "relay %s: LISTEN failed (%s); polling until it reconnects", self.name, type(exc).__name__
                )
            await asyncio.sleep(self.config.poll_interval)


async def _wait_any(stop: asyncio.Event, wakeup: asyncio.Event | None, timeout: float) -> None:
    """Wait until ``stop`` or ``wakeup`` is set, at most ``timeout`` seconds."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if wakeup is not None:
        waiters.append(asyncio.ensure_future(wakeup.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
