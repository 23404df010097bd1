"""App.publish against a NATS server that was killed fails within the App's publish deadline, naming the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers.publish_deadline import publish_after_stop

from .server import NatsServer, nats_server_binary


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    """A server of this test alone: it is killed."""
    own = NatsServer(nats_server_binary(), tmp_path, "publish-deadline")
    own.start()
    own.wait_healthy()
    yield own
    own.stop()


async def test_a_publish_after_the_server_died_fails_in_time_naming_it(server: NatsServer) -> None:
    _, error = await publish_after_stop(server.url, server.kill)
    assert f"nats://127.0.0.1:{server.port}" in str(error)
