"""Publish deadlines on NATS, against a real nats-server we stop or freeze: an outage is reported on time.

A publish fails within its ``publish_timeout`` (once, not once per fallback),
and at once while the client knows it is disconnected, naming the servers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from choreograph.brokers.nats import NatsBroker
from choreograph.core.broker import Record
from choreograph.core.errors import BrokerUnavailable

from .server import NatsServer, nats_server_binary

TIMEOUT = 1.5


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    """A server of this test alone: it is killed or frozen."""
    own = NatsServer(nats_server_binary(), tmp_path, "deadline")
    own.start()
    own.wait_healthy()
    yield own
    if own.proc is not None and own.proc.poll() is None:
        os.kill(own.proc.pid, signal.SIGCONT)
    own.stop()


async def test_a_publish_while_disconnected_fails_at_once_naming_the_server(server: NatsServer) -> None:
    # Given a broker that published once, whose server then died
    broker = NatsBroker.from_url(f"{server.url}?publish_timeout=10")
    try:
        await broker.publish("t", [Record(b"first", "k")])
        server.kill()
        for _ in range(200):  # until the client notices (the socket closes at once)
            if not broker.connection.is_connected:
                break
            await asyncio.sleep(0.01)
        assert not broker.connection.is_connected

        # When it publishes
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{server.port}") as raised:
            await broker.publish("t", [Record(b"second", "k")])

        # Then the publish failed at once, not after publish_timeout, and says it is disconnected
        assert time.monotonic() - started < 1.0
        assert "not connected" in str(raised.value)
    finally:
        await broker.close()


@pytest.mark.parametrize("batched", [True, False], ids=["fast-batches", "one-by-one"])
async def test_a_publish_nobody_answers_fails_within_publish_timeout_once(server: NatsServer, batched: bool) -> None:
    # Given a connected broker whose server stops answering (frozen: the connection stays up)
    broker = NatsBroker.from_url(f"{server.url}?publish_timeout={TIMEOUT}")
    try:
        await broker.publish("t", [Record(b"first", "k")])
        broker._batched["t"] = broker._batched["t"] and batched
        assert server.proc is not None
        _freeze(server.proc.pid)

        # When it publishes
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{server.port}"):
            await broker.publish("t", [Record(b"second", "k")])

        # Then it failed after publish_timeout, not twice that (a fast batch's fallback shares the deadline)
        elapsed = time.monotonic() - started
        assert TIMEOUT - 0.1 <= elapsed < TIMEOUT + 0.5, elapsed
    finally:
        if server.proc is not None:
            os.kill(server.proc.pid, signal.SIGCONT)
        await broker.close()


def _freeze(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until every thread of it is stopped (a running thread may first finish a request)."""
    os.kill(pid, signal.SIGSTOP)
    tasks = Path(f"/proc/{pid}/task")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        states = [(task / "stat").read_text().rpartition(")")[2].split()[0] for task in tasks.iterdir()]
        if all(state in {"T", "t"} for state in states):
            return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} did not stop")
