"""Fixtures starting real ``nats-server -js`` processes, stopped at teardown (see :mod:`.server`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from choreograph.testing.pytest_plugin import pytest_collection_modifyitems  # noqa: F401  (stress: opt-in)
from tests.brokers.certs import Certificates, make_certificates

from .server import NatsCluster, NatsServer, nats_server_binary


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A single JetStream node for the module."""
    server = NatsServer(nats_server_binary(), tmp_path_factory.mktemp("nats"), "single")
    server.start()
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """A fresh 3-node JetStream cluster for one test."""
    cluster = NatsCluster(nats_server_binary(), tmp_path_factory.mktemp("nats-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.stop()


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA, a server certificate for 127.0.0.1/localhost and client certificates (see :mod:`tests.brokers.certs`)."""
    return make_certificates(tmp_path_factory.mktemp("nats-certs"))
