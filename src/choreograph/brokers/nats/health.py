"""NATS health (M8): JetStream account usage from the client, server figures from the monitoring endpoint.

The account's JetStream usage and limits (``$JS.API.INFO``) come over the
broker's own connection, always. With ``monitor_url`` configured (the server's
HTTP monitoring port, ``nats-server -m 8222``), a scrape also reads ``/varz``
(connections, memory, CPU, slow consumers, traffic) and ``/jsz`` (the server's
JetStream messages and bytes); ``nats_monitor_up`` says whether that worked, so
an unreachable monitoring port does not hide the account's figures.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import TYPE_CHECKING, Any, Final

from choreograph.core.broker_health import HealthSample
from choreograph.core.redaction import redact_url

from .translation import translated

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from .config import NatsConfig

VARZ: Final = (
    ("connections", "nats_server_connections", "Client connections open on the server."),
    ("mem", "nats_server_memory_bytes", "Resident memory of the server process."),
    ("cpu", "nats_server_cpu_percent", "CPU use of the server process, in percent of one core."),
    ("slow_consumers", "nats_server_slow_consumers", "Clients the server cut off for reading too slowly, since start."),
    ("in_msgs", "nats_server_in_messages", "Messages received by the server since start."),
    ("out_msgs", "nats_server_out_messages", "Messages sent by the server since start."),
    ("in_bytes", "nats_server_in_bytes", "Bytes received by the server since start."),
    ("out_bytes", "nats_server_out_bytes", "Bytes sent by the server since start."),
)
JSZ: Final = (
    ("messages", "nats_server_jetstream_messages", "Messages JetStream stores on the server."),
    ("bytes", "nats_server_jetstream_bytes", "Bytes JetStream stores on the server."),
    ("memory", "nats_server_jetstream_memory_bytes", "JetStream memory storage used on the server."),
    ("storage", "nats_server_jetstream_storage_bytes", "JetStream file storage used on the server."),
)
MONITOR_TIMEOUT: Final = 2.0
"""Seconds one monitoring request may take."""


class NatsHealth:
    """Mixin of NatsBroker: :class:`~choreograph.core.broker_health.HealthReporter`."""

    config: NatsConfig

    async def _ready(self) -> JetStreamContext:
        raise NotImplementedError  # provided by NatsBroker

    async def broker_health(self) -> list[HealthSample]:
        """Return the account's JetStream figures and, if ``monitor_url`` is set, the server's."""
        js = await self._ready()
        with translated("read the JetStream account info"):
            info = await js.account_info()
        out = account_samples(info)
        if self.config.monitor_url is not None:
            out += await monitor_samples(self.config.monitor_url)
        return out


def account_samples(info: Any) -> list[HealthSample]:
    """The account's JetStream usage, limits (when limited) and API counters."""
    out = [
        HealthSample("nats_jetstream_memory_bytes", float(info.memory), "JetStream memory storage the account uses."),
        HealthSample("nats_jetstream_storage_bytes", float(info.storage), "JetStream file storage the account uses."),
        HealthSample("nats_jetstream_streams", float(info.streams), "Streams of the account."),
        HealthSample("nats_jetstream_consumers", float(info.consumers), "Consumers of the account."),
        HealthSample("nats_jetstream_api_requests", float(info.api.total), "JetStream API requests of the account."),
        HealthSample("nats_jetstream_api_errors", float(info.api.errors), "JetStream API requests that failed."),
    ]
    limits = info.limits
    for value, name, text in (
        (limits.max_memory, "nats_jetstream_memory_max_bytes", "The account's JetStream memory limit."),
        (limits.max_storage, "nats_jetstream_storage_max_bytes", "The account's JetStream storage limit."),
    ):
        if isinstance(value, int) and value >= 0:  # -1: unlimited, no series
            out.append(HealthSample(name, float(value), text))
    return out


async def monitor_samples(base: str) -> list[HealthSample]:
    """Read ``/varz`` and ``/jsz`` of the monitoring endpoint; on failure only ``nats_monitor_up 0``."""
    up_help = "1 if the server's monitoring endpoint answered the last scrape."
    try:
        varz, jsz = await asyncio.gather(_get_json(base, "/varz"), _get_json(base, "/jsz"))
    except (OSError, ValueError):
        return [HealthSample("nats_monitor_up", 0.0, up_help)]
    labels = (("server", str(varz.get("server_name") or varz.get("server_id") or redact_url(base))),)
    out = [HealthSample("nats_monitor_up", 1.0, up_help)]
    for source, table in ((varz, VARZ), (jsz, JSZ)):
        for field, name, text in table:
            value = source.get(field)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out.append(HealthSample(name, float(value), text, labels))
    return out


async def _get_json(base: str, path: str) -> dict[str, Any]:
    def get() -> dict[str, Any]:
        with urllib.request.urlopen(base.rstrip("/") + path, timeout=MONITOR_TIMEOUT) as reply:
            data = json.loads(reply.read(4 * 1024 * 1024))
        if not isinstance(data, dict):
            raise ValueError(f"{path} did not answer a JSON object")
        return data

    return await asyncio.to_thread(get)
