"""A dead letter Kafka cannot take is parked: the record is kept and comes back later, the partition moves on.

A dead letter is bigger than its record: beside the value (in chunks when
big) it holds the error and the stack. A handler error whose message quotes
a large payload makes an entry over the producer's request limit, which no
retry can mend; the record is then parked rather than the settle failing for
ever (and the partition stalling behind it).
"""

from __future__ import annotations

import uuid

from choreograph.brokers.kafka import KafkaBroker
from choreograph.core.broker import DeadLetter, Delivery, Record, Settlement
from choreograph.core.clock import FakeClock
from choreograph.core.ids import new_id

from .server import TansuServer

OPTIONS = "partitions=1&idempotent=false&persistent=false&session_timeout=6&heartbeat_interval=1"


def _letter(delivery: Delivery, error_message: str) -> DeadLetter:
    return DeadLetter(
        id=new_id(), topic=delivery.topic, group="g", handler="h", partition=delivery.partition,
        offset=delivery.offset, key=delivery.key, value=delivery.value, headers=dict(delivery.headers),
        event_id=None, event_type=None, reason="error", error_type="ValueError", error_message=error_message,
        stack="Traceback ...", attempts=3, first_failure=1.0, last_failure=2.0,
    )  # fmt: skip


async def test_a_dead_letter_over_the_request_limit_is_parked_and_the_partition_moves_on(
    kafka_server: TansuServer,
) -> None:
    # Given a group holding a record whose handler failed with an error quoting 1.2 MB, and a good one after it
    clock = FakeClock()
    url = f"kafka://{kafka_server.bootstrap}?{OPTIONS}&state_topic=__state_{uuid.uuid4().hex[:8]}"
    broker = KafkaBroker.from_url(url, clock=clock)
    topic = f"t-{uuid.uuid4().hex[:8]}"
    try:
        await broker.publish(topic, [Record(b"poison", key="k"), Record(b"fine", key="k")])
        sub = await broker.subscribe(topic, "g")
        got: list[Delivery] = []
        while len(got) < 2:
            got += await sub.fetch(10, 10.0)
        poison, fine = sorted(got, key=lambda d: d.offset)
        # When it settles: the poison record dead-lettered, the good one acknowledged
        letter = _letter(poison, "bad payload " + "x" * 1_200_000)
        await sub.settle(Settlement(acks=[fine], dead_letters=[(poison, letter)]))
        # Then the settle went through: nothing stored, the record parked and counted, not handed out now
        assert broker.parked_counts() == {(topic, "g"): 1}
        assert await broker.dead_letters() == []
        assert await sub.fetch(10, 0.5) == []
        # And it is kept: handed back once its park delay passed (the good one never again)
        clock.advance(400.0)
        again = await sub.fetch(10, 10.0)
        assert [(d.offset, d.value) for d in again] == [(poison.offset, b"poison")]
        await sub.settle(Settlement(acks=list(again)))
        await sub.close()
    finally:
        await broker.close()
