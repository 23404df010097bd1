"""Liveness and readiness of a running App: ``/healthz`` and ``/readyz`` beside ``/metrics``.

:func:`serve_probes` serves, on one port of the App's event loop:

* ``/metrics`` — the Prometheus exposition (see :mod:`choreograph.observe.metrics`);
* ``/healthz`` — liveness: 200 while the event loop keeps up. A heartbeat
  task sleeps ``interval`` seconds in a loop and records how late it woke;
  the probe answers 503 when the last wake-up was later than ``loop_bound``
  or no wake-up happened for that long. A loop blocked outright answers
  nothing until it is free, which the prober's own timeout counts as a
  failure; after it is free, the probe keeps answering 503 for ``hold``
  seconds (the late wake-up is the evidence — a probe queued behind the
  block is answered after the heartbeat has already caught up), then 200;
* ``/readyz`` — readiness: 200 when the broker answers ``ping`` within
  ``ping_timeout`` seconds and every consumer the App started in this
  process is running. Consumers start only after the App checked its
  schemas against the registry, so a consumer running also means its
  schemas were admitted. Otherwise 503, the body naming each cause (the
  broker's error, credentials redacted; which consumer is not running).

Consumers are found as the App's tasks named ``consumer:<group>`` (the
names :meth:`App.start` gives them), among the groups of :meth:`App.stats`.
Whether a running consumer holds partitions or waits for them is not
visible here: both count as ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from choreograph.core.errors import BrokerError
from choreograph.core.redaction import redact_text
from choreograph.observe.http_endpoint import TEXT, answer
from choreograph.observe.metrics import install_metrics
from choreograph.runtime.app import App

logger = logging.getLogger("choreograph.health")

HEALTHZ: Final = "/healthz"
READYZ: Final = "/readyz"
METRICS: Final = "/metrics"
PATHS: Final = (METRICS, HEALTHZ, READYZ)

LOOP_BOUND: Final = 1.0
"""Seconds the event loop may be late before /healthz fails."""
HEARTBEAT_INTERVAL: Final = 0.25
"""Seconds between the heartbeats that measure the loop's lateness."""
PING_TIMEOUT: Final = 2.0  # seconds /readyz waits for the broker's ping
_REQUEST_TIMEOUT: Final = 15.0


class Probes:
    """The liveness and readiness checks of one App; call :meth:`start` on its event loop."""

    def __init__(
        self,
        app: App,
        *,
        loop_bound: float = LOOP_BOUND,
        interval: float = HEARTBEAT_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
        hold: float | None = None,
    ) -> None:
        self.app = app
        self.loop_bound = loop_bound
        self.hold = max(1.0, 2 * loop_bound) if hold is None else hold
        """Seconds /healthz keeps failing after the loop was seen blocked."""
        self.interval = interval
        self.ping_timeout = ping_timeout
        self._late = 0.0
        self._last_beat = 0.0
        self._blocked_at = float("-inf")  # loop time of the last heartbeat later than the bound
        self._beat: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the heartbeat that measures the loop's lateness. Idempotent."""
        if self._beat is None:
            self._last_beat = asyncio.get_running_loop().time()
            self._beat = asyncio.create_task(self._heartbeat(), name="choreograph:health-heartbeat")

    async def close(self) -> None:
        """Stop the heartbeat. Idempotent."""
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
            self._beat = None

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self._last_beat = loop.time()
            self._late = max(0.0, self._last_beat - due)
            if self._late > self.loop_bound:
                self._blocked_at = self._last_beat

    def liveness(self) -> tuple[bool, str]:
        """Return (alive, explanation): whether the loop's last heartbeat was on time."""
        now = asyncio.get_running_loop().time()
        silent = now - self._last_beat - self.interval
        late = max(self._late, silent)
        if late > self.loop_bound:
            return False, f"event loop blocked: {late:.2f} s late (bound {self.loop_bound:g} s)"
        if now - self._blocked_at < self.hold:
            ago = now - self._blocked_at
            return False, f"event loop blocked recently: {ago:.2f} s ago (bound {self.loop_bound:g} s)"
        return True, f"ok: event loop {late * 1000:.0f} ms late at most"

    async def readiness(self) -> tuple[bool, str]:
        """Return (ready, explanation): broker reachable and every consumer started here running."""
        causes: list[str] = []
        try:
            async with asyncio.timeout(self.ping_timeout):
                await self.app.broker.ping()
        except TimeoutError:
            causes.append(f"broker did not answer ping within {self.ping_timeout:g} s")
        except (BrokerError, OSError) as exc:
            causes.append(f"broker unreachable: {redact_text(str(exc), self.app.broker_url)}")
        groups = list(self.app.stats())
        if not groups:
            causes.append("no consumer started yet")
        running = {
            task.get_name().removeprefix("consumer:")
            for task in asyncio.all_tasks()
            if task.get_name().startswith("consumer:") and not task.done()
        }
        causes.extend(f"consumer {group} is not running" for group in groups if group not in running)
        if causes:
            return False, "not ready: " + "; ".join(causes)
        return True, f"ready: broker reachable, {len(groups)} consumer(s) running"


class ProbeServer:
    """The HTTP server of ``/metrics``, ``/healthz`` and ``/readyz`` on the App's event loop."""

    def __init__(self, probes: Probes, server: asyncio.Server) -> None:
        self.probes = probes
        self._server = server

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful with port 0)."""
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        """Stop serving and stop the heartbeat. Idempotent."""
        self._server.close()
        await self._server.wait_closed()
        await self.probes.close()


async def serve_probes(app: App, port: int, *, host: str = "127.0.0.1", probes: Probes | None = None) -> ProbeServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` of ``app`` at ``http://host:port``; return the server.

    Installs metrics on ``app`` if not done yet, so call it before the app
    starts. Each request is answered on the current event loop, one
    connection per request (``Connection: close``); ``HEAD`` is answered too.
    """
    metrics = install_metrics(app)
    checks = probes or Probes(app)
    checks.start()

    async def route(path: str) -> tuple[int, str, bytes]:
        if path == METRICS:
            return 200, CONTENT_TYPE_LATEST, await metrics.scrape()
        if path == HEALTHZ:
            ok, text = checks.liveness()
        elif path == READYZ:
            ok, text = await checks.readiness()
        else:
            return 404, TEXT, f"not found; try {', '.join(PATHS)}\n".encode()
        return (200 if ok else 503), TEXT, (text + "\n").encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer(reader, writer, route, timeout=_REQUEST_TIMEOUT)

    try:
        server = await asyncio.start_server(handle, host, port)
    except BaseException:
        await checks.close()
        raise
    return ProbeServer(checks, server)
