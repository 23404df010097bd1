"""Redis Streams broker: ``redis://host:port/db``.

Needs the ``redis`` extra (redis-py). See ``docs/backends/redis.md`` for the
mapping of choreograph concepts onto streams, consumer groups and keys.
"""

from __future__ import annotations

from choreograph.core.errors import MissingExtraError

try:
    import redis.asyncio  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    raise MissingExtraError("Redis broker", "redis", "redis") from None

from .broker import RedisBroker
from .config import RedisConfig
from .subscription import RedisSubscription

__all__ = ["RedisBroker", "RedisConfig", "RedisSubscription"]
