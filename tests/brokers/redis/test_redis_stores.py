"""On Redis, schemas and observer state live in hashes under the broker prefix: a two-process race, and the CLI."""

from __future__ import annotations

import uuid

from tests.brokers.stores_scenarios import (
    assert_commands_read_the_broker,
    assert_one_history,
    flow_store_agrees_with_reference,
    schema_and_flows_commands,
    schema_race,
)

from .server import RedisServer


def _url(server: RedisServer) -> str:
    return f"{server.url}?prefix=s{uuid.uuid4().hex[:8]}&partitions=2"


def test_two_processes_registering_at_once_end_with_one_history(redis_server: RedisServer) -> None:
    result = schema_race(_url(redis_server))
    assert_one_history(result)
    print(f"redis race: {result.outcomes}, lost compare-and-set rounds: {result.conflicts}")


def test_schema_and_flows_commands_read_the_broker(redis_server: RedisServer) -> None:
    assert_commands_read_the_broker(schema_and_flows_commands(_url(redis_server)))


def test_flow_store_answers_as_the_reference_store(redis_server: RedisServer) -> None:
    flow_store_agrees_with_reference(_url(redis_server))
