"""Redis server health (M8) from ``INFO``: memory, clients, operations, evictions, persistence.

``INFO`` is one round trip over the broker's own pool and reads no keys. An ACL
user needs the ``info`` command (``export acl`` grants it).
"""

from __future__ import annotations

from typing import Any, Final

from choreograph.core.broker_health import HealthSample

from .translation import translated

FIELDS: Final = (
    ("used_memory", "redis_memory_used_bytes", "Bytes Redis has allocated (INFO used_memory)."),
    ("maxmemory", "redis_memory_max_bytes", "Redis's memory limit (INFO maxmemory; 0: none)."),
    ("connected_clients", "redis_connected_clients", "Client connections open (INFO connected_clients)."),
    ("blocked_clients", "redis_blocked_clients", "Clients waiting in a blocking call such as XREADGROUP BLOCK."),
    ("instantaneous_ops_per_sec", "redis_ops_per_second", "Commands per second, sampled by Redis."),
    ("total_commands_processed", "redis_commands_processed", "Commands processed since the server started."),
    ("evicted_keys", "redis_evicted_keys", "Keys evicted for maxmemory since start (any is data loss for a log)."),
    ("rejected_connections", "redis_rejected_connections", "Connections refused for maxclients since start."),
    ("aof_last_write_status", "redis_aof_last_write_ok", "1 if the last append-only-file write succeeded."),
    ("rdb_last_bgsave_status", "redis_rdb_last_save_ok", "1 if the last background save succeeded."),
)


class RedisHealth:
    """Mixin of RedisBroker: :class:`~choreograph.core.broker_health.HealthReporter` from ``INFO``."""

    client: Any

    async def broker_health(self) -> list[HealthSample]:
        """Return the INFO figures this server reports (absent fields are left out)."""
        async with translated("read INFO"):
            info: dict[str, Any] = await self.client.info()
        return samples_from_info(info)


def samples_from_info(info: dict[str, Any]) -> list[HealthSample]:
    """Turn an ``INFO`` reply (parsed by redis-py) into samples; status fields become 1 (ok) or 0."""
    out = []
    for field, name, help_text in FIELDS:
        value = info.get(field)
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        if isinstance(value, str):
            if field.endswith("_status"):
                out.append(HealthSample(name, 1.0 if value == "ok" else 0.0, help_text))
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append(HealthSample(name, float(value), help_text))
    return out
