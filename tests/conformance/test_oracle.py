"""The oracle is itself tested: broken toy backends fail the suite, naming exactly their anomaly."""

from typing import ClassVar

import pytest

from choreograph.core.broker import Broker
from choreograph.core.clock import Clock
from choreograph.testing import DELIVERED_AFTER_ACK, LOST, REORDERED, AnomalyError, BrokerConformance
from choreograph.testing.toys import (
    AckBeforeHandlingBroker,
    DroppingBroker,
    RedeliveringBroker,
    ReorderingBroker,
    ToyBroker,
)


class ToySuite(BrokerConformance):
    """The unchanged suite, pointed at a toy backend (not collected: no ``Test`` prefix)."""

    toy: ClassVar[type[ToyBroker]] = ToyBroker
    capabilities = ToyBroker.capabilities
    timeout = 1.0

    async def make_broker(self, clock: Clock | None = None) -> Broker:
        return self.toy(clock)


def suite_for(toy: type[ToyBroker]) -> ToySuite:
    return type(f"{toy.__name__}Suite", (ToySuite,), {"toy": toy})()


@pytest.mark.parametrize(
    ("toy", "scenario", "anomaly"),
    [
        (AckBeforeHandlingBroker, "test_a04_nack_redelivery", LOST),
        (AckBeforeHandlingBroker, "test_a10_consumer_killed_mid_batch", LOST),
        (DroppingBroker, "test_a02_many_publishers_and_subscribers", LOST),
        (ReorderingBroker, "test_a05_per_key_order_across_rebalance", REORDERED),
        (ReorderingBroker, "test_a02_many_publishers_and_subscribers", REORDERED),
        (RedeliveringBroker, "test_a04_nack_redelivery", DELIVERED_AFTER_ACK),
        (RedeliveringBroker, "test_a08_members_come_and_go", DELIVERED_AFTER_ACK),
    ],
)
async def test_a_broken_backend_fails_naming_exactly_its_anomaly(
    toy: type[ToyBroker], scenario: str, anomaly: str
) -> None:
    # Given the suite pointed at a backend that breaks one promise
    suite = suite_for(toy)
    # When the scenario runs
    with pytest.raises(AnomalyError) as caught:
        await getattr(suite, scenario)()
    # Then it fails naming exactly that anomaly, printing the offending events
    assert caught.value.kinds == {anomaly}
    assert f"{anomaly}: " in str(caught.value)
    assert "#" in str(caught.value)  # event sequence numbers are printed


@pytest.mark.parametrize(
    "scenario",
    [
        "test_a02_many_publishers_and_subscribers",
        "test_a04_nack_redelivery",
        "test_a05_per_key_order_across_rebalance",
        "test_a08_members_come_and_go",
        "test_a10_consumer_killed_mid_batch",
    ],
)
async def test_the_unbroken_toy_passes_the_same_scenarios(scenario: str) -> None:
    # Given the toy wrapper that breaks nothing, when the scenario runs, then it passes
    await getattr(suite_for(ToyBroker), scenario)()
