"""``choreograph relay`` and ``choreograph outbox``: ship a service database's outbox, install and inspect it.

* ``relay --db URL --broker URL`` runs a relay until SIGINT/SIGTERM: committed
  outbox rows go to the broker in order per partition key, at least once
  (``choreograph.outbox.relay``). Run as many as you like on one database.
* ``outbox install --db URL`` creates the outbox, lane, lease and inbox tables
  (the shipped SQL; idempotent).
* ``outbox status --db URL [--json]`` shows how many events wait, the age of
  the oldest, and when the last one was shipped.

Database URLs are SQLAlchemy's (``postgresql://user@host/db``,
``sqlite:///path.db``); an async driver is chosen for them. Passwords in
them are never printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from choreograph.core.redaction import redact_text, redact_url
from choreograph.observe.logs import configure_logging
from choreograph.ops.session import opened_broker
from choreograph.ops.terminal import BrokerOption, emit_json, fail, fmt_time, out, run_async, safe, shown_url

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        metavar="URL",
        envvar="CHOREOGRAPH_OUTBOX_DB",
        help="The service's database holding the outbox: postgresql://user@host/db or sqlite:///path.db.",
    ),
]


@contextlib.asynccontextmanager
async def _engine(url: str) -> AsyncIterator[AsyncEngine]:
    """The async engine for ``url``; database errors leave as a redacted message (exit 3), never a traceback."""
    try:
        from choreograph.outbox import open_engine
    except ImportError as exc:
        raise fail(str(exc), 2) from None
    from sqlalchemy.exc import SQLAlchemyError

    engine = open_engine(url)
    try:
        yield engine
    except SQLAlchemyError as exc:
        detail = redact_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, url)
        raise fail(f"database error on {redact_url(url)}: {detail}", 3) from None
    finally:
        await engine.dispose()


async def _require_tables(engine: AsyncEngine, url: str) -> None:
    """Refuse (exit 2, naming ``outbox install``) a database where the outbox tables were never created."""
    from sqlalchemy import inspect

    from choreograph.outbox.tables import outbox

    async with engine.connect() as conn:
        present = await conn.run_sync(lambda sync: inspect(sync).has_table(outbox.name))
    if not present:
        raise fail(
            f"no outbox in {redact_url(url)}: create its tables with `choreograph outbox install --db URL` "
            "(or start the relay with --install)",
            2,
        )


def relay(
    db: DbOption,
    broker: BrokerOption = None,
    batch_size: Annotated[int, typer.Option(metavar="N", help="Most events shipped per round.")] = 500,
    poll_interval: Annotated[
        float, typer.Option(metavar="SECONDS", help="Longest wait between rounds without a wake-up.")
    ] = 1.0,
    retention: Annotated[
        float, typer.Option(metavar="SECONDS", help="Delete shipped rows this long after shipping.")
    ] = 7 * 86400.0,
    inbox_retention: Annotated[
        float,
        typer.Option(metavar="SECONDS", help="Delete inbox keys this long after handling (past any retry horizon)."),
    ] = 14 * 86400.0,
    install: Annotated[bool, typer.Option("--install", help="Create the outbox tables first if missing.")] = False,
    metrics_port: Annotated[
        int | None, typer.Option(metavar="PORT", help="Serve the relay's /metrics at http://METRICS_HOST:PORT.")
    ] = None,
    metrics_host: Annotated[str, typer.Option(metavar="HOST", help="Interface for /metrics.")] = "127.0.0.1",
    log_level: Annotated[str, typer.Option(metavar="LEVEL", help="DEBUG, INFO, WARNING, ERROR.")] = "INFO",
) -> None:
    """Ship a service database's outbox to the broker until SIGINT/SIGTERM (several relays may share one)."""
    configure_logging(json=False, level=log_level.upper())

    @run_async
    async def main() -> None:
        from choreograph.outbox import Relay, RelayConfig, RelayMetrics
        from choreograph.outbox import install as install_tables

        config = RelayConfig(
            batch_size=batch_size, poll_interval=poll_interval, retention=retention, inbox_retention=inbox_retention
        )
        async with _engine(db) as engine, opened_broker(broker) as target:
            if install:
                await install_tables(engine)
            else:
                await _require_tables(engine, db)
            await target.ping()
            metrics = RelayMetrics()
            if metrics_port is not None:
                from prometheus_client import start_http_server

                start_http_server(metrics_port, addr=metrics_host, registry=metrics.registry)
            worker = Relay(engine, target, config=config, metrics=metrics)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, stop.set)
            out.print(
                f"[bold]choreograph relay[/] {safe(worker.name)}: {shown_url(db)} -> {shown_url(broker or '')}"
                f"{f'; metrics on {safe(metrics_host)}:{metrics_port}' if metrics_port is not None else ''}"
                " (Ctrl-C to stop)"
            )
            await worker.run(stop)
            out.print(f"relay {safe(worker.name)} stopped after shipping {worker.shipped} event(s)")

    main()


outbox_cli = typer.Typer(help="The transactional outbox in a service's database: install its tables, show its state.")


@outbox_cli.command("install")
def install_command(db: DbOption) -> None:
    """Create the outbox, lane, lease and inbox tables in --db if missing (idempotent)."""

    @run_async
    async def main() -> None:
        from choreograph.outbox import install as install_tables

        async with _engine(db) as engine:
            await install_tables(engine)
        out.print(f"outbox tables ready in {shown_url(db)}")

    main()


@outbox_cli.command("status")
def status_command(
    db: DbOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Show events waiting in the outbox, the oldest one's age, and the last shipment."""

    @run_async
    async def main() -> None:
        async with _engine(db) as engine:
            await _require_tables(engine, db)
            doc = await _status(engine)
        if as_json:
            emit_json(doc)
            return
        out.print(f"pending events:  {doc['pending']}")
        out.print(f"oldest pending:  {doc['oldest_age_seconds']:.1f}s old")
        out.print(f"shipped, kept:   {doc['shipped_retained']}")
        out.print(f"last shipped at: {safe(fmt_time(doc['last_shipped_at']))}")
        out.print(f"inbox keys:      {doc['inbox_keys']}")

    main()


async def _status(engine: AsyncEngine) -> dict[str, Any]:
    from sqlalchemy import func, select

    from choreograph.outbox.tables import inbox, outbox

    async with engine.connect() as conn:
        pending, oldest = (
            await conn.execute(select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.shipped_at.is_(None)))
        ).one()
        shipped, last = (
            await conn.execute(
                select(func.count(), func.max(outbox.c.shipped_at)).where(outbox.c.shipped_at.is_not(None))
            )
        ).one()
        keys = (await conn.execute(select(func.count()).select_from(inbox))).scalar_one()
    return {
        "pending": int(pending),
        "oldest_age_seconds": max(0.0, time.time() - oldest) if oldest is not None else 0.0,
        "shipped_retained": int(shipped),
        "last_shipped_at": last,
        "inbox_keys": int(keys),
    }


def register(cli: typer.Typer) -> None:
    """Add ``relay`` and the ``outbox`` group to ``cli``."""
    cli.command("relay")(relay)
    cli.add_typer(outbox_cli, name="outbox")
