"""App.publish against a Redis server that was killed fails within the App's publish deadline, naming it."""

from __future__ import annotations

from pathlib import Path

from tests.brokers.processes import skip_or_fail
from tests.brokers.publish_deadline import publish_after_stop

from .server import RedisServer, find_redis_server


async def test_a_publish_after_the_server_died_fails_in_time_naming_it(tmp_path: Path) -> None:
    binary = find_redis_server()
    if binary is None:
        skip_or_fail("no redis-server binary")
    assert binary is not None
    server = RedisServer(binary, tmp_path, extra_args=["--requirepass", "s3cret"])
    server.start()
    try:
        url = f"redis://default:s3cret@127.0.0.1:{server.port}/0"
        _, error = await publish_after_stop(url, server.kill)
    finally:
        server.stop()
    assert f"redis://default:***@127.0.0.1:{server.port}/0" in str(error)
    assert "s3cret" not in str(error)
