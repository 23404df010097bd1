"""The embedded SQLite broker: ``sqlite:///path.db``.

A durable, partitioned, append-only log in one SQLite file (WAL mode) with
consumer groups, committed offsets, partition leases shared by OS processes,
durable retries, dead letters, an inbox, lag, replay and retention. See
``docs/backends/sqlite.md``.
"""

from .broker import SqliteBroker
from .config import SqliteConfig
from .subscription import SqliteSubscription

__all__ = ["SqliteBroker", "SqliteConfig", "SqliteSubscription"]
