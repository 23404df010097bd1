"""One member of a consumer group on a Redis topic.

Members split a topic's partitions with leases kept in Redis by a Lua
heartbeat (the same fair-share rule as the SQLite broker: members sorted by
id, the first ``partitions % members`` get one extra). Only the lease holder
reads a partition, so per-key order holds across members.

Within a partition the member keeps the Redis consumer group's pending
entries list (PEL) as the truth:

* new records come from ``XREADGROUP ... >``;
* a nacked record stays pending; its due time is in a sorted set and its
  attempt count / first failure in a hash, and it is XCLAIMed again when due;
* a record left pending by a member that crashed or left is XCLAIMed when the
  partition's lease moves here (the lease expiry is the minimum idle time);
* while an earlier record with key K waits for a retry, later records with
  key K are held back (kept pending here) and handed out after it.

A settlement commits atomically, fenced by the lease tokens of the
partitions it settles (see :mod:`.settling` and :mod:`.leases`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Final

from redis import exceptions as redis_errors

from choreograph.core.broker import Delivery, Settlement
from choreograph.core.errors import BrokerClosed, BrokerError, ConfigurationError, LeaseLost

from . import records as rec
from . import scripts
from .keys import entry_id, record_offset
from .leases import LeaseState
from .session import RedisSession
from .settling import Settler
from .translation import text, translated

_PENDING_PAGE: Final = 1000
_key: Final = attrgetter("key")
_offset: Final = attrgetter("offset")
_place: Final = attrgetter("partition", "offset")


@dataclass(slots=True)
class _Waiting:
    """A record scheduled for a retry (or resubmitted), read from the group's sorted set."""

    partition: int
    stream_id: str
    offset: int
    due: int
    attempt: int
    first_failure: float | None
    key: str | None
    resubmitted: bool


@dataclass(slots=True)
class _Partition:
    backlog: list[Delivery] = field(default_factory=list)
    """Records read but not handed out yet, in offset order: adopted ones sorted, then each read appended."""


