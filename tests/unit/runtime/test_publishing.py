"""Producer backpressure: the publish deadline's policy, and the throttle on lagging consumers (memory broker).

Deadlines against stopped or unreachable servers are in tests/brokers/ (test_publish_deadlines.py and
each backend's own).
"""

from __future__ import annotations

import math
import time

import pytest

from choreograph import App, Event
from choreograph.brokers.memory import MemoryBroker
from choreograph.core.broker import Settlement
from choreograph.core.errors import BrokerUnavailable, ConfigurationError
from choreograph.runtime.publishing import PublishPolicy, PublishTimeout


class Tick(Event, type="flow.tick", version=1):
    n: int


@pytest.mark.parametrize(
    "kwargs",
    [{"deadline": 0.0}, {"deadline": -1.0}, {"deadline": math.inf}, {"max_lag": -1}, {"lag_poll": 0.0}],
)
def test_a_policy_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        PublishPolicy(**kwargs)  # type: ignore[arg-type]


async def test_a_publish_waits_while_a_group_lags_beyond_max_lag_then_times_out_naming_the_group() -> None:
    # Given a topic whose one consumer group has read nothing, and a throttle at 3 records
    broker = MemoryBroker()
    app = App("shop", broker=broker, publishing=PublishPolicy(deadline=0.4, max_lag=3, lag_poll=0.05))
    subscription = await broker.subscribe(Tick.topic(), "slow-reader")
    for n in range(4):  # lag 0..3: each passes (the bound is inclusive)
        await app.publish(Tick(n=n))

    # When one more publish comes while the group is 4 behind
    started = time.monotonic()
    with pytest.raises(PublishTimeout) as raised:
        await app.publish(Tick(n=4))
    elapsed = time.monotonic() - started

    # Then it waited for the deadline, not less and not much more, and says who lags; nothing was written
    assert 0.4 <= elapsed < 0.4 + 0.25
    message = str(raised.value)
    assert "'slow-reader' lags 4 records" in message and "max_lag=3" in message and "MemoryBroker" in message
    assert isinstance(raised.value, BrokerUnavailable) and raised.value.topic == Tick.topic()
    assert sum(row.lag for row in await broker.lag()) == 4

    # And once the group catches up, publishes go through again
    deliveries = await subscription.fetch(10, 1.0)
    await subscription.settle(Settlement(acks=list(deliveries)))
    await app.publish(Tick(n=5))
    assert sum(row.lag for row in await broker.lag()) == 1
    await subscription.close()
    await app.close()


async def test_without_max_lag_a_lagging_group_does_not_hold_publishes() -> None:
    broker = MemoryBroker()
    app = App("shop", broker=broker, publishing=PublishPolicy(deadline=1.0))
    subscription = await broker.subscribe(Tick.topic(), "slow-reader")
    await app.publish_many([(Tick(n=n), None) for n in range(50)])
    assert sum(row.lag for row in await broker.lag()) == 50
    await subscription.close()
    await app.close()
