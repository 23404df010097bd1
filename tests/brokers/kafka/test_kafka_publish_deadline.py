"""App.publish against a Kafka broker (Tansu) that stopped fails within the App's publish deadline, naming it."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.brokers.processes import skip_or_fail
from tests.brokers.publish_deadline import publish_after_stop

from .server import TansuServer, find_tansu


async def test_a_publish_after_the_broker_stopped_fails_in_time_naming_it(tmp_path: Path) -> None:
    binary = find_tansu()
    if binary is None:
        skip_or_fail("no tansu binary")
    assert binary is not None
    server = TansuServer(binary, tmp_path)
    server.start()
    try:
        url = f"kafka://{server.bootstrap}?idempotent=false&persistent=false&state_topic=s-{uuid.uuid4().hex[:8]}"
        _, error = await publish_after_stop(url, server.stop, server.start)
    finally:
        server.stop()
    assert f"kafka://{server.bootstrap}" in str(error)
