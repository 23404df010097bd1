"""Reading the log page by page always ends: a page that does not move the read forward is an error."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from choreograph.brokers.memory import MemoryBroker
from choreograph.core.broker import Delivery, Position, Record
from choreograph.core.errors import BrokerError
from choreograph.observe.paging import read_pages

EARLIEST = Position.earliest()


class StuckOffsets:
    """A LogReader whose last record reports an older offset than its position (Kafka's old resubmit bug)."""

    def __init__(self, inner: MemoryBroker) -> None:
        self.inner = inner

    async def read(self, topic: str, start: Position = EARLIEST, *, limit: int = 1000) -> Sequence[Delivery]:
        batch = list(await self.inner.read(topic, start, limit=limit))
        return [
            Delivery(d.topic, d.partition, 0 if d.offset == 2 else d.offset, d.value, d.key, d.headers, d.timestamp)
            for d in batch
        ]


async def test_pages_cover_every_partition_once() -> None:
    # Given 50 records over 4 partitions
    broker = MemoryBroker(partitions=4)
    await broker.publish("t", [Record(str(n).encode(), key=f"k{n}") for n in range(50)])
    # When it is read 7 records at a time
    got = [d.value async for page in read_pages(broker, "t", page=7) for d in page]
    # Then every record comes once
    assert sorted(got, key=int) == [str(n).encode() for n in range(50)]


async def test_a_read_that_makes_no_progress_raises_instead_of_spinning() -> None:
    # Given a reader whose third record claims offset 0
    broker = MemoryBroker(partitions=1)
    await broker.publish("t", [Record(b"a"), Record(b"b"), Record(b"c"), Record(b"d")])
    reader = StuckOffsets(broker)
    # When it is read one record per page
    # Then the read fails at the page that went backwards
    pages: list[Sequence[Delivery]] = []

    async def read_all() -> None:
        async for page in read_pages(reader, "t", page=1):
            pages.append(page)

    with pytest.raises(BrokerError, match="no progress"):
        await read_all()
    assert len(pages) == 3


async def test_a_missing_topic_reads_as_empty_unless_asked_otherwise() -> None:
    broker = MemoryBroker()
    assert [page async for page in read_pages(broker, "nothing")] == []
