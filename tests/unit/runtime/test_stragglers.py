"""A slow event does not hold back the commits of the other keys in its batch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from choreograph import App, ConsumerConfig, Context, Event
from choreograph.core.errors import ConfigurationError
from tests.conftest import wait_until


class Task(Event, type="straggler.task"):
    key: str


class Done(Event, type="straggler.done"):
    key: str


async def test_lanes_that_are_done_commit_while_a_slow_lane_still_runs(tmp_path: Path) -> None:
    # Given a batch of 21 events over 21 keys on a SQLite log, one of whose handlings blocks
    config = ConsumerConfig(fetch_timeout=0.02, straggler_delay=0.05)
    app = App("straggler", broker=f"sqlite:///{tmp_path}/log.db", consumer=config)
    release, slow_started = asyncio.Event(), asyncio.Event()

    @app.service("worker").on(Task, concurrency=32)
    async def work(event: Task, ctx: Context) -> Done:
        if event.key == "slow":
            slow_started.set()
            await release.wait()
        return Done(key=event.key)

    keys = [f"k{i}" for i in range(20)]
    await app.publish_many([(Task(key="slow"), "slow"), *((Task(key=key), key) for key in keys)])
    # keys share a lane (one task, in order) when their hashes agree modulo the concurrency, as the consumer's do
    fast = [key for key in keys if hash(key) % 32 != hash("slow") % 32]
    assert len(fast) >= 15
    await app.start()
    try:
        # When the slow handling is still running
        await asyncio.wait_for(slow_started.wait(), 10)

        async def committed() -> int:
            return len(await app.broker.read("straggler.done", limit=100))  # type: ignore[attr-defined]

        # Then the other lanes' outputs (committed with their acks and inbox keys) are in the log already
        await wait_until(lambda: _at_least(committed, len(fast)), 10, "the fast lanes to commit")
        assert await committed() == len(fast)
        assert app.stats()["worker.work"].handled == len(fast)
        # And the slow one commits on its own once it finishes
        release.set()
        await wait_until(lambda: _at_least(committed, 21), 10, "the slow lane to commit")
    finally:
        release.set()
        await app.close()
    assert app.stats()["worker.work"].handled == 21


async def _at_least(count: object, n: int) -> bool:
    return bool(await count() >= n)  # type: ignore[operator]


def test_a_straggler_delay_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="straggler_delay"):
        ConsumerConfig(straggler_delay=float("nan"))
