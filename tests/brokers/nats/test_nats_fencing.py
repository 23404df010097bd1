"""Lease fencing on NATS, on a real nats-server: a member whose lease lapsed acks nothing it held.

A member's leases are KV entries that expire ``lease_timeout`` after their
last write. The broker's keepalive thread renews them, so a handler blocking
the loop keeps them; a member whose renewals stopped (a frozen process,
simulated here by taking it off the keepalive) loses them, and its next
settle must find that out and refuse, before writing or acking anything.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest

from choreograph.brokers.nats import NatsBroker
from choreograph.brokers.nats.subscription import NatsSubscription
from choreograph.core.broker import Record, Settlement, Subscription
from choreograph.core.errors import LeaseLost
from tests.brokers.fetching import fetch_exactly

from .server import NatsServer

LEASE = 1.0


@pytest.fixture
async def broker(nats_server: NatsServer) -> AsyncIterator[NatsBroker]:
    """A broker with one-second leases and a short ack deadline, on its own prefix."""
    url = f"{nats_server.url}?prefix=f{uuid.uuid4().hex[:8]}&partitions=1&lease_timeout={LEASE}&ack_wait=2"
    opened = NatsBroker.from_url(url)
    yield opened
    await opened.close()


async def test_a_settle_after_the_loop_blocked_past_the_lease_is_refused(broker: NatsBroker) -> None:
    # Given a member holding two records of its only partition
    await broker.publish("t", [Record(b"a", "k"), Record(b"b", "k")])
    stale = await broker.subscribe("t", "g")
    held = await fetch_exactly(stale, 2)

    # When its renewals stop and its loop is blocked past the lease (its entry expires)
    _stop_renewals(broker, stale)
    time.sleep(LEASE + 1.5)  # blocking the loop is the fault under test

    # Then its settle is refused before anything is written or acked
    with pytest.raises(LeaseLost):
        await stale.settle(Settlement(acks=held, outputs=[("out", Record(b"output", "k"))]))
    assert not await _exists(broker, "out"), "the output was written"
    await stale.close()
    # and the records come back to the next member, once their ack deadline passed
    fresh = await broker.subscribe("t", "g")
    again = await fetch_exactly(fresh, 2)
    assert sorted(d.value for d in again) == [b"a", b"b"]
    await fresh.settle(Settlement(acks=again))
    await fresh.close()


async def test_a_record_sent_again_while_held_is_not_handed_out_twice_and_its_stale_settle_is_refused(
    broker: NatsBroker,
) -> None:
    # Given a member that fetched a record, then stopped renewing and blocked its loop past the lease and ack_wait
    await broker.publish("t", [Record(b"a", "k")])
    stale = await broker.subscribe("t", "g")
    held = await fetch_exactly(stale, 1)
    _stop_renewals(broker, stale)
    time.sleep(LEASE + 1.5)  # blocking the loop is the fault under test

    # When its maintenance takes the partition back and JetStream sends the record again
    again = await stale.fetch(10, 3.0)

    # Then the record is not handed out a second time while its first delivery is held,
    # and the first delivery's settle is refused: it was fetched under the lease that lapsed
    assert again == []
    with pytest.raises(LeaseLost):
        await stale.settle(Settlement(acks=held))
    await stale.close()
    fresh = await broker.subscribe("t", "g")
    assert [d.value for d in await fetch_exactly(fresh, 1)] == [b"a"]
    await fresh.close()


async def test_a_blocked_event_loop_keeps_its_leases(broker: NatsBroker) -> None:
    # Given a member holding a record
    await broker.publish("t", [Record(b"a", "k")])
    holder = await broker.subscribe("t", "g")
    held = await fetch_exactly(holder, 1)

    # When a handler blocks the event loop for two and a half leases
    time.sleep(2.5 * LEASE)  # blocking the loop is the fault under test

    # Then the keepalive thread kept its lease: a newcomer gets nothing, and the settle goes through
    newcomer = await broker.subscribe("t", "g")
    assert await newcomer.fetch(10, 0.5) == []
    await holder.settle(Settlement(acks=held, outputs=[("out", Record(b"output", "k"))]))
    assert [d.value for d in await broker.read("out")] == [b"output"]
    await newcomer.close()
    await holder.close()


def _stop_renewals(broker: NatsBroker, subscription: Subscription) -> None:
    """Take a member off the keepalive thread (its loop does not renew either): as if its process froze."""
    assert isinstance(subscription, NatsSubscription)
    broker.keepalive.discard(subscription._leases)


async def _exists(broker: NatsBroker, topic: str) -> bool:
    return topic in {info.name for info in await broker.topics()}
