"""Kafka after a resubmission: reading the log ends, and a retry that fails again names its predecessor."""

from __future__ import annotations

import uuid

from choreograph import App, Context, Event, Reject
from choreograph.brokers.kafka import KafkaBroker
from choreograph.core.broker import DeadLetter, DeadLetterStore
from choreograph.observe.flows import Flow, replay
from choreograph.observe.paging import read_pages
from tests.conftest import wait_until

from .server import TansuServer

RUN = uuid.uuid4().hex[:8]


class Asked(Event, type=f"kresub.asked.{RUN}"):
    n: int


class Answered(Event, type=f"kresub.answered.{RUN}"):
    n: int


FLOW = Flow(f"ask{RUN}", start=[Asked], success=[Answered], timeout=30.0)


def url(server: TansuServer) -> str:
    state = f"__state_{uuid.uuid4().hex[:8]}"
    return f"kafka://{server.bootstrap}?partitions=2&idempotent=false&persistent=false&state_topic={state}"


async def letters(broker: DeadLetterStore, count: int) -> list[DeadLetter]:
    async def enough() -> bool:
        return len(await broker.dead_letters(status=None)) >= count

    await wait_until(enough, 60, f"{count} dead letters")
    return await broker.dead_letters(status=None)


async def test_reads_of_the_log_end_after_a_resubmission_and_the_retry_names_its_predecessor(
    kafka_server: TansuServer,
) -> None:
    # Given a topic with three records, one of them dead-lettered and resubmitted
    app = App("kresub", broker=url(kafka_server))

    @app.service("answerer").on(Asked)
    async def answer(event: Asked, ctx: Context) -> Answered:
        if event.n == 1:
            raise Reject("one is refused")
        return Answered(n=event.n)

    broker = app.broker
    assert isinstance(broker, KafkaBroker) and isinstance(broker, DeadLetterStore)
    await app.start()
    try:
        for n in range(3):
            await app.publish(Asked(n=n))
        [first] = await letters(broker, 1)
        assert await broker.resubmit(first.id)
        second = next(d for d in await letters(broker, 2) if d.id != first.id)
    finally:
        await app.stop()
    try:
        # When the log is read page by page, one record per page (the resubmitted record comes last)
        pages = [page async for page in read_pages(broker, Asked.topic(), page=1)]
        # Then the read ends, each record at its own position in the log
        positions = [(d.partition, d.offset) for page in pages for d in page]
        assert len(positions) == 4 == len(set(positions))
        # And `flows` (a replay of the log) ends too, with the three instances
        trackers = await replay(broker, [FLOW], now=broker.clock.now(), page=1)
        assert len(trackers[FLOW.name].instances) == 3
        # And the retry that failed again links to the first dead letter
        assert second.predecessor == first.id
        assert (await broker.dead_letter(second.id)).predecessor == first.id
    finally:
        await app.close()
