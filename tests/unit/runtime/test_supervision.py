"""A consumer that crashes (a runtime failure, not a handler's) restarts with backoff; fail-fast stops everything."""

from __future__ import annotations

import asyncio
import logging

import pytest

from choreograph import App, ConsumerConfig, Context, Event, Record, encode
from choreograph.brokers.memory import MemoryBroker, MemorySubscription
from choreograph.core.broker import Position
from choreograph.core.envelope import Envelope
from choreograph.core.errors import BrokerClosed, ConfigurationError
from choreograph.core.ids import new_id
from choreograph.runtime.middleware import Handler, Middleware
from choreograph.runtime.supervisor import Backoff, supervise
from tests.conftest import wait_until

EARLIEST = Position.earliest()
FAST = ConsumerConfig(fetch_timeout=0.02, restart_delay=0.01, max_restart_delay=0.04)


class Ping(Event, type="sup.ping"):
    n: int


class Pong(Event, type="sup.pong"):
    n: int


def record(event_type: str, n: int) -> Record:
    return Record(encode(Envelope(id=new_id(), source="t", type=event_type, data={"n": n}, partitionkey="k")), "k")


def explode_once_in(group: str) -> Middleware:
    """An app middleware that raises a non-handler error the first time it sees ``group``'s events."""
    calls = [0]

    def middleware(handler: Handler) -> Handler:
        async def maybe_explode(envelope: Envelope, ctx: Context) -> None:
            if ctx.handler.group == group:
                calls[0] += 1
                if calls[0] == 1:
                    raise RuntimeError("a bug in a middleware")
            await handler(envelope, ctx)

        return maybe_explode

    return middleware


def two_services(broker: MemoryBroker) -> tuple[App, dict[str, list[int]]]:
    app = App("sup", broker=broker, consumer=FAST)
    handled: dict[str, list[int]] = {"ping": [], "pong": []}

    @app.service("a").on(Ping)
    async def ping(event: Ping, ctx: Context) -> None:
        handled["ping"].append(event.n)

    @app.service("b").on(Pong)
    async def pong(event: Pong, ctx: Context) -> None:
        handled["pong"].append(event.n)

    return app, handled


async def test_a_crashed_consumer_is_logged_counted_and_restarted_while_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given two services, and a middleware that fails once (a runtime bug, outside the handler) in a's consumer
    broker = MemoryBroker(partitions=1)
    app, handled = two_services(broker)
    app.use(explode_once_in("a.ping"))
    await broker.publish("sup.ping", [record("sup.ping", n) for n in range(3)])
    await broker.publish("sup.pong", [record("sup.pong", n) for n in range(3)])

    # When the app runs
    with caplog.at_level(logging.ERROR, logger="choreograph.consumer"):
        await app.start()
        stats = app.stats()
        await wait_until(lambda: len(handled["ping"]) == 3 and len(handled["pong"]) == 3)
        await app.stop()

    # Then a's consumer crashed once, was restarted and handled everything in order (nothing was lost:
    # the batch in hand went back to the group); b never noticed
    assert handled == {"ping": [0, 1, 2], "pong": [0, 1, 2]}
    assert (stats["a.ping"].crashes, stats["b.pong"].crashes) == (1, 0)
    (crash,) = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert "consumer a.ping crashed (1 in a row); restarting in 0.0s" in crash.getMessage()
    assert crash.exc_info is not None and isinstance(crash.exc_info[1], RuntimeError)


class FlakySubscribeBroker(MemoryBroker):
    """The memory broker, whose first subscribe fails with a RuntimeError (not a BrokerError: a backend bug)."""

    failures = 0

    async def subscribe(self, topic: str, group: str, *, start: Position = EARLIEST) -> MemorySubscription:
        if self.failures == 0:
            self.failures += 1
            raise RuntimeError("a bug in the backend")
        return await super().subscribe(topic, group, start=start)


async def test_a_backend_bug_in_subscribe_restarts_the_consumer() -> None:
    broker = FlakySubscribeBroker(partitions=1)
    app, handled = two_services(broker)
    await broker.publish("sup.ping", [record("sup.ping", n) for n in range(2)])
    await broker.publish("sup.pong", [record("sup.pong", n) for n in range(2)])
    await app.start()
    stats = app.stats()
    await wait_until(lambda: len(handled["ping"]) == 2 and len(handled["pong"]) == 2)
    await app.stop()
    assert stats["a.ping"].crashes + stats["b.pong"].crashes == 1


async def test_fail_fast_stops_every_consumer_and_raises_the_crash() -> None:
    # Given the same middleware bug, run with fail_fast
    broker = MemoryBroker(partitions=1)
    app, _ = two_services(broker)
    app.use(explode_once_in("a.ping"))
    await broker.publish("sup.ping", [record("sup.ping", 0)])

    # When it runs, then the crash ends run() with the error, and everything is stopped and closed
    with pytest.raises(RuntimeError, match="a bug in a middleware"):
        await asyncio.wait_for(app.run(fail_fast=True), 10)
    assert (app.stats()["a.ping"].crashes, app.stats()["b.pong"].crashes) == (1, 0)
    with pytest.raises(BrokerClosed):
        await broker.publish("sup.pong", [record("sup.pong", 1)])


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 30.0)
    assert [backoff.delay(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff.delay(10_000) == 30.0
    with pytest.raises(ConfigurationError):
        Backoff(0.0, 1.0)
    with pytest.raises(ConfigurationError):
        Backoff(2.0, 1.0)
    with pytest.raises(ConfigurationError):
        Backoff(float("nan"), 1.0)
    with pytest.raises(ConfigurationError):
        ConsumerConfig(restart_delay=5.0, max_restart_delay=1.0)


async def test_supervise_restarts_until_the_run_returns_and_stops_waiting_when_asked() -> None:
    stopping = asyncio.Event()
    runs: list[int] = []
    crashes: list[BaseException] = []

    async def run() -> None:
        runs.append(len(runs))
        if len(runs) < 4:
            raise ValueError(f"crash {len(runs)}")

    await supervise("t", run, stopping=stopping, backoff=Backoff(0.001, 0.004), on_crash=crashes.append)
    assert runs == [0, 1, 2, 3] and [str(c) for c in crashes] == ["crash 1", "crash 2", "crash 3"]

    # A crash while stopping: no restart, however long the backoff; supervise returns at once
    other = asyncio.Event()

    async def crash_while_stopping() -> None:
        other.set()
        raise ValueError("last")

    await asyncio.wait_for(supervise("t", crash_while_stopping, stopping=other, backoff=Backoff(60, 60)), 5)


async def test_supervise_with_fail_fast_raises_the_first_crash_after_counting_it() -> None:
    crashes: list[BaseException] = []

    async def run() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        await supervise("t", run, stopping=asyncio.Event(), fail_fast=True, on_crash=crashes.append)
    assert len(crashes) == 1
