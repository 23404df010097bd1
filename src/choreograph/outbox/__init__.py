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

Needs the ``outbox`` extra: ``pip install 'choreograph[outbox]'``.
"""

from __future__ import annotations

try:
    import sqlalchemy  # noqa: F401 - checked here for a clear install hint
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "choreograph.outbox needs SQLAlchemy: pip install 'choreograph[outbox]' "
        "(SQLAlchemy 2, psycopg 3 for PostgreSQL, aiosqlite for SQLite)"
    ) from exc

from choreograph.outbox.inbox import Transactional, TransactionalHandlers, db_session
from choreograph.outbox.metrics import RelayMetrics
from choreograph.outbox.relay import Relay, RelayConfig
from choreograph.outbox.tables import LANES, install, install_sync, lane_of, metadata, migration_sql
from choreograph.outbox.writer import Outbox

__all__ = [
    "LANES",
    "Outbox",
    "Relay",
    "RelayConfig",
    "RelayMetrics",
    "Transactional",
    "TransactionalHandlers",
    "db_session",
    "install",
    "install_sync",
    "lane_of",
    "metadata",
    "migration_sql",
]
