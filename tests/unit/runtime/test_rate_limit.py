"""Flow control per handler: a token bucket paces reads (RateLimit); concurrency caps events in flight."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from choreograph import App, ConsumerConfig, Context, Event, FakeClock
from choreograph.brokers.memory import MemoryBroker
from choreograph.observe.metrics import RATE_LIMIT_WAIT, install_metrics
from choreograph.runtime.flow_control import TokenBucket
from choreograph.runtime.options import RateLimit
from choreograph.testing import TestApp


class Job(Event, type="flow.job", version=1):
    n: int


class Ticking:
    """A time source the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=500.0),
    capacity=st.integers(min_value=1, max_value=50),
    steps=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=0.5), st.integers(min_value=0, max_value=80)), max_size=60
    ),
)
def test_a_bucket_never_grants_more_than_its_capacity_plus_rate_times_elapsed(
    rate: float, capacity: int, steps: list[tuple[float, int]]
) -> None:
    # Given a bucket on a hand-moved clock
    clock = Ticking()
    bucket = TokenBucket(rate, capacity, now=clock)
    granted = 0
    for pause, wanted in steps:
        # When time moves and tokens are asked for (sometimes given back unused)
        clock.now += pause
        taken = bucket.take(wanted)
        assert 0 <= taken <= min(wanted, capacity)
        if wanted % 3 == 0 and taken:
            bucket.give_back(1)
            taken -= 1
        granted += taken
        # Then what was granted so far stays within capacity + rate * elapsed
        assert granted <= capacity + rate * clock.now + 1e-6
        # and after its announced wait, one token is there (to float rounding)
        clock.now += bucket.wait_time()
        assert bucket.wait_time() < 1e-9


def limited_app(per_second: float, burst: int) -> tuple[App, list[float], list[float]]:
    """An app with two handlers of Job: one rate-limited, one not; each records when it handled each event."""
    app = App("flow", broker=MemoryBroker(clock=FakeClock()), consumer=ConsumerConfig(fetch_timeout=0.05))
    limited_at: list[float] = []
    free_at: list[float] = []

    @app.service("svc").on(Job, options=[RateLimit(per_second=per_second, burst=burst)])
    async def limited(event: Job, ctx: Context) -> None:
        limited_at.append(time.monotonic())

    @app.service("svc").on(Job)
    async def free(event: Job, ctx: Context) -> None:
        free_at.append(time.monotonic())

    return app, limited_at, free_at


async def test_a_backlog_takes_about_its_size_over_the_rate() -> None:
    # Given a backlog of 200 events for a handler limited to 100/s (bursts of 10) and for one without a limit
    app, limited_at, free_at = limited_app(per_second=100, burst=10)
    await app.publish_many((Job(n=n), str(n % 7)) for n in range(200))
    started = time.monotonic()
    # When the app works it off
    async with TestApp(app, drain_timeout=15.0) as t:
        await t.drain()
    elapsed = time.monotonic() - started
    # Then the limited handler took about (200 - 10) / 100 = 1.9 s, never faster than the bucket allows
    assert len(limited_at) == 200
    assert 1.85 <= elapsed < 4.0, elapsed
    for i, at in enumerate(limited_at):
        assert at - started >= (i + 1 - 10) / 100 - 1e-3, (i, at - started)
    # and the handler without a limit was not held back by it
    assert len(free_at) == 200
    assert free_at[-1] - started < (limited_at[-1] - started) / 2


async def test_time_spent_waiting_on_the_rate_limit_is_measured_per_handler() -> None:
    # Given an instrumented app with a limited and an unlimited handler, and a backlog
    app, limited_at, _ = limited_app(per_second=200, burst=5)
    metrics = install_metrics(app)
    await app.publish_many((Job(n=n), None) for n in range(105))
    started = time.monotonic()
    async with TestApp(app) as t:
        await t.drain()
    elapsed = time.monotonic() - started
    # Then the limited handler's wait is exported, about (105 - 5) / 200 = 0.5 s, and the other has none
    waited = metrics.registry.get_sample_value(RATE_LIMIT_WAIT, {"group": "svc.limited"})
    assert waited is not None
    assert 0.3 <= waited <= elapsed
    assert len(limited_at) == 105
    assert metrics.registry.get_sample_value(RATE_LIMIT_WAIT, {"group": "svc.free"}) is None


async def test_stopping_does_not_wait_for_the_rate_limit() -> None:
    # Given a handler limited to one event every 5 s that has handled its first event
    broker = MemoryBroker()
    app = App("flow", broker=broker, consumer=ConsumerConfig(fetch_timeout=0.05))
    handled = asyncio.Event()

    @app.service("svc").on(Job, options=[RateLimit(per_second=0.2, burst=1)])
    async def slow(event: Job, ctx: Context) -> None:
        handled.set()

    await app.publish_many((Job(n=n), None) for n in range(3))
    await app.start()
    await asyncio.wait_for(handled.wait(), 5.0)
    # When the app stops while the consumer waits for its next token
    before = time.monotonic()
    await app.stop(timeout=5.0)
    # Then it stops at once, with only the first event handled
    assert time.monotonic() - before < 1.0
    assert app.stats()["svc.slow"].handled == 1
    await app.close()


async def test_concurrency_caps_the_events_a_handler_has_in_flight() -> None:
    # Given a handler allowed 4 events at once and a backlog across many keys
    app = App("flow", broker=MemoryBroker(clock=FakeClock()))
    running = 0
    most = 0

    @app.service("svc").on(Job, concurrency=4)
    async def work(event: Job, ctx: Context) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.002)  # work that yields: other lanes run meanwhile
        running -= 1

    await app.publish_many((Job(n=n), f"k{n}") for n in range(120))
    # When it is worked off
    async with TestApp(app) as t:
        await t.drain()
    # Then no more than 4 ran at once, and the cap was reached (it is what bounds them)
    assert most == 4
    assert app.stats()["svc.work"].handled == 120


async def test_a_backlog_in_the_sqlite_log_drains_at_the_rate(tmp_path: Path) -> None:
    # Given a backlog in a SQLite log for a handler limited to 100/s (default burst: 10); the profile of
    # 2,000 events (about 20 s) runs with CHOREOGRAPH_RATE_LIMIT_EVENTS=2000, the normal suite a bounded one
    events = int(os.environ.get("CHOREOGRAPH_RATE_LIMIT_EVENTS", "300"))
    app = App("flow", broker=f"sqlite:///{tmp_path}/log.db", consumer=ConsumerConfig(fetch_timeout=0.05))
    done = asyncio.Event()
    handled: list[float] = []

    @app.service("svc").on(Job, options=[RateLimit(per_second=100)])
    async def limited(event: Job, ctx: Context) -> None:
        handled.append(time.monotonic())
        if len(handled) == events:
            done.set()

    await app.publish_many((Job(n=n), str(n % 13)) for n in range(events))
    # When the app works it off
    started = time.monotonic()
    await app.start()
    await asyncio.wait_for(done.wait(), events / 100 * 2 + 10)
    elapsed = time.monotonic() - started
    await app.close()
    # Then it took about (events - 10) / 100 seconds: never less, and not much more
    expected = (events - 10) / 100
    assert expected - 0.05 <= elapsed <= expected * 1.25 + 1.0, (events, elapsed)
    print(f"{events} events at 100/s on SQLite: {elapsed:.2f} s (expected {expected:.2f} s)")
