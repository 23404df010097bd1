"""Partition leases in a JetStream KV bucket: how members of a group split a topic's partitions.

Per-key order needs each partition's records handled by one member at a
time, which a shared JetStream consumer does not give. So each member of
(topic, group):

1. registers itself under ``<pair>.m.<member>`` and refreshes that key every
   ``heartbeat_interval``; the bucket's TTL (``lease_timeout``) forgets
   members that stopped heartbeating (crashed processes);
2. computes the partitions it should own: live members sorted by id, member
   ``i`` of ``n`` takes partitions ``p`` with ``p % n == i``;
3. takes a wanted partition whose lease key ``<pair>.p.<p>`` is free by a
   compare-and-set create, renews the leases it keeps by compare-and-set
   update (a failed CAS means the lease expired and someone else has it),
   and gives up unwanted partitions once nothing of them is in flight.

Each CAS is JetStream's ``Nats-Expected-Last-Subject-Sequence`` check, so
two members never both believe they took the same free lease.

Fencing. A lease entry lives ``lease_timeout`` after its last write (the
bucket's TTL), and nobody takes a partition whose entry exists, so a member
holds a partition for ``lease_timeout`` from the moment it sent its last
successful CAS — measured here on the monotonic clock. A settle calls
:meth:`Leases.confirm` first: it renews by CAS any lease not renewed recently
(the CAS fails if the entry expired or another member holds it: the settle is
refused with LeaseLost), and :meth:`Leases.valid` before its acks. A member
whose leases lapsed therefore never acks what its successor now owns; what
it wrote before the check is deduplicated (outputs carry ``Nats-Msg-Id``,
inbox keys and dead letters are keyed writes).

Renewal off the event loop. The broker's :class:`~.keepalive.Keepalive`
thread, with its own connection, refreshes the member key and renews every
lease (:meth:`Leases.keep`), so a handler that blocks the loop does not lose
them; the loop then only takes, gives up and checks. Both sides share the
revisions under a thread lock.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field

import nats.js.errors
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from choreograph.brokers.nats import direct
from choreograph.brokers.nats.translation import translated
from choreograph.core.errors import LeaseLost

_WRONG_LAST = (10071, 10164)
_EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"


@dataclass(slots=True)
class Plan:
    """What one membership check decided for this member."""

    take: set[int] = field(default_factory=set)
    give_up: set[int] = field(default_factory=set)
    lost: set[int] = field(default_factory=set)


class Leases:
    """The partition leases of one member of one (topic, group).

    Loop-side operations (check, confirm, release, leave) run one at a time;
    :meth:`keep` runs on the keepalive thread, concurrently with them.
    """

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        *,
        bucket: str,
        pair: str,
        member: str,
        partitions: int,
        request_timeout: float,
        lease_timeout: float,
    ) -> None:
        self._nc = nc
        self._js = js
        self._bucket = bucket
        self._stream = f"KV_{bucket}"
        self._pair = pair
        self.member = member
        self._partitions = partitions
        self._timeout = request_timeout
        self._lease_timeout = lease_timeout
        self.owned: dict[int, int] = {}
        """Partition -> revision of our lease entry."""
        self._renewed: dict[int, float] = {}
        """Partition -> monotonic time our last successful write of its lease entry was sent."""
        self._lock = asyncio.Lock()
        """One loop-side operation at a time: the maintenance task and a settle's confirm would race on revisions."""
        self._state = threading.Lock()
        """Guards owned, _renewed and _dropped, shared with the keepalive thread."""
        self._dropped: set[int] = set()
        """Partitions the keepalive thread found lost, until the next check reports them."""
        self.kept_alive = False
        """Set while the keepalive thread renews these leases: the loop then never renews them itself."""

    def _won(self, partition: int, revision: int, sent_at: float) -> None:
        with self._state:
            self.owned[partition] = revision
            self._renewed[partition] = sent_at

    def _lose(self, partition: int) -> None:
        with self._state:
            self.owned.pop(partition, None)
            self._renewed.pop(partition, None)

    def _subject(self, key: str) -> str:
        return f"$KV.{self._bucket}.{self._pair}.{key}"

    async def _cas(self, key: str, value: bytes, last: int) -> int | None:
        try:
            ack = await self._js.publish(
                self._subject(key), value, headers={_EXPECTED_LAST: str(last)}, timeout=self._timeout
            )
        except nats.js.errors.APIError as exc:
            if exc.err_code in _WRONG_LAST:
                return None
            with translated("lease write"):
                raise
        except Exception as exc:
            with translated("lease write"):
                raise exc
        return int(ack.seq)

    async def register(self) -> None:
        """Announce (or refresh) this member."""
        with translated("member registration"):
            await self._js.publish(self._subject(f"m.{self.member}"), b"", timeout=self._timeout)

    async def check(self, *, renew: bool) -> Plan:
        """Read members and leases; take free wanted partitions, renew kept ones (when ``renew``).

        Unwanted partitions are reported in ``give_up`` but kept until
        :meth:`release`, so the caller can first settle what it holds of them.
        """
        async with self._lock:
            return await self._check(renew=renew)

    async def _check(self, *, renew: bool) -> Plan:
        renew = renew and not self.kept_alive
        with translated("lease check"):
            state = await direct.last_values(
                self._nc, self._stream, [self._subject("m.*"), self._subject("p.*")], self._timeout
            )
        prefix_m, prefix_p = self._subject("m."), self._subject("p.")
        members = sorted(
            s.subject[len(prefix_m) :] for s in state.values() if s.subject.startswith(prefix_m) and not s.deleted
        )
        if self.member not in members:
            members = sorted([*members, self.member])
        index, count = members.index(self.member), len(members)
        wanted = {p for p in range(self._partitions) if p % count == index}
        leases = {int(s.subject[len(prefix_p) :]): s for s in state.values() if s.subject.startswith(prefix_p)}
        plan = Plan()
        with self._state:
            plan.lost.update(self._dropped)
            self._dropped.clear()
        for p, revision in list(self.owned.items()):
            entry = leases.get(p)
            # the keepalive thread may have renewed it since the read: a different revision of ours is still ours
            if entry is None or entry.deleted or entry.data != self.member.encode():
                self._lose(p)
                plan.lost.add(p)
            else:
                if p not in wanted:
                    plan.give_up.add(p)
                if not renew:
                    continue
                # a partition being given up stays ours until released: renewed like the others, or it could
                # expire while its last records are still handed back, and a new owner overtake them
                sent_at = time.monotonic()
                new = await self._cas(f"p.{p}", self.member.encode(), revision)
                if new is None:
                    self._lose(p)
                    plan.give_up.discard(p)
                    plan.lost.add(p)
                else:
                    self._won(p, new, sent_at)
        for p in sorted(wanted - set(self.owned)):
            entry = leases.get(p)
            if entry is not None and not entry.deleted:
                continue  # held by another member until it gives it up or its lease expires
            sent_at = time.monotonic()
            new = await self._cas(f"p.{p}", self.member.encode(), 0 if entry is None else entry.seq)
            if new is not None:
                self._won(p, new, sent_at)
                plan.take.add(p)
        return plan

    def valid(self, partitions: Collection[int], *, margin: float = 0.0) -> list[int]:
        """Return which of ``partitions`` this member cannot be sure to hold for ``margin`` more seconds."""
        deadline = time.monotonic() + margin - self._lease_timeout
        return sorted(p for p in partitions if self._renewed.get(p, -math.inf) <= deadline)

    async def confirm(self, partitions: Collection[int], *, margin: float) -> None:
        """Make sure this member holds ``partitions`` for ``margin`` more seconds, or raise LeaseLost.

        Leases renewed less than ``lease_timeout - margin`` ago are certainly
        held (nobody takes a live entry): no round trip. Older ones are
        renewed now by CAS (concurrently); a failed CAS means the entry
        expired or another member has it, and the partition is dropped here.
        """
        async with self._lock:
            unknown = sorted(p for p in partitions if p not in self.owned)
            with self._state:
                stale = {p: self.owned[p] for p in self.valid(partitions, margin=margin) if p in self.owned}
            if stale:
                sent_at = time.monotonic()
                revisions = await asyncio.gather(
                    *(self._cas(f"p.{p}", self.member.encode(), last) for p, last in stale.items())
                )
                for (p, last), revision in zip(stale.items(), revisions, strict=True):
                    if revision is not None:
                        self._won(p, revision, sent_at)
                    elif not self._moved_on(p, last, margin):
                        self._lose(p)
                        unknown.append(p)
        if unknown:
            raise LeaseLost(f"member {self.member} no longer holds partitions {sorted(unknown)} of {self._pair}")

    def _moved_on(self, partition: int, last: int, margin: float) -> bool:
        """Whether the keepalive thread renewed ``partition`` past revision ``last`` (so a CAS on it failed)."""
        with self._state:
            return self.owned.get(partition, last) != last and not self.valid([partition], margin=margin)

    async def keep(self, js: JetStreamContext) -> None:
        """Refresh the member key and renew every lease through ``js`` (the keepalive thread's own connection).

        A lease whose CAS fails is lost (expired, or another member has it):
        it is dropped here and reported by the next :meth:`check`. Raises the
        client's errors (the caller logs them and tries again next round).
        """
        with self._state:
            owned = dict(self.owned)
        await js.publish(self._subject(f"m.{self.member}"), b"", timeout=self._timeout)
        for p, last in owned.items():
            sent_at = time.monotonic()
            try:
                ack = await js.publish(
                    self._subject(f"p.{p}"), self.member.encode(), headers={_EXPECTED_LAST: str(last)},
                    timeout=self._timeout,
                )  # fmt: skip
            except nats.js.errors.APIError as exc:
                if exc.err_code not in _WRONG_LAST:
                    raise
                if not await self._still_ours(js, p):
                    with self._state:
                        if self.owned.get(p) == last:  # not released or renewed by the loop meanwhile
                            self.owned.pop(p)
                            self._renewed.pop(p, None)
                            self._dropped.add(p)
                continue
            with self._state:
                if self.owned.get(p) == last:
                    self.owned[p] = int(ack.seq)
                    self._renewed[p] = sent_at
                    continue
            if p not in self.owned:  # released by the loop while we renewed it: undo our write
                await js.publish(
                    self._subject(f"p.{p}"), b"", headers={direct.KV_OPERATION: "DEL", _EXPECTED_LAST: str(ack.seq)},
                    timeout=self._timeout,
                )  # fmt: skip

    async def _still_ours(self, js: JetStreamContext, partition: int) -> bool:
        """Whether the lease entry of ``partition`` names this member (a settle's confirm renewed it meanwhile)."""
        try:
            entry = await js.get_last_msg(self._stream, self._subject(f"p.{partition}"))
        except nats.js.errors.NotFoundError:
            return False
        operation = (entry.headers or {}).get(direct.KV_OPERATION)
        return operation is None and entry.data == self.member.encode()

    async def release(self, partition: int) -> None:
        """Give up ``partition`` (only if we still hold it). Idempotent."""
        async with self._lock:
            await self._release(partition)

    async def _release(self, partition: int) -> None:
        with self._state:
            revision = self.owned.pop(partition, None)
            self._renewed.pop(partition, None)
        if revision is not None:
            await self._delete(f"p.{partition}", revision)

    async def leave(self) -> None:
        """Release every lease and deregister. Idempotent."""
        async with self._lock:
            for p in list(self.owned):
                await self._release(p)
            await self._delete(f"m.{self.member}", None)

    async def _delete(self, key: str, last: int | None) -> None:
        headers = {direct.KV_OPERATION: "DEL"}
        if last is not None:
            headers[_EXPECTED_LAST] = str(last)
        try:
            await self._js.publish(self._subject(key), b"", headers=headers, timeout=self._timeout)
        except nats.js.errors.APIError as exc:
            if exc.err_code in _WRONG_LAST:
                return  # someone else holds it now: nothing of ours to release
            with translated("lease release"):
                raise
        except Exception as exc:
            with translated("lease release"):
                raise exc