class RedisSubscription:
    """One member of a consumer group on a :class:`RedisBroker` topic."""

    def __init__(self, broker: RedisSession, topic: str, group: str, partitions: int) -> None:
        self._broker = broker
        self._client: Any = broker.client
        self._keys = broker.keys
        self._gkeys = broker.keys.group(topic, group)
        self._config = broker.config
        self.topic = topic
        self.group = group
        self.member = uuid.uuid4().hex
        self._owned: dict[int, _Partition] = {}
        self._held: dict[tuple[int, int], Delivery] = {}
        self._generation = -1
        g = self._gkeys
        self._lease = LeaseState(
            self.member, [g.members, g.leases, g.generation], partitions, self._config.lease_timeout
        )
        self._settler = Settler(broker, topic, group, self._lease)
        self._closing = asyncio.Event()
        self._closed = False
        self._readopt = False
        self._quiet_until = 0.0
        self._settling: asyncio.Future[None] | None = None
        """Done when the settle in flight ends; a fetch running meanwhile rebalances only after it."""

    # -- membership ---------------------------------------------------------------

    async def join(self) -> None:
        """Heartbeat once (taking a fair share of partitions); the broker's keepalive thread renews from then on."""
        await self._rebalance()
        self._broker.keepalive.add(self._lease)

    async def _rebalance(self) -> None:
        lease = self._lease
        lease.begin_change()
        try:
            sent_at = time.monotonic()
            async with translated(f"heartbeat in group {self.group!r}"):
                answer = await self._broker.heartbeat_script(keys=lease.keys, args=lease.arguments(rebalance=True))
            mine = lease.adopt(sent_at, answer)
        finally:
            lease.end_change()
        self._generation = lease.seen_generation
        self._quiet_until = 0.0
        await self._release([p for p in self._owned if p not in mine])
        for p in mine:
            if p not in self._owned:
                self._owned[p] = _Partition(await self._adopt(p))

    async def _release(self, partitions: list[int]) -> None:
        """Stop reading ``partitions``; records read but never handed out get their delivery count back.

        They stay in the PEL, so the next owner adopts them, and counts them as not yet delivered.
        """
        pipe = self._client.pipeline(transaction=False)
        queued = False
        for p in partitions:
            part = self._owned.pop(p, None)
            if part is None:
                continue
            stream = self._keys.stream(self.topic, p)
            for delivery in part.backlog:
                sid = entry_id(delivery.offset)
                pipe.xclaim(stream, self.group, self.member, 0, [sid], retrycount=delivery.attempt - 1, justid=True)
                queued = True
        if queued:
            async with translated(f"release partitions of {self.topic!r}"):
                await pipe.execute()

    async def _adopt(self, p: int) -> list[Delivery]:
        """Claim the records other members left pending on partition ``p`` (not those waiting for a retry)."""
        stream, g = self._keys.stream(self.topic, p), self._gkeys
        async with translated(f"adopt partition {p} of {self.topic!r}"):
            waiting = {text(i) for i in await self._client.zrange(g.retries(p), 0, -1)}
            counts: dict[str, int] = {}
            start = "-"
            while True:
                page = await self._client.xpending_range(stream, self.group, start, "+", _PENDING_PAGE)
                for row in page:
                    counts[text(row["message_id"])] = int(row["times_delivered"])
                if len(page) < _PENDING_PAGE:
                    break
                start = "(" + text(page[-1]["message_id"])
            orphans = sorted((i for i in counts if i not in waiting), key=record_offset)
            if not orphans:
                return []
            failures = dict(zip(orphans, await self._client.hmget(g.attempts(p), orphans), strict=True))
            out = []
            for i in range(0, len(orphans), _PENDING_PAGE):
                chunk = orphans[i : i + _PENDING_PAGE]
                claimed = await self._client.xclaim(stream, self.group, self.member, 0, chunk)
                found = {text(sid) for sid, fields in claimed if fields}
                for sid, fields in claimed:
                    if not fields:
                        continue
                    raw = failures.get(text(sid))
                    first = rec.decode_attempts(raw)[1] if raw else None
                    out.append(
                        rec.entry_delivery(
                            self.topic, p, sid, fields, attempt=counts[text(sid)] + 1, first_failure=first
                        )
                    )
                gone = [sid for sid in chunk if sid not in found]
                if gone:  # trimmed away by retention: nothing left to deliver
                    await self._client.xack(stream, self.group, *gone)
            out.sort(key=_offset)
            return out

    # -- Subscription -------------------------------------------------------------

    async def fetch(self, max_records: int, timeout: float) -> list[Delivery]:
        """Wait up to ``timeout`` seconds for up to ``max_records`` deliveries of this member's partitions.

        Checks membership, due retries and new records at least every
        ``poll_interval``; returns nothing once closed.
        """
        if self._closed:
            raise BrokerClosed(f"this subscription to {self.topic!r} is closed")
        if max_records < 1:
            raise ConfigurationError(f"max_records must be >= 1, got {max_records}")
        await self._broker.storage.verify_if_due()  # a GET at most once per interval; StorageLost once lost
        try:
            return await self._fetch(max_records, timeout)
        except BrokerError as exc:
            await self._broker.judge(exc, "a read", self.topic, self.group)  # StorageLost if the data is gone
            raise

    async def _fetch(self, max_records: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + max(0.0, timeout)
        while not self._closed:
            self._lease.check("fetch")
            if self._settling is not None and (self._readopt or self._lease.seen_generation != self._generation):
                # A settle in flight is acking records of partitions a rebalance could hand to another
                # member, who would then take them again: let it finish first, whatever its outcome.
                await asyncio.wait([self._settling])
                continue
            if self._readopt:
                self._readopt = False
                await self._release(list(self._owned))
                await self._rebalance()
            elif self._lease.seen_generation != self._generation:
                await self._rebalance()
            remaining = deadline - time.monotonic()
            batch = await self._take(max_records, max(0.0, remaining))
            if batch:
                self._lease.check("fetch")  # the read may have blocked: nothing goes out under a lapsed lease
            if batch or time.monotonic() >= deadline:
                return batch
        return []

    async def _take(self, max_records: int, wait: float) -> list[Delivery]:
        out: list[Delivery] = []
        owned = sorted(self._owned)
        now_ms = int(self._broker.clock.now() * 1000)
        # New records are read in the schedule's round trip, unless a backlog already fills the batch; then,
        # while no retry is scheduled (see _waiting), the round trip is skipped for up to poll_interval.
        backlog = sum(len(self._owned[p].backlog) for p in owned)
        read_ahead = max_records - backlog if owned else 0
        waiting: dict[int, list[_Waiting]] = {}
        fresh: Any = None
        if not owned or read_ahead > 0 or time.monotonic() >= self._quiet_until:
            waiting, fresh = await self._waiting(owned, read_ahead)
        next_due: int | None = None
        blocked: dict[int, set[str | None]] = {}
        due: list[_Waiting] = []
        for p in owned:
            part = self._owned[p]
            keys = blocked.setdefault(p, set())
            if p not in waiting:
                # No retry to interleave: the backlog (in offset order, see _Partition) is handed out from its
                # head. What the walk below would do, without visiting every record of a long backlog.
                room = max(0, max_records - len(out) - len(due))
                out += part.backlog[:room]
                part.backlog = part.backlog[room:]
                keys.update(map(_key, part.backlog))
                keys.discard(None)
                continue
            items: list[Delivery | _Waiting] = [*part.backlog, *waiting[p]]
            items.sort(key=_offset)
            keep: list[Delivery] = []
            for item in items:
                if isinstance(item, _Waiting):
                    if (p, item.offset) in self._held:
                        continue
                    if item.due > now_ms or item.key in keys or len(out) + len(due) >= max_records:
                        if item.due > now_ms:
                            next_due = item.due if next_due is None else min(next_due, item.due)
                        if item.key is not None:
                            keys.add(item.key)
                        continue
                    due.append(item)
                elif item.key in keys or len(out) + len(due) >= max_records:
                    if item.key is not None:
                        keys.add(item.key)
                    keep.append(item)
                else:
                    out.append(item)
            part.backlog = keep
        got_new = fresh is not None and self._accept_new(fresh, owned, max_records - len(due), out, blocked)
        if due:
            out.extend(await self._claim(due))
        # read again (blocking if need be) only if the read-ahead was not made or nothing at all came
        read_again = fresh is None or not (out or got_new)
        if read_again and len(out) < max_records and owned:
            block = None
            if not out:
                limit = min(wait, self._config.poll_interval)
                if next_due is not None:
                    limit = min(limit, max(0.001, next_due / 1000 - self._broker.clock.now()))
                block = max(1, int(limit * 1000)) if limit > 0 else None
            await self._read_new(owned, max_records, out, blocked, block)
        elif not owned and wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), min(wait, self._config.poll_interval))
        out.sort(key=_place)
        self._held.update(zip(map(_place, out), out, strict=True))
        return out

    async def _waiting(self, owned: list[int], read_ahead: int = 0) -> tuple[dict[int, list[_Waiting]], Any]:
        """Read the retry schedule of the owned partitions and the group generation in one round trip.

        With ``read_ahead`` > 0 the same round trip also reads up to that many
        new records (XREADGROUP without blocking); their raw reply is returned
        beside the schedule (None if not asked).
        """
        g = self._gkeys
        pipe = self._client.pipeline(transaction=False)
        # EVAL with the text, not a registered script: see settle
        pipe.eval(scripts.WAITING, 1 + len(owned), g.generation, *(g.retries(p) for p in owned))
        if read_ahead > 0:
            pipe.execute_command("XREADGROUP", *self._read_args(owned, read_ahead, None))
        try:
            async with translated(f"read retries of {self.group!r}"):
                answers = await pipe.execute()
        except BaseException:
            if read_ahead > 0:
                self._readopt = True  # as in _read_new: records may sit in our PEL unseen
            raise
        fresh = answers[1] if read_ahead > 0 else None
        schedule = answers[0]
        self._lease.seen_generation = int(schedule[0] or 0)
        out: dict[int, list[_Waiting]] = {}
        scheduled = [(p, rec.score_pairs(flat)) for p, flat in zip(owned, schedule[1:], strict=True) if flat]
        if not scheduled:
            # Nothing waits for a retry: until poll_interval passes, or this member schedules one, a fetch the
            # backlog fills hands it out without asking again (see _take).
            self._quiet_until = time.monotonic() + self._config.poll_interval
            return out, fresh
        self._quiet_until = 0.0
        async with translated(f"read retries of {self.group!r}"):
            pipe = self._client.pipeline(transaction=False)
            for p, rows in scheduled:
                ids = [text(sid) for sid, _ in rows]
                pipe.hmget(g.attempts(p), ids)
                pipe.hmget(g.resubmitted(p), ids)
            answers = await pipe.execute()
        for index, (p, rows) in enumerate(scheduled):
            attempts, resubmitted = answers[2 * index], answers[2 * index + 1]
            items = out.setdefault(p, [])
            for (sid, score), raw, packed in zip(rows, attempts, resubmitted, strict=True):
                attempt, first, key = rec.decode_attempts(raw) if raw else (1, None, None)
                items.append(
                    _Waiting(p, text(sid), record_offset(sid), int(score), attempt, first, key, packed is not None)
                )
        return out, fresh

    async def _claim(self, due: list[_Waiting]) -> list[Delivery]:
        """Hand out retries that fell due: XCLAIM pending records, unpack resubmitted ones."""
        g = self._gkeys
        out: list[Delivery] = []
        stale: list[_Waiting] = []
        pipe = self._client.pipeline(transaction=False)
        partitions: list[int] = []
        for item in due:
            p = item.partition
            partitions.append(p)
            if item.resubmitted:
                pipe.hget(g.resubmitted(p), item.stream_id)
            else:
                stream = self._keys.stream(self.topic, p)
                pipe.xclaim(stream, self.group, self.member, 0, [item.stream_id], retrycount=item.attempt + 1)
        async with translated(f"claim retries of {self.group!r}"):
            answers = await pipe.execute()
        for item, p, answer in zip(due, partitions, answers, strict=True):
            if item.resubmitted:
                if answer is None:
                    stale.append(item)
                    continue
                key, value, headers, stamp = rec.unpack_record(answer)
                delivery = Delivery(
                    self.topic, p, item.offset, value, key, headers, stamp, item.attempt + 1, item.first_failure
                )
                out.append(delivery)
            elif answer and answer[0][1]:
                sid, fields = answer[0]
                out.append(
                    rec.entry_delivery(
                        self.topic, p, sid, fields, attempt=item.attempt + 1, first_failure=item.first_failure
                    )
                )
            else:
                stale.append(item)
        if stale:  # acked meanwhile, or trimmed away: forget the schedule
            pipe = self._client.pipeline(transaction=True)
            for item in stale:
                p = item.partition
                pipe.zrem(g.retries(p), item.stream_id)
                pipe.hdel(g.attempts(p), item.stream_id)
                pipe.xack(self._keys.stream(self.topic, p), self.group, item.stream_id)
            async with translated("drop stale retries"):
                await pipe.execute()
        return out

    def _read_args(self, owned: list[int], count: int, block: int | None) -> list[Any]:
        """Arguments of ``XREADGROUP`` for new records of ``owned`` (sent raw: see RedisBroker)."""
        pieces: list[Any] = ["GROUP", self.group, self.member, "COUNT", count]
        if block is not None:
            pieces += ["BLOCK", block]
        streams = [self._keys.stream(self.topic, p) for p in owned]
        return [*pieces, "STREAMS", *streams, *([">"] * len(streams))]

    async def _read_new(
        self,
        owned: list[int],
        max_records: int,
        out: list[Delivery],
        blocked: dict[int, set[str | None]],
        block: int | None,
    ) -> None:
        try:
            async with translated(f"read {self.topic!r} for {self.group!r}"):
                try:
                    # through execute_command with the reply left raw (see RedisBroker): redis-py's own parsing
                    # into a dict per entry cost more than building the deliveries
                    answer = await self._client.execute_command(
                        "XREADGROUP", *self._read_args(owned, max_records - len(out), block)
                    )
                except redis_errors.ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    raise BrokerError(f"group {self.group!r} or topic {self.topic!r} was deleted: {exc}") from exc
        except BaseException:
            # the server may have moved records into our PEL whose reply we never read: adopt them again
            self._readopt = True
            raise
        self._accept_new(answer, owned, max_records, out, blocked)

    def _accept_new(
        self, answer: Any, owned: list[int], max_records: int, out: list[Delivery], blocked: dict[int, set[str | None]]
    ) -> bool:
        """Sort new records read into ``out`` (up to ``max_records``) or the backlog; return whether any came.

        A record whose key is held back (behind a retry, or behind a record
        already in the backlog) goes to the backlog, and so does everything
        after ``out`` is full: per-key order is kept.
        """
        index = {self._keys.stream(self.topic, p).encode(): p for p in owned}
        got = False
        for stream, entries in answer.items() if isinstance(answer, dict) else answer or []:
            p = index[stream if isinstance(stream, bytes) else stream.encode()]
            keys = blocked.setdefault(p, set())
            backlog = self._owned[p].backlog
            for delivery in rec.flat_entry_deliveries(self.topic, p, entries):
                got = True
                if delivery.key in keys or len(out) >= max_records:
                    if delivery.key is not None:
                        keys.add(delivery.key)
                    backlog.append(delivery)
                else:
                    out.append(delivery)
        return got

    async def settle(self, settlement: Settlement) -> None:
        """Apply ``settlement`` atomically (see :mod:`.settling`), or raise BrokerError and apply none of it.

        Raises LeaseLost, applying nothing, if this member no longer holds a
        partition it settles under the lease it fetched it with, or could not
        renew its leases in time; fetch and settle then raise it until closed.
        """
        if self._closed:
            raise BrokerClosed(f"this subscription to {self.topic!r} is closed")
        deliveries = settlement.check(self.topic, self._held, self.group)
        self._lease.check("settle")
        if settlement.retries:
            self._quiet_until = 0.0  # the next fetch must see the schedule (see _waiting)
        settling = self._settling = asyncio.get_running_loop().create_future()
        try:
            await self._settler.write(settlement, deliveries)
        except LeaseLost as exc:
            self._held.clear()  # all of it is the new owners' now
            await self._broker.judge(exc, "a settle", self.topic, self.group)  # the fence refuses one into a flush
            raise
        finally:
            self._settling = None
            settling.set_result(None)
        if len(deliveries) == len(self._held):  # the whole of what is held (check() allows no duplicates)
            self._held.clear()
        else:
            for delivery in deliveries:
                self._held.pop((delivery.partition, delivery.offset), None)

    async def seen(self, keys: Sequence[str]) -> set[str]:
        """Return which ``keys`` this group's inbox holds (one ZMSCORE)."""
        if not keys:
            return set()
        async with translated(f"read the inbox of {self.group!r}"):
            scores = await self._client.zmscore(self._gkeys.inbox, list(keys))
        return {key for key, score in zip(keys, scores, strict=True) if score is not None}

    async def close(self) -> None:
        """Leave the group: release leases at once; unsettled records stay pending for the next owner. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self._broker.keepalive.discard(self._lease)
        self._broker.forget(self)
        self._held.clear()
        async with translated(f"leave group {self.group!r}"):
            if self._lease.lost is None:
                await self._release(list(self._owned))
            # else: what it read is the new owners' now; claiming it back would move their pending entries
            self._owned.clear()
            await self._broker.leave_script(keys=self._lease.keys, args=[self.member])
