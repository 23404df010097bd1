"""The Kafka broker proves itself against the conformance suite, on a real Tansu broker."""

from __future__ import annotations

import uuid

import pytest

from choreograph.brokers.kafka import KafkaBroker
from choreograph.core.broker import Broker
from choreograph.core.clock import Clock
from choreograph.testing import BrokerConformance
from choreograph.testing.faults import ChildBroker

from .server import TansuServer

SESSION_TIMEOUT = 6.0
# Tansu keeps data in memory (not persistent) and does not implement InitProducerId (no idempotent producer).
OPTIONS = f"partitions=4&idempotent=false&persistent=false&session_timeout={SESSION_TIMEOUT}&heartbeat_interval=1"


class TestKafkaConformance(BrokerConformance):
    capabilities = KafkaBroker.from_url(f"kafka://127.0.0.1:9092?{OPTIONS}").capabilities
    accepts_clock = True
    lease_timeout = SESSION_TIMEOUT
    timeout = 30.0

    @pytest.fixture(autouse=True)
    def _server(self, kafka_server: TansuServer) -> None:
        self.server = kafka_server

    def _url(self, state: str) -> str:
        return f"kafka://{self.server.bootstrap}?{OPTIONS}&state_topic={state}"

    async def make_broker(self, clock: Clock | None = None) -> Broker:
        return KafkaBroker.from_url(self._url(f"__choreograph_state_{uuid.uuid4().hex[:8]}"), clock=clock)

    def child_broker(self, broker: Broker) -> ChildBroker:
        assert isinstance(broker, KafkaBroker)
        return ChildBroker(
            url=self._url(broker.config.state_topic), opener="choreograph.brokers.kafka:KafkaBroker.from_url"
        )

    # A known gap on Tansu, kept visible rather than hidden (see docs/backends/kafka.md, "Known gaps").
    @pytest.mark.skip(
        reason="Tansu: after two back-to-back LeaveGroups it names a departed member leader of the next "
        "generation, so the remaining members never get an assignment (fails in 2 of 3 runs)"
    )
    async def test_a08_members_come_and_go(self) -> None:
        await super().test_a08_members_come_and_go()
