"""``choreograph relay`` and ``choreograph outbox``: install, status, and a relay process shipping until SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from typer.testing import CliRunner

from choreograph import App
from choreograph.brokers import open_broker
from choreograph.ops.cli import cli
from choreograph.outbox import Outbox, async_url
from tests.conftest import wait_until
from tests.outbox.model import Moved, read_log

runner = CliRunner()


def test_install_then_status_as_json(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/service.db"
    assert runner.invoke(cli, ["outbox", "install", "--db", db]).exit_code == 0
    result = runner.invoke(cli, ["outbox", "status", "--db", db, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["pending"] == 0 and doc["inbox_keys"] == 0 and doc["last_shipped_at"] is None


def test_a_database_password_is_never_printed(tmp_path: Path) -> None:
    result = runner.invoke(cli, ["outbox", "status", "--db", "postgresql://u:s3cret@127.0.0.1:1/db"])
    assert result.exit_code == 3
    assert "s3cret" not in result.output


def test_the_async_driver_is_chosen_for_plain_urls() -> None:
    assert async_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert async_url("postgresql://u@h/db").startswith("postgresql+psycopg_async://")
    assert async_url("postgresql+psycopg_async://u@h/db").startswith("postgresql+psycopg_async://")


async def test_a_relay_process_ships_committed_events_and_stops_on_sigterm(tmp_path: Path) -> None:
    # Given a relay process on a service database and a SQLite log
    db, log = f"sqlite:///{tmp_path}/service.db", f"sqlite:///{tmp_path}/log.db"
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "choreograph", "relay", "--db", db, "--broker", log, "--install"),
        *("--poll-interval", "0.05"),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert b"choreograph relay" in await asyncio.wait_for(proc.stdout.readline(), 30)  # tables installed, running
    engine = create_async_engine(async_url(db))
    app = App("orders", broker=log)
    broker = open_broker(log)
    try:
        # When a unit of work commits an event
        async with AsyncSession(engine) as session, session.begin():
            staged = await Outbox(app).publish(session, Moved(key="a", n=1), key="a")

        # Then the relay process ships it, and stops cleanly on SIGTERM
        async def shipped() -> bool:
            return [env.id for env in await read_log(broker, Moved.topic())] == [staged.id]

        await wait_until(shipped, timeout=20, what="shipped by the relay process")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await broker.close()
        await app.close()
        await engine.dispose()


def test_a_database_without_the_outbox_tables_is_a_usage_error_naming_install(tmp_path: Path) -> None:
    # Given a service database where nobody ran `outbox install`
    db, log = f"sqlite:///{tmp_path}/service.db", f"sqlite:///{tmp_path}/log.db"
    # Then status and a relay without --install refuse at once (exit 2) and say how to create the tables,
    # rather than a database error, or a relay logging a failed round every second
    for command in (["outbox", "status", "--db", db], ["relay", "--db", db, "--broker", log]):
        result = runner.invoke(cli, command)
        assert result.exit_code == 2, result.output
        assert "outbox install" in result.output, result.output
