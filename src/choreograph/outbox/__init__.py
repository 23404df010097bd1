"""The transactional outbox and inbox in the service's own database (SQLAlchemy: PostgreSQL, SQLite).

- :class:`Outbox` stages events in ``choreograph_outbox`` within the caller's
  transaction (async or sync session), with final ids and encoded once;
- :class:`Relay` ships committed rows to the broker, in order per partition
  key, at least once, woken by NOTIFY (PostgreSQL) or commits in-process;
  several relays may run;
- :class:`Transactional` + :class:`TransactionalHandlers`: a handler's
  effects, its inbox record and its outgoing events commit in one
  transaction before the broker is acknowledged (:func:`db_session`);
- :func:`install` creates the tables from the shipped SQL; :data:`metadata`
  describes them for Alembic.

Needs the ``outbox`` extra: ``pip install 'choreograph[outbox]'``. The names
are imported on first use, so ``choreograph.outbox.companion`` (what
``choreograph run`` reads) works without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from choreograph.outbox.database import async_url, open_engine
    from choreograph.outbox.inbox import Transactional, TransactionalHandlers, db_session
    from choreograph.outbox.metrics import RelayMetrics
    from choreograph.outbox.relay import Relay, RelayConfig
    from choreograph.outbox.tables import LANES, install, install_sync, lane_of, metadata, migration_sql
    from choreograph.outbox.writer import Outbox

_HOMES = {
    "async_url": "database",
    "open_engine": "database",
    "Transactional": "inbox",
    "TransactionalHandlers": "inbox",
    "db_session": "inbox",
    "RelayMetrics": "metrics",
    "Relay": "relay",
    "RelayConfig": "relay",
    "LANES": "tables",
    "install": "tables",
    "install_sync": "tables",
    "lane_of": "tables",
    "metadata": "tables",
    "migration_sql": "tables",
    "Outbox": "writer",
}

__all__ = [
    "LANES",
    "Outbox",
    "Relay",
    "RelayConfig",
    "RelayMetrics",
    "Transactional",
    "TransactionalHandlers",
    "async_url",
    "db_session",
    "install",
    "install_sync",
    "lane_of",
    "metadata",
    "migration_sql",
    "open_engine",
]

_HINT = "choreograph.outbox needs its extra: pip install 'choreograph[outbox]' (SQLAlchemy 2, psycopg 3, aiosqlite)"


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'choreograph.outbox' has no attribute {name!r}")
    try:
        module = importlib.import_module(f"choreograph.outbox.{home}")
    except ImportError as exc:
        if exc.name in ("sqlalchemy", "greenlet"):
            raise ImportError(_HINT) from exc
        raise
    return getattr(module, name)
