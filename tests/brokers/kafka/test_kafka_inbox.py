"""The Kafka inbox keeps dedupe keys for ``inbox_retention``, then forgets them and deletes their records."""

from __future__ import annotations

import uuid

from choreograph.brokers.kafka import KafkaBroker
from choreograph.core.broker import Record, Settlement
from choreograph.core.clock import FakeClock

from .server import TansuServer

OPTIONS = "partitions=2&idempotent=false&persistent=false&session_timeout=6&heartbeat_interval=1&inbox_retention=60"


async def test_inbox_keys_expire_after_the_retention_and_their_records_are_deleted(kafka_server: TansuServer) -> None:
    clock = FakeClock()
    url = f"kafka://{kafka_server.bootstrap}?{OPTIONS}&state_topic=__state_{uuid.uuid4().hex[:8]}"
    broker = KafkaBroker.from_url(url, clock=clock)
    other = KafkaBroker.from_url(url, clock=clock)  # another process reading the same state topic
    try:
        await broker.publish("t", [Record(b"a", "k1"), Record(b"b", "k2")])
        sub = await broker.subscribe("t", "g")
        got = []
        while len(got) < 2:
            got.extend(await sub.fetch(10, 10))
        # Given a key stored at t0 and another 40 s later
        await sub.settle(Settlement(acks=[got[0]], inbox=["old"]))
        clock.advance(40)
        await sub.settle(Settlement(acks=[got[1]], inbox=["new"]))
        assert await sub.seen(["old", "new"]) == {"old", "new"}
        # When the first one is past the 60 s retention
        clock.advance(30)
        # Then it no longer counts, here and in another process
        assert await sub.seen(["old", "new"]) == {"new"}
        state = await other.state()
        assert state.seen("g", ["old", "new"]) == {"new"}
        # And expiring deletes its record from the topic: a fresh reader never learns it
        table = await broker.state(fresh=False)
        assert await table.expire() == 1
        assert await table.expire() == 0
        late = KafkaBroker.from_url(url, clock=FakeClock(start=clock.now() - 70))  # a clock at t0 would count it
        try:
            assert (await late.state()).seen("g", ["old", "new"]) == {"new"}
        finally:
            await late.close()
        await sub.close()
    finally:
        await other.close()
        await broker.close()
