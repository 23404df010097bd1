"""Every backend refuses a bad topic or group name at publish/subscribe, before it touches its server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from choreograph.brokers import open_broker
from choreograph.core.broker import Broker, Record
from choreograph.core.errors import ConfigurationError

# Nothing listens on port 1: a backend that tried to reach its server would raise BrokerUnavailable instead.
URLS: dict[str, Callable[[Path], str]] = {
    "memory": lambda _: "memory://",
    "sqlite": lambda tmp: f"sqlite:///{tmp}/names.db",
    "redis": lambda _: "redis://127.0.0.1:1/0?connect_timeout=0.5",
    "nats": lambda _: "nats://127.0.0.1:1?connect_timeout=0.5",
    "kafka": lambda _: "kafka://127.0.0.1:1?request_timeout=1",
}


@pytest.fixture(params=sorted(URLS))
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Broker]:
    opened = open_broker(URLS[request.param](tmp_path))
    yield opened
    await opened.close()


@pytest.mark.parametrize(
    ("topic", "problem"),
    [("t" * 1_000_000, "1000000 characters long"), ("orders\n", "newline"), ("a}b", "'}'"), ("", "empty")],
)
async def test_a_bad_topic_is_refused_at_publish_and_subscribe(broker: Broker, topic: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as raised:
        await broker.publish(topic, [Record(b"x")])
    assert len(str(raised.value)) < 300  # a 1 MB name does not make a 1 MB message
    with pytest.raises(ConfigurationError, match=problem):
        await broker.subscribe(topic, "group")


@pytest.mark.parametrize("group", ["g" * 250, "svc.handler\r", "a b", "x:y"])
async def test_a_bad_group_is_refused_at_subscribe(broker: Broker, group: str) -> None:
    with pytest.raises(ConfigurationError, match="consumer group name"):
        await broker.subscribe("orders", group)
