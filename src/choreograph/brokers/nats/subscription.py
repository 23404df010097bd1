"""One member of a consumer group: pulls its leased partitions, settles batches.

Pulling. For each partition it leases, the member keeps one pull request
open on the partition's durable consumer (``batch`` up to ``prefetch``,
expiring after ``PULL_EXPIRES``); records land in a per-partition buffer and
:meth:`fetch` hands them out in stream order, so no fetch costs a round trip
while records are flowing. A request the server never answers (a leader
change) is given up after its expiry plus a grace period and re-issued.

Order after a crash or an outage. Records an earlier owner received and
never acknowledged come back only when their ``ack_wait`` runs out, and the
server meanwhile hands out later records: a member taking a partition (or
finding its connection re-established) asks the partition consumer how many
records are pending below its delivered sequence, and holds the partition's
later records back until those have come back (at most ``ack_wait`` plus a
grace period; past it, it goes on and says so). So a key's records are
handled in stream order across a kill -9 or a broker restart, at the cost of
up to ``ack_wait`` of waiting on the partitions the dead member held.

Settling, fencing and the inbox lookup are in :mod:`.settling`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Final

from nats.aio.msg import Msg

from choreograph.brokers.nats.bookkeeping import Bookkeeping
from choreograph.brokers.nats.leases import Leases
from choreograph.brokers.nats.link import BrokerLink
from choreograph.brokers.nats.native import translate as translate_headers
from choreograph.brokers.nats.pulling import (
    GRACE,
    PULL_EXPIRES,
    _ack_fields,
    _Held,
    _log_failure,
    _Partition,
    _partition_of,
    _sequence,
)
from choreograph.brokers.nats.settling import Settling
from choreograph.brokers.nats.translation import translated
from choreograph.core.broker import Delivery
from choreograph.core.errors import BrokerClosed, BrokerError, ConfigurationError

logger = logging.getLogger("choreograph.brokers.nats")

_CHECK_INTERVAL: Final = 0.25
"""Seconds between two rounds of lease maintenance."""


class NatsSubscription(Settling):
    """A member of ``group`` on ``topic``. Not safe for concurrent use (one consumer loop)."""

    def __init__(self, broker: BrokerLink, topic: str, group: str, partitions: int, member: str) -> None:
        self._broker = broker
        self.topic = topic
        self.group = group
        names = broker.names
        self._names = names
        self._stream = names.stream(topic)
        pair = names.pair(topic, group)
        self._nc = broker.connection
        self._js = broker.jetstream
        config = broker.config
        self._config = config
        self._leases = Leases(
            self._nc,
            self._js,
            bucket=names.lease_bucket,
            pair=pair,
            member=member,
            partitions=partitions,
            request_timeout=config.request_timeout,
            lease_timeout=config.lease_timeout,
        )
        self._book = Bookkeeping(
            self._nc, broker.send_acked, bucket=names.inbox_bucket, pair=pair, timeout=config.request_timeout
        )
        self._inbox_prefix = self._nc.new_inbox()
        self._inbox_group = f"$KV.{names.inbox_bucket}.{names.inbox_group(group)}"
        self._subjects: dict[str, str] = {}
        self._parts: dict[int, _Partition] = {}
        self._draining: set[int] = set()
        self._held: dict[tuple[int, int], _Held] = {}
        self._late: list[Msg] = []
        self._ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._turn = 0
        self._closed = False
        self._sub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._last_renew = 0.0
        self._reconnects = self._reconnect_count()

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Subscribe the pull inbox, register, take partitions and start the maintenance loop."""
        with translated("subscribe"):
            self._sub = await self._nc.subscribe(f"{self._inbox_prefix}.*", cb=self._on_message)
        await self._leases.register()
        await self._rebalance(renew=True)
        self._broker.keepalive.add(self._leases)  # renewals from now on run off this loop
        self._task = asyncio.create_task(self._maintain(), name=f"nats-leases:{self.group}")

    async def close(self) -> None:
        """Leave the group: hand back what is held or buffered, release leases. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._broker.keepalive.discard(self._leases)
        if self._task is not None:  # let it finish its round: a cancelled hand-back would strand records
            with contextlib.suppress(BrokerError):
                await self._task
        self._ready.set()
        for part in self._parts.values():
            part.active = False
        await self._await_open_pulls()
        held = [h.msg for h in self._held.values()]
        self._held.clear()
        returned = list(self._late)
        self._late.clear()
        for part in self._parts.values():
            returned.extend(part.buffer)
            part.buffer.clear()
        try:
            with translated("close"):
                await self._book.count_returned([(_partition_of(m), _sequence(m)) for m in returned])
                await self._nak_confirmed(sorted((*held, *returned), key=_sequence))
                if self._sub is not None:
                    await self._sub.unsubscribe()
            await self._leases.leave()
        except BrokerError as exc:
            logger.warning(
                "left group %s on %s uncleanly (leases expire by themselves): %s", self.group, self.topic, exc
            )
        finally:
            self._broker.forget(self)

    async def _await_open_pulls(self) -> None:
        """Wait (bounded by their expiry) until no pull request of ours is open on the server.

        A record the server sends to an inbox nobody listens on any more would
        only come back after ``ack_wait``, behind later records of its key.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PULL_EXPIRES + self._config.request_timeout
        while any(self._pull_open(p, time.monotonic()) for p in self._parts.values()):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), remaining)

    # -- fetch ----------------------------------------------------------------

    async def fetch(self, max_records: int, timeout: float) -> Sequence[Delivery]:
        """Wait up to ``timeout`` seconds for up to ``max_records`` records of the leased partitions.

        Per partition in stream order. Returns what is buffered at once; waits
        only when nothing is.
        """
        if self._closed:
            raise BrokerClosed(f"this subscription of {self.group!r} to {self.topic!r} is closed")
        if max_records < 1:
            raise ConfigurationError(f"max_records must be >= 1, got {max_records}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while True:
            self._broker.storage.check()  # the maintenance loop found the server's data lost: stop here
            self._ready.clear()
            taken = self._take(max_records)
            if taken:
                out = await self._deliveries(taken)
                if out:
                    return out
                continue  # all of it was sent again while held here (see _deliveries)
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closed:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), remaining)

    def _take(self, max_records: int) -> list[tuple[int, Msg]]:
        now = time.monotonic()
        active = [part for part in self._parts.values() if part.active and part.buffer and self._released(part, now)]
        if not active:
            return []
        self._turn += 1
        start = self._turn % len(active)
        taken: list[tuple[int, Msg]] = []
        for part in active[start:] + active[:start]:
            while part.buffer and len(taken) < max_records:
                taken.append((part.number, part.buffer.popleft()))
            self._request(part, now)
        return taken

    def _released(self, part: _Partition, now: float) -> bool:
        """Whether ``part`` may hand out records: no hold, or the hold just ended (then its buffer is put in order)."""
        if part.hold_upto == 0:
            return True
        if part.holding(now):
            self._request(part, now)  # keep pulling: the redeliveries come through pulls too
            return False
        if part.awaiting > 0:
            logger.warning(
                "%s/%s partition %d: %d record(s) pending since an earlier owner did not come back within %.0fs; "
                "going on (records of their keys may now be handled out of order)",
                self.topic,
                self.group,
                part.number,
                part.awaiting,
                self._config.ack_wait,
            )
        part.buffer = deque(sorted(part.buffer, key=_sequence))
        part.hold_upto = part.awaiting = 0
        return True

    async def _hold_for_pending(self, part: _Partition) -> None:
        """Hold ``part``'s later records while records delivered before (to a dead member, or before an outage)
        are pending redelivery."""
        with translated("partition consumer info"):
            info = await self._js.consumer_info(self._stream, part.consumer, timeout=self._config.request_timeout)
        pending = int(info.num_ack_pending or 0)
        delivered = info.delivered.stream_seq if info.delivered is not None else 0
        if pending <= 0 or not delivered:
            return
        part.hold_upto = int(delivered)
        # records already buffered or held here are not coming back
        mine = sum(1 for m in part.buffer if _sequence(m) <= part.hold_upto)
        mine += sum(1 for (q, _), h in self._held.items() if q == part.number and h.seq <= part.hold_upto)
        part.awaiting = max(0, pending - mine)
        part.hold_until = time.monotonic() + self._config.ack_wait + 2 * self._config.request_timeout
        if part.awaiting:
            logger.info(
                "%s/%s partition %d: %d record(s) pending redelivery; later records wait for them (up to %.0fs)",
                self.topic,
                self.group,
                part.number,
                part.awaiting,
                part.hold_until - time.monotonic(),
            )

    async def _deliveries(self, taken: list[tuple[int, Msg]]) -> list[Delivery]:
        fields = [_ack_fields(msg) for _, msg in taken]
        redelivered = [(p, seq) for (p, _), (delivered, seq, _) in zip(taken, fields, strict=True) if delivered > 1]
        try:
            entries = await self._book.read(redelivered)
        except BrokerError:
            for p, msg in reversed(taken):  # put them back; the next fetch tries again
                self._parts[p].buffer.appendleft(msg)
            raise
        out = []
        now = time.monotonic()
        held = self._held
        topic = self.topic
        for (p, msg), (delivered, seq, stored_ns) in zip(taken, fields, strict=True):
            headers, key, offset, fault = translate_headers(msg.headers, seq, msg.subject)
            entry = entries.get((p, seq)) if entries else None
            earlier = held.get((p, offset))
            if earlier is not None and earlier.seq != seq:  # a resubmission of another record held: keep them apart
                offset, fault = -seq, fault or f"resubmitted with offset {offset}, which this member holds already"
                earlier = held.get((p, offset))
            if earlier is not None:
                # Sent again while still held here (its ack_wait ran out, e.g. a handler blocked the loop): handing
                # it out again would run it twice at once. The held delivery answers for both, through the newest
                # reply subject; if its lease was lost meanwhile, its settle is refused and the next owner gets it.
                earlier.msg, earlier.touched = msg, now
                continue
            held[(p, offset)] = _Held(msg, seq, now, entry, self._parts.get(p))
            out.append(
                Delivery(
                    topic=topic,
                    partition=p,
                    offset=offset,
                    value=msg.data,
                    key=key,
                    headers=headers,
                    timestamp=stored_ns / 1e9,
                    attempt=max(1, delivered - (entry.returned if entry else 0)),
                    first_failure=entry.first_failure if entry else None,
                    fault=fault,
                )
            )
        return out

    # -- settle, inbox: inherited from Settling (settling.py) ---------------------

    # -- pulling ------------------------------------------------------------------

    def _request(self, part: _Partition, now: float) -> None:
        """Open a pull request for ``part`` when none is open and its buffer is low."""
        if not part.active or self._closed:
            return
        if part.requested and now < part.deadline:
            return
        want = self._config.prefetch - len(part.buffer)
        if part.hold_upto and part.awaiting and len(part.buffer) < 8 * self._config.prefetch:
            # Held back, the buffer may fill with later records: pull on so the pending ones (which the
            # server sends first once due) can arrive. Bounded to a few prefetches.
            want = max(want, min(part.awaiting, self._config.prefetch))
        elif part.buffer and want < self._config.prefetch // 2:
            return
        part.requested = want
        part.deadline = now + PULL_EXPIRES + GRACE
        body = b'{"batch":%d,"expires":%d}' % (want, int(PULL_EXPIRES * 1e9))
        request = self._nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{part.consumer}",
            body,
            reply=f"{self._inbox_prefix}.{part.number}",
        )
        asyncio.ensure_future(request).add_done_callback(_log_failure)

    async def _on_message(self, msg: Msg) -> None:
        headers = msg.headers
        status = headers.get("Status") if headers else None
        if status is not None:
            try:
                part = self._parts.get(int(msg.subject.rsplit(".", 1)[1]))
            except ValueError:
                part = None
            if status != "100" and part is not None:
                part.requested = 0
                self._request(part, time.monotonic())
                self._ready.set()
            return
        part = self._parts.get(_partition_of(msg))
        if part is None or not part.active or self._closed:
            self._late.append(msg)  # arrived after we stopped pulling: handed back before the lease goes
            if part is not None:
                part.requested = max(0, part.requested - 1)
            return
        part.requested = max(0, part.requested - 1)
        if part.awaiting and _sequence(msg) <= part.hold_upto:
            part.awaiting -= 1
        part.buffer.append(msg)
        self._ready.set()
        if part.requested == 0:
            self._request(part, time.monotonic())

    async def _stop_pulling(self, p: int) -> None:
        """Stop pulling ``p`` (its lease is lost) and hand back its buffered records, not counting them as attempts."""
        part = self._parts.get(p)
        if part is None:
            return
        part.active = False
        msgs = list(part.buffer)
        part.buffer.clear()
        await self._hand_back(p, msgs)

    async def _hand_back(self, p: int, msgs: list[Msg]) -> None:
        if not msgs:
            return
        await self._book.count_returned([(p, _sequence(msg)) for msg in msgs])
        await self._nak_confirmed(msgs)

    async def _nak_confirmed(self, msgs: Sequence[Msg]) -> None:
        """Nak ``msgs`` in order and wait until JetStream processed every nak.

        JetStream redelivers nak'ed records in the order it processed the
        naks, and processes acks apart from pull requests: confirming the naks
        before a lease is released keeps the next owner from pulling a later
        record first.
        """
        if not msgs:
            return
        timeout = self._config.request_timeout
        with translated("hand back records"):
            replies = [asyncio.ensure_future(self._nc.request(m.reply, b"-NAK", timeout=timeout)) for m in msgs]
            await asyncio.gather(*replies)

    async def _return_late(self) -> None:
        """Hand back, in stream order, records that arrived for partitions we no longer pull or drain."""
        late = [m for m in self._late if _partition_of(m) not in self._draining]
        if not late:
            return
        self._late = [m for m in self._late if _partition_of(m) in self._draining]
        by_partition: dict[int, list[Msg]] = {}
        for msg in late:
            by_partition.setdefault(_partition_of(msg), []).append(msg)
        for p, msgs in by_partition.items():
            await self._hand_back(p, sorted(msgs, key=_sequence))

    # -- leases -------------------------------------------------------------------

    async def _maintain(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), _CHECK_INTERVAL)
            if self._closed:
                return
            now = time.monotonic()
            try:
                await self._return_late()
                reconnects = self._reconnect_count()
                if reconnects != self._reconnects:
                    # acks sent around an outage may be lost: what they covered comes back after ack_wait
                    self._reconnects = reconnects
                    for part in list(self._parts.values()):
                        if part.active:
                            await self._hold_for_pending(part)
                self._keep_alive(now)
                renew = loop.time() - self._last_renew >= self._config.heartbeat_interval
                if renew:
                    await self._leases.register()
                await self._rebalance(renew=renew)
                for part in self._parts.values():
                    self._request(part, now)
                await self._broker.check_storage()
            except BrokerError as exc:
                if await self._broker.lost_storage(exc, f"a failed lease renewal of group {self.group!r}"):
                    self._ready.set()  # wake fetch: it raises the loss
                    return
                logger.warning("lease maintenance of %s on %s failed, retrying: %s", self.group, self.topic, exc)

    async def _rebalance(self, *, renew: bool) -> None:
        plan = await self._leases.check(renew=renew)
        if renew:
            self._last_renew = asyncio.get_running_loop().time()
        for p in plan.lost:
            await self._stop_pulling(p)
            self._parts.pop(p, None)
            self._draining.discard(p)
        for p in plan.give_up:
            part = self._parts.get(p)
            if part is not None:
                # Its buffered records are handed back with the lease, once no pull of ours can deliver:
                # a record nak'ed while a pull is open comes straight back to us, out of order.
                part.active = False
            self._draining.add(p)
        await self._release_drained()
        now = time.monotonic()
        for p in plan.take:
            part = self._parts[p] = _Partition(p, self._names.consumer(self.group, p))
            try:
                await self._hold_for_pending(part)
            except BrokerError as exc:
                # the consumer may not exist yet (a new group): nothing can be pending on it
                logger.debug("no pending check for %s partition %d: %s", self.group, p, exc)
            self._request(part, now)

    async def _release_drained(self) -> None:
        """Release leases being given up once nothing of them is held and their pull is over."""
        await self._return_late()
        now = time.monotonic()
        for p in sorted(self._draining):
            part = self._parts.get(p)
            if any(q == p for q, _ in self._held):
                continue
            if part is not None and self._pull_open(part, now):
                continue
            # No pull of p can deliver any more, so what is handed back now stays with the server, which
            # gives it to the next owner first, in the order of the naks: stream order.
            msgs = [m for m in self._late if _partition_of(m) == p]
            self._late = [m for m in self._late if _partition_of(m) != p]
            if part is not None:
                msgs.extend(part.buffer)
                part.buffer.clear()
            await self._hand_back(p, sorted(msgs, key=_sequence))
            self._draining.discard(p)
            self._parts.pop(p, None)
            await self._leases.release(p)

    def _pull_open(self, part: _Partition, now: float) -> bool:
        """Whether a pull request of ``part`` may still deliver (unanswered, not long past its expiry)."""
        return part.requested > 0 and now < part.deadline + self._config.request_timeout

    def _reconnect_count(self) -> int:
        stats = getattr(self._nc, "stats", None)
        return int(stats.get("reconnects", 0)) if isinstance(stats, dict) else 0

    def _keep_alive(self, now: float) -> None:
        """Tell JetStream that held records are still being worked on, so ``ack_wait`` does not expire."""
        limit = self._config.ack_wait / 3
        stale = []
        for held in self._held.values():
            if now - held.touched > limit:
                held.touched = now
                stale.append(held.msg)
        for part in self._parts.values():
            if now - part.touched > limit:
                part.touched = now
                stale.extend(part.buffer)
        for msg in stale:
            asyncio.ensure_future(msg.in_progress()).add_done_callback(_log_failure)
