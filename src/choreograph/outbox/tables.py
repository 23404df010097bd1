"""The outbox and inbox tables, as SQLAlchemy metadata (for queries and Alembic) and as shipped SQL.

Four tables live in the service's own database:

- ``choreograph_outbox``: one row per event to ship — its final id, topic,
  partition key, lane, the encoded envelope (encoded once, when staged),
  when it was staged and when a relay shipped it. ``position`` (an
  autoincrement) is the shipping order.
- ``choreograph_outbox_lane``: one row per lane (``LANES`` of them). A key's
  events all fall in one lane; a PostgreSQL relay locks the lanes it ships
  (``FOR UPDATE SKIP LOCKED``) for the length of one shipping transaction, so
  two relays never ship one key's events side by side.
- ``choreograph_outbox_lease``: one row; on SQLite, the relay holding it is
  the only one shipping (SQLite has no row locks).
- ``choreograph_inbox``: one row per (consumer group, event dedupe key)
  handled by a ``Transactional`` handler, committed with the handler's effects.

:func:`install` runs the shipped SQL (``sql/postgresql.sql``, ``sql/sqlite.sql``);
:data:`metadata` describes the same tables for ``alembic revision --autogenerate``
(the PostgreSQL wake-up trigger exists only in the SQL).
"""

from __future__ import annotations

import zlib
from importlib import resources
from typing import Final

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

LANES: Final = 64
"""Lanes the outbox is split into: a partition key's events are all in ``lane_of(key)``."""

CHANNEL: Final = "choreograph_outbox"
"""The PostgreSQL NOTIFY channel a commit that staged events signals (by trigger)."""

metadata = MetaData()

outbox = Table(
    "choreograph_outbox",
    metadata,
    Column("position", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("topic", String(249), nullable=False),
    Column("partition_key", Text, nullable=True),
    Column("lane", Integer, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("shipped_at", Double, nullable=True),
)
Index(
    "choreograph_outbox_pending",
    outbox.c.lane,
    outbox.c.position,
    postgresql_where=outbox.c.shipped_at.is_(None),
    sqlite_where=outbox.c.shipped_at.is_(None),
)
Index("choreograph_outbox_shipped", outbox.c.shipped_at)

lanes = Table("choreograph_outbox_lane", metadata, Column("lane", Integer, primary_key=True, autoincrement=False))

lease = Table(
    "choreograph_outbox_lease",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(64), nullable=True),
    Column("expires_at", Double, nullable=False),
)

inbox = Table(
    "choreograph_inbox",
    metadata,
    Column("consumer_group", String(249), primary_key=True),
    Column("dedupe_key", Text, primary_key=True),
    Column("handled_at", Double, nullable=False),
)
Index("choreograph_inbox_handled", inbox.c.handled_at)


def lane_of(key: str | None, event_id: str) -> int:
    """Return the lane of an event: by its partition key, or by its id when it has none (no order promised)."""
    basis = key if key is not None else event_id
    return zlib.crc32(basis.encode("utf-8", "surrogatepass")) % LANES


def migration_sql(dialect: str) -> str:
    """Return the shipped migration for ``dialect`` ("postgresql" or "sqlite"): idempotent, plain SQL."""
    if dialect not in ("postgresql", "sqlite"):
        raise ValueError(f"no outbox migration for {dialect!r}; shipped: postgresql, sqlite")
    return resources.files("choreograph.outbox").joinpath("sql", f"{dialect}.sql").read_text("utf-8")


def statements(sql: str) -> list[str]:
    """Split a shipped migration into statements: each ends with ``;`` on a line followed by a blank line."""
    chunks = (chunk.strip() for chunk in sql.split(";\n\n"))
    return [chunk.rstrip(";") for chunk in chunks if chunk and not _only_comments(chunk)]


def _only_comments(chunk: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in chunk.splitlines())


def install_sync(connection: Connection) -> None:
    """Create the tables (if missing) on ``connection`` from the shipped SQL. Idempotent; commit is the caller's."""
    for statement in statements(migration_sql(connection.dialect.name)):
        connection.exec_driver_sql(statement)


async def install(engine: AsyncEngine) -> None:
    """Create the outbox, lane, lease and inbox tables in ``engine``'s database if missing. Idempotent."""
    async with engine.begin() as connection:
        await connection.run_sync(install_sync)
