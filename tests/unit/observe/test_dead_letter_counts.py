"""Dead letters at scale: scrapes count them without their bytes; a retry that fails again names its predecessor."""

from __future__ import annotations

import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from choreograph import App, Context, Event, Reject
from choreograph.core.broker import DeadLetter, DeadLetterCounter, DeadLetterStore, Record
from choreograph.core.headers import DEAD_LETTER_ID_HEADER
from choreograph.observe.metrics import DEAD_LETTERS_OPEN, install_metrics
from tests.conftest import wait_until


class Parcel(Event, type="dlcount.parcel"):
    n: int


class Note(Event, type="dlcount.note"):
    n: int


def build_app(url: str) -> App:
    app = App("dlcount", broker=url)

    @app.service("picky").on(Parcel)
    async def refuse(event: Parcel, ctx: Context) -> None:
        raise Reject(f"parcel {event.n} refused")

    @app.service("strict").on(Note)
    async def refuse_note(event: Note, ctx: Context) -> None:
        raise Reject("notes are refused")

    return app


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'dl.db'}"


async def dead_lettered(app: App, count: int) -> list[DeadLetter]:
    broker = app.broker
    assert isinstance(broker, DeadLetterStore)

    async def enough() -> bool:
        return len(await broker.dead_letters(status=None, limit=1000)) >= count

    await wait_until(enough, 20, f"{count} dead letters")
    return await broker.dead_letters(status=None, limit=1000)


async def test_counts_match_the_dead_letters_per_topic_group_and_reason(url: str) -> None:
    # Given dead letters of two groups, one of them resubmitted
    app = build_app(url)
    await app.start()
    try:
        for n in range(5):
            await app.publish(Parcel(n=n))
        for n in range(3):
            await app.publish(Note(n=n))
        letters = await dead_lettered(app, 8)
        broker = app.broker
        assert isinstance(broker, DeadLetterCounter) and isinstance(broker, DeadLetterStore)
        await app.stop()
        assert await broker.resubmit(letters[0].id)
        # When they are counted, for open entries and for all
        open_counts = await broker.dead_letter_counts()
        all_counts = await broker.dead_letter_counts(status=None)
        # Then the counts are those of the entries themselves
        everything = await broker.dead_letters(status=None, limit=1000)
        assert all_counts == Counter((d.topic, d.group, d.reason) for d in everything)
        assert open_counts == Counter((d.topic, d.group, d.reason) for d in everything if d.status == "open")
        assert sum(all_counts.values()) == 8
        assert sum(open_counts.values()) == 7
    finally:
        await app.close()


async def test_a_retried_dead_letter_that_fails_again_names_its_predecessor(url: str) -> None:
    # Given a dead letter
    app = build_app(url)
    await app.start()
    try:
        await app.publish(Parcel(n=1))
        [first] = await dead_lettered(app, 1)
        assert first.predecessor is None
        broker = app.broker
        assert isinstance(broker, DeadLetterStore)
        # When it is resubmitted and fails again, twice
        assert await broker.resubmit(first.id)
        second = next(d for d in await dead_lettered(app, 2) if d.id != first.id)
        assert await broker.resubmit(second.id)
        third = next(d for d in await dead_lettered(app, 3) if d.id not in (first.id, second.id))
    finally:
        await app.close()
    # Then each new dead letter links to the one whose retry it was, through the chain
    assert second.predecessor == first.id
    assert third.predecessor == second.id
    assert third.headers[DEAD_LETTER_ID_HEADER] == second.id
    assert third.event_id == first.event_id
    if url.startswith("sqlite"):  # and the link is stored: a new process reads it back
        reader = App("reader", broker=url)
        try:
            stored = reader.broker
            assert isinstance(stored, DeadLetterStore)
            assert (await stored.dead_letter(third.id)).predecessor == second.id
        finally:
            await reader.close()


async def test_a_scrape_with_big_dead_letters_does_not_read_their_bytes(tmp_path: Path) -> None:
    # Given five 5 MB dead letters (undecodable records) in a SQLite log, and metrics
    app = build_app(f"sqlite:///{tmp_path / 'big.db'}")
    metrics = install_metrics(app)
    await app.start()
    try:
        await app.broker.publish(Parcel.topic(), [Record(b"\xff" * 5_000_000, key=str(n)) for n in range(5)])
        await dead_lettered(app, 5)
        await app.stop()
        # When /metrics is scraped 20 times
        tracemalloc.start()
        try:
            for _ in range(20):
                text = await metrics.scrape()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        await app.close()
    # Then the gauge has the count, and no scrape held even one dead letter's bytes
    line = f'{DEAD_LETTERS_OPEN}{{group="picky.refuse",reason="decode"}} 5.0'
    assert line in text.decode()
    assert peak < 1_000_000, f"a scrape peaked at {peak} bytes"
