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
) -> None:
    """Run the shop choreography: N orders through five services in worker processes, then a summary."""
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
    run_async(run_demo)(settings)


def register(cli: typer.Typer) -> None:
    """Add ``demo`` to ``cli``."""
    cli.command("demo")(demo)
