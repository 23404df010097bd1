"""The shipped SQL and the SQLAlchemy metadata describe the same tables; the SQL runs twice without harm."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import create_async_engine

from choreograph.outbox import LANES, install, metadata
from choreograph.outbox.tables import lanes, lease


async def test_the_shipped_sql_creates_the_tables_the_metadata_describes(db_url: str) -> None:
    # Given a database where the shipped migration ran twice
    engine = create_async_engine(db_url)
    try:
        await install(engine)
        await install(engine)
        async with engine.connect() as conn:
            # Then every table and column of the metadata exists, with the same nullability
            def columns(sync_conn: object) -> dict[str, dict[str, bool]]:
                inspector = inspect(sync_conn)
                return {
                    name: {col["name"]: bool(col["nullable"]) for col in inspector.get_columns(name)}
                    for name in metadata.tables
                }

            found = await conn.run_sync(columns)
            expected = {
                name: {col.name: bool(col.nullable) for col in table.columns} for name, table in metadata.tables.items()
            }
            assert found == expected
            # And the lanes and the lease row are there once
            assert sorted((await conn.execute(select(lanes.c.lane))).scalars()) == list(range(LANES))
            assert list((await conn.execute(select(lease.c.name))).scalars()) == ["relay"]
    finally:
        await engine.dispose()


def test_a_dialect_without_a_migration_is_refused() -> None:
    from choreograph.outbox import migration_sql

    with pytest.raises(ValueError, match="postgresql, sqlite"):
        migration_sql("mysql")


def test_outbox_status_asks_for_install_until_the_tables_exist(db_url: str) -> None:
    from typer.testing import CliRunner

    from choreograph.ops.cli import cli

    runner = CliRunner()
    missing = runner.invoke(cli, ["outbox", "status", "--db", db_url])
    assert missing.exit_code == 2 and "outbox install" in missing.output, missing.output
    assert runner.invoke(cli, ["outbox", "install", "--db", db_url]).exit_code == 0
    ready = runner.invoke(cli, ["outbox", "status", "--db", db_url, "--json"])
    assert ready.exit_code == 0 and '"pending":0' in ready.output, ready.output
