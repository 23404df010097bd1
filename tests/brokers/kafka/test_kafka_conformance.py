"""The Kafka broker proves itself against the conformance suite, on a real Tansu broker."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

import pytest

from choreograph.brokers.kafka import KafkaBroker
from choreograph.brokers.kafka.broker import RESUBMIT_OFFSET_HEADER
from choreograph.core.broker import Broker, partition_for
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
    cannot_lose_store = (
        "Tansu keeps nothing on disk in these tests (memory storage): there is no store to wipe under the broker, "
        "and a restart is a different broker altogether"
    )

    @pytest.fixture(autouse=True)
    def _server(self, kafka_server: TansuServer) -> None:
        self.server = kafka_server

    def _url(self, state: str) -> str:
        return f"kafka://{self.server.bootstrap}?{OPTIONS}&state_topic={state}"

    async def make_broker(self, clock: Clock | None = None) -> Broker:
        return KafkaBroker.from_url(self._url(f"__choreograph_state_{uuid.uuid4().hex[:8]}"), clock=clock)

    hostile_oversize = None  # the server refuses a record over 1 MB: the consumer's limit is never reached

    async def inject_raw(self, broker: Broker, topic: str, key: str, marker: str) -> list[str]:
        """Records another client produces: a key, a header value, a resubmission mark that are not ours to read."""
        assert isinstance(broker, KafkaBroker)
        p = partition_for(key, await broker.partitions(topic))
        producer = await broker.producer()
        await producer.send_and_wait(topic, f"{marker}-key".encode(), key=b"\xc3\x28", partition=p)
        await producer.send_and_wait(topic, f"{marker}-header".encode(), partition=p, headers=[("h", b"\xff")])
        mark = [(RESUBMIT_OFFSET_HEADER, b"soon")]
        await producer.send_and_wait(topic, f"{marker}-mark".encode(), key=key.encode(), partition=p, headers=mark)
        return [f"bytes:{marker}-key", f"bytes:{marker}-header", f"bytes:{marker}-mark"]

    def child_broker(self, broker: Broker) -> ChildBroker:
        assert isinstance(broker, KafkaBroker)
        return ChildBroker(
            url=self._url(broker.config.state_topic), opener="choreograph.brokers.kafka:KafkaBroker.from_url"
        )

    # -- fault hooks (section F) --

    @contextlib.asynccontextmanager
    async def _refusing_dead_letters(self, broker: KafkaBroker) -> AsyncIterator[None]:
        """The producer's request limit lowered so a dead letter's entry is over it and a retry row is not,
        as an entry quoting a large payload is over the real 1 MB (aiokafka checks it before sending)."""
        producer = await broker.producer()
        before = producer._max_request_size
        producer._max_request_size = 400
        try:
            yield
        finally:
            producer._max_request_size = before

    def refusing_dead_letters(self, broker: Broker) -> AbstractAsyncContextManager[None]:
        assert isinstance(broker, KafkaBroker)
        return self._refusing_dead_letters(broker)

    # A known gap on Tansu, kept visible rather than hidden (see docs/backends/kafka.md, "Known gaps").
    @pytest.mark.skip(
        reason="Tansu: after two back-to-back LeaveGroups it names a departed member leader of the next "
        "generation, so the remaining members never get an assignment (fails in 2 of 3 runs)"
    )
    async def test_a08_members_come_and_go(self) -> None:
        await super().test_a08_members_come_and_go()

    # A known gap, kept visible rather than hidden (see docs/backends/kafka.md, "Known gaps").
    @pytest.mark.skip(
        reason="Kafka settles are not fenced: outputs are produced before the offset commit, and a commit refused "
        "after a rebalance is skipped, not raised (fencing needs transactions, which Tansu lacks)"
    )
    async def test_b25_settle_after_losing_the_lease_is_refused(self) -> None:
        await super().test_b25_settle_after_losing_the_lease_is_refused()
