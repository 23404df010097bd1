"""A publish against a broker nobody answers at, or a store that is locked, fails within its deadline.

Every backend alike, through ``App(publishing=PublishPolicy(deadline=...))``: the error names the broker
with its credentials redacted. Stopped servers (a broker that answered, then died) are tested in each
backend's directory (test_*_publish_deadline.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from choreograph import App, Event
from choreograph.runtime.publishing import PublishFailed, PublishPolicy, PublishTimeout
from choreograph.schema.registry import SchemaRegistry

DEADLINE = 1.0
MARGIN = 0.5
"""Seconds past the deadline a failure may take (the event loop's wake-up on a shared 2-core machine)."""


class Ping(Event, type="deadline.ping", version=1):
    n: int


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) but never answers: an overloaded broker."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on: connection refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _publish_fails_in_time(url: str) -> str:
    # The registry in memory: the broker's write is what is bounded here. (With the registry in the broker, the
    # deadline bounds the schema check as well, but its worker thread outlives the call until the store's own
    # timeouts end it, which would leak into the next test.)
    app = App("deadline", broker=url, schemas=SchemaRegistry(), publishing=PublishPolicy(deadline=DEADLINE))
    started = time.monotonic()
    try:
        with pytest.raises(PublishFailed) as raised:
            await app.publish(Ping(n=1))
    finally:
        elapsed = time.monotonic() - started
        with contextlib.suppress(Exception):  # closing a broker that never connected may fail too: not tested here
            async with asyncio.timeout(5):
                await app.close()
    print(f"\n{url.split(':', 1)[0]}: failed in {elapsed:.2f} s: {raised.value}")  # shown with -s
    assert elapsed < DEADLINE + MARGIN, f"took {elapsed:.2f} s"
    message = str(raised.value)
    assert "deadline.ping" in message
    assert "s3cret" not in message
    return message


def _url(scheme: str, port: int) -> str:
    # Kafka takes no credentials in a URL at all (only ..._file / ..._env options): nothing to redact
    if scheme == "kafka":
        return f"kafka://127.0.0.1:{port}"
    return f"{scheme}://user:s3cret@127.0.0.1:{port}"


def _shown(scheme: str, port: int) -> str:
    return f"kafka://127.0.0.1:{port}" if scheme == "kafka" else f"{scheme}://user:***@127.0.0.1:{port}"


@pytest.mark.parametrize("scheme", ["nats", "redis", "kafka"])
async def test_a_publish_to_a_broker_that_never_answers_times_out_naming_it(scheme: str, silent_port: int) -> None:
    message = await _publish_fails_in_time(_url(scheme, silent_port))
    assert _shown(scheme, silent_port) in message, message


@pytest.mark.parametrize("scheme", ["nats", "redis", "kafka"])
async def test_a_publish_to_a_closed_port_fails_within_the_deadline_naming_the_broker(
    scheme: str, closed_port: int
) -> None:
    message = await _publish_fails_in_time(_url(scheme, closed_port))
    assert _shown(scheme, closed_port) in message, message


async def test_a_publish_to_a_locked_sqlite_log_times_out_naming_the_file(tmp_path: Path) -> None:
    # Given a log that works, then another process's writer holding it locked
    path = tmp_path / "log.db"
    url = f"sqlite:///{path}"
    app = App("deadline", broker=url, publishing=PublishPolicy(deadline=DEADLINE))
    await app.publish(Ping(n=0))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        # When the app publishes again
        started = time.monotonic()
        with pytest.raises(PublishTimeout) as raised:
            await app.publish(Ping(n=1))
        elapsed = time.monotonic() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    # Then it failed at its deadline, naming the file; and publishes work again once the lock is gone
    assert DEADLINE <= elapsed < DEADLINE + MARGIN
    assert str(path) in str(raised.value)
    await app.publish(Ping(n=2))
    await app.close()
