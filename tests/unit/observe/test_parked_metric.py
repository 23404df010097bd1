"""A record whose dead letter the broker cannot store is parked, and the scrape counts it per group."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from choreograph import App, Context, Event, Reject
from choreograph.brokers.sqlite import SqliteBroker, SqliteConfig
from choreograph.brokers.sqlite.writer import WriteBatch
from choreograph.observe.metrics import DEAD_LETTERS_PARKED, install_metrics
from tests.conftest import wait_until


class Parcel(Event, type="parkmetric.parcel"):
    n: int
    label: str


async def test_a_parked_record_is_counted_in_the_scrape(tmp_path: Path) -> None:
    # Given a worker on SQLite whose handler refuses parcel 1 with an error quoting its 2 KB label,
    # and a writer whose length limit takes the record (as a retry) but not its dead letter
    broker = SqliteBroker(tmp_path / "log.db", SqliteConfig(partitions=1))
    app = App("parkmetric", broker=broker)
    handled: list[int] = []

    @app.service("picky").on(Parcel)
    async def take(event: Parcel, ctx: Context) -> None:
        if event.n == 1:
            raise Reject(f"parcel {event.n} refused: {event.label}")
        handled.append(event.n)

    metrics = install_metrics(app)
    for n in (1, 2, 3):
        await app.publish(Parcel(n=n, label="x" * 2000), key="same-key")

    def limit(batch: WriteBatch) -> None:
        batch.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 3000)

    await broker._store.writer.run(limit)
    await app.start()
    try:
        # When it runs, then the refused parcel is parked, the later ones of its key are handled meanwhile
        group = app.handlers[0].group
        await wait_until(lambda: handled == [2, 3], what="the parcels after the parked one")
        assert broker.parked_counts() == {(Parcel.topic(), group): 1}
        assert await broker.dead_letters() == []
        # And the scrape counts it for the group (a counter: the next scrape does not count it again)
        for _ in range(2):
            text = (await metrics.scrape()).decode()
            assert f'{DEAD_LETTERS_PARKED}{{group="{group}"}} 1.0' in text
    finally:
        await app.close()
