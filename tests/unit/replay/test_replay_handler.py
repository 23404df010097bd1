"""Replaying a bounded range through one handler as a new group: exactly the range, once, in per-key order."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from choreograph import App, Context, Event
from choreograph.brokers.memory import MemoryBroker
from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core.broker import Broker, Position
from choreograph.core.errors import ConfigurationError
from choreograph.runtime.consumer import ConsumerConfig
from choreograph.runtime.replay_group import replay_handler
from choreograph.runtime.replay_range import resolve
from choreograph.testing.consumer import wait_for


class Shipped(Event, type="replay.shipped"):
    n: int


class Billed(Event, type="replay.billed"):
    n: int


def build(broker: Broker | None, seen: list[tuple[str, int]]) -> App:
    app = App("biller", broker=broker, consumer=ConsumerConfig(fetch_timeout=0.05))

    @app.service("billing").on(Shipped)
    async def bill(event: Shipped, ctx: Context) -> Billed:
        seen.append((ctx.envelope.partitionkey or "", event.n))
        return Billed(n=event.n)

    return app


@pytest.fixture(params=["memory", "sqlite"])
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Broker]:
    opened: Broker = (
        MemoryBroker() if request.param == "memory" else SqliteBroker.from_url(f"sqlite:///{tmp_path}/h.db")
    )
    yield opened
    await opened.close()


async def test_a_time_range_is_handled_once_by_the_new_group_and_nothing_past_it(broker: Broker) -> None:
    await replay_through_handler(broker)


async def replay_through_handler(broker: Broker, *, timeout: float = 10.0) -> None:
    """The scenario of this module on ``broker`` (also run on real Redis, NATS and Kafka servers)."""
    publisher = App("shop", broker=broker)
    for n in range(10):
        await publisher.publish(Shipped(n=n), key=f"k{n % 3}")
    start = time.time() + 0.005  # millisecond timestamps (Kafka) fall clearly on one side of each mark
    await wait_for(lambda: time.time() > start + 0.005, 1.0)
    for n in range(10, 30):
        await publisher.publish(Shipped(n=n), key=f"k{n % 3}")
    until = time.time() + 0.005
    await wait_for(lambda: time.time() > until + 0.005, 1.0)
    for n in range(30, 35):
        await publisher.publish(Shipped(n=n), key=f"k{n % 3}")
    bounds = await resolve(broker, Shipped.topic(), Position.at_time(start), until)
    seen: list[tuple[str, int]] = []
    app = build(None, seen)
    done = await replay_handler(app, broker, "billing.bill", "billing.bill-replay-1", bounds, timeout=timeout)
    assert done == 20
    assert sorted(n for _, n in seen) == list(range(10, 30))
    for key in ("k0", "k1", "k2"):
        per_key = [n for k, n in seen if k == key]
        assert per_key == sorted(per_key)
    with pytest.raises(ConfigurationError, match="has positions"):
        await replay_handler(build(None, []), broker, "billing.bill", "billing.bill-replay-1", bounds, timeout=1)
