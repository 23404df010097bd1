"""``choreograph demo``: the command; the run itself is :mod:`choreograph.ops.demo`, imported when it runs."""

from __future__ import annotations

from typing import Annotated

import typer

from choreograph.ops.terminal import remember_broker, run_async, schemes_text


def demo(
    orders: Annotated[int, typer.Option(metavar="N", help="Orders to push through the shop.")] = 1000,
    workers: Annotated[int, typer.Option(metavar="N", help="Worker processes sharing the log.")] = 2,
    decline_rate: Annotated[float, typer.Option(metavar="SHARE", help="Share of payments declined.")] = 0.15,
    stockout_rate: Annotated[float, typer.Option(metavar="SHARE", help="Share of orders out of stock.")] = 0.1,
    fail_rate: Annotated[
        float, typer.Option(metavar="SHARE", help="Share of handler calls failing transiently.")
    ] = 0.05,
    poison: Annotated[int, typer.Option(metavar="N", help="Poison orders that end in the dead letter.")] = 1,
    duplicates: Annotated[int, typer.Option(metavar="N", help="Orders the producer sends twice (same id).")] = 10,
    broker: Annotated[
        str | None,
        typer.Option(
            "--broker",
            "-b",
            metavar="URL",
            help=f"Broker URL shared by the worker processes: {schemes_text()} (not memory://, which one "
            "process keeps to itself). Default: a fresh SQLite file ./.choreograph-demo.db",
            callback=remember_broker,
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(metavar="SECONDS", help="Give up after this many seconds.")] = 120.0,
    incident: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Run an incident drill instead: stuck-orders (a flag breaks shipping mid-run; the drill shows "
            "the alert, then works its runbook: find the failure group, fix, retry, watch flows recover).",
        ),
    ] = None,
) -> None:
    """Run the shop choreography: N orders through five services in worker processes, then a summary.

    With --incident stuck-orders, run the incident drill instead (poison orders
    and re-sent duplicates are left out, so the break is the only failure).
    """
    from choreograph.ops.demo import DemoSettings, run_demo  # the demo's imports cost nothing until it runs

    settings = DemoSettings(
        orders=orders,
        workers=workers,
        decline_rate=decline_rate,
        stockout_rate=stockout_rate,
        fail_rate=fail_rate,
        poison=poison,
        duplicates=duplicates,
        broker=broker,
        timeout=timeout,
    )
    if incident is not None:
        from choreograph.ops.demo_incident import run_incident

        run_async(run_incident)(settings, incident)
        return
    run_async(run_demo)(settings)


def register(cli: typer.Typer) -> None:
    """Add ``demo`` to ``cli``."""
    cli.command("demo")(demo)
