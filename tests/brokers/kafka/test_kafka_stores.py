"""On Kafka, schemas and observer state live in compacted topics: a two-process registration race, and the CLI."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.brokers.stores_scenarios import (
    assert_commands_read_the_broker,
    assert_one_history,
    flow_store_agrees_with_reference,
    schema_and_flows_commands,
    schema_race,
)

from .server import TansuServer, find_tansu


def _url(bootstrap: str) -> str:
    state = f"__state_{uuid.uuid4().hex[:8]}"
    return f"kafka://{bootstrap}?partitions=2&idempotent=false&persistent=false&state_topic={state}"


@pytest.fixture(scope="module")
def fresh_kafka(kafka_server: TansuServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuServer]:
    """A broker of its own: the shop's topics have fixed names, and other tests on the shared one fill them."""
    binary = find_tansu()
    assert binary is not None  # kafka_server found it, or skipped
    server = TansuServer(binary, tmp_path_factory.mktemp("tansu-stores"))
    server.start()
    yield server
    server.stop()


def test_two_processes_registering_at_once_end_with_one_history(kafka_server: TansuServer) -> None:
    result = schema_race(_url(kafka_server.bootstrap))
    assert_one_history(result)
    print(f"kafka race: {result.outcomes}, lost compare-and-set rounds: {result.conflicts}")


def test_schema_and_flows_commands_read_the_broker(fresh_kafka: TansuServer) -> None:
    assert_commands_read_the_broker(schema_and_flows_commands(_url(fresh_kafka.bootstrap)))


def test_flow_store_answers_as_the_reference_store(kafka_server: TansuServer) -> None:
    flow_store_agrees_with_reference(_url(kafka_server.bootstrap))
