"""The ``choreograph`` command line: run workers and operate the log.

Exit codes: 0 ok; 1 the command found a problem (not found, failures);
2 bad input (arguments, JSON, module, URL); 3 the broker is unreachable.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import orjson
import typer

from choreograph.brokers import open_broker
from choreograph.core import codec
from choreograph.core.broker import Record
from choreograph.core.envelope import Envelope, now_rfc3339
from choreograph.core.errors import ConfigurationError
from choreograph.core.ids import new_id
from choreograph.observe.health import serve_probes
from choreograph.observe.logs import configure_logging, install_log_context
from choreograph.observe.metrics import install_metrics
from choreograph.observe.tracing import install_tracing
from choreograph.ops import backup_cli, dlq_cli, flows_cli, log_cli, observe_cli
from choreograph.ops.loader import load_app
from choreograph.ops.schema_cli import asyncapi_command, catalog_command, schema_app
from choreograph.ops.terminal import EXIT_USAGE, BrokerOption, fail, out, remember_broker, run_async, safe, shown_url

DEFAULT_METRICS_HOST = "127.0.0.1"
"""The metrics server listens on loopback unless ``--metrics-host`` widens it."""

cli = typer.Typer(
    name="choreograph",
    help="Event choreography toolkit: run services, inspect topics, lag and dead letters, run the demo.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cli.add_typer(dlq_cli.dlq, name="dlq")


@cli.command()
def run(
    app_spec: Annotated[
        str, typer.Argument(metavar="MODULE:APP", help="The App to run, e.g. choreograph.examples.shop.app:app")
    ],
    service: Annotated[
        list[str] | None, typer.Option("--service", "-s", help="Run only this service (repeatable).")
    ] = None,
    broker: BrokerOption = None,
    stop_timeout: Annotated[float, typer.Option(help="Seconds to let in-flight handlers finish on stop.")] = 30.0,
    stats_file: Annotated[
        Path | None, typer.Option(help="On exit, write per-handler counters to this JSON file.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve /metrics, /healthz and /readyz at http://METRICS_HOST:PORT.")
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(help="Interface the metrics server binds; default loopback only (0.0.0.0: all interfaces)."),
    ] = DEFAULT_METRICS_HOST,
    log_json: Annotated[bool, typer.Option("--log-json", help="Write logs as JSON lines (production).")] = False,
    log_level: Annotated[str, typer.Option(help="Log level: DEBUG, INFO, WARNING, ERROR.")] = "INFO",
    fail_fast: Annotated[
        bool,
        typer.Option(
            "--fail-fast",
            help="Stop every handler and exit non-zero when a consumer crashes (default: log it and restart it).",
        ),
    ] = False,
) -> None:
    """Run the App's handlers as workers until SIGINT/SIGTERM.

    Each handler is its own consumer group. Start several processes on the same
    broker to share the work: partitions are spread across them, and a crashed
    process's partitions move to the survivors. On SIGINT/SIGTERM in-flight
    handlers finish and their results are committed before exit.
    """

    configure_logging(json=log_json, level=log_level.upper())

    @run_async
    async def main() -> None:
        app = load_app(app_spec)
        if broker:
            app.configure_broker(broker)
        install_log_context(app)
        install_tracing(app)
        install_metrics(app)
        await app.broker.ping()
        server = await serve_probes(app, metrics_port, host=metrics_host) if metrics_port is not None else None
        names = safe(", ".join(service or app.services))
        where = f"; metrics on {safe(metrics_host)}:{server.port}/metrics" if server else ""
        out.print(f"[bold]choreograph[/] running {names} on {shown_url(app.broker_url)}{where} (Ctrl-C to stop)")
        try:
            await app.run(service or None, stop_timeout=stop_timeout, fail_fast=fail_fast)
        finally:
            if server is not None:
                await server.close()
            if stats_file is not None:
                stats = {group: dataclasses.asdict(counters) for group, counters in app.stats().items()}
                stats_file.write_text(json.dumps(stats, indent=2))

    main()


@cli.command()
def publish(
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="Event type, e.g. shop.order.placed")],
    data: Annotated[str, typer.Argument(metavar="JSON", help="The event data as a JSON object")],
    key: Annotated[str | None, typer.Option(help="Partition key (events with one key stay in order).")] = None,
    topic: Annotated[str | None, typer.Option(help="Topic; default: the event type.")] = None,
    source: Annotated[str, typer.Option(help="CloudEvents source of the event.")] = "choreograph-cli",
    version: Annotated[int, typer.Option(help="Schema version of the data.")] = 1,
    app_spec: Annotated[
        str | None,
        typer.Option("--app", metavar="MODULE:APP", help="Validate the data against this App's event model."),
    ] = None,
    broker: BrokerOption = None,
) -> None:
    """Publish one event (a new correlation) and print its id."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise fail(f"JSON is not valid: {exc}", EXIT_USAGE) from None
    if not isinstance(payload, dict):
        raise fail(f"JSON must be an object, got {type(payload).__name__}", EXIT_USAGE)

    @run_async
    async def main() -> None:
        resolved_topic = topic or event_type
        if app_spec:
            app = load_app(app_spec)
            models = {spec.event.event_type(): spec.event for spec in app.handlers}
            if event_type not in models:
                raise ConfigurationError(f"{app_spec} handles no event of type {event_type!r}")
            try:
                models[event_type].model_validate(payload)
            except ValueError as exc:
                raise ConfigurationError(f"data does not match {event_type}: {exc}") from None
            resolved_topic = topic or models[event_type].topic()
        eid = new_id()
        envelope = Envelope(
            id=eid,
            source=source,
            type=event_type,
            data=payload,
            time=now_rfc3339(),
            correlationid=eid,
            partitionkey=key,
            schemaversion=version,
        )
        target = open_broker(broker)
        try:
            await target.publish(resolved_topic, [Record(codec.encode(envelope), key)])
        finally:
            await target.close()
        out.print(eid)

    main()


@cli.command()
def demo(
    orders: Annotated[int, typer.Option(help="Orders to push through the shop.")] = 1000,
    workers: Annotated[int, typer.Option(help="Worker processes sharing the log.")] = 2,
    decline_rate: Annotated[float, typer.Option(help="Share of payments declined.")] = 0.15,
    stockout_rate: Annotated[float, typer.Option(help="Share of orders out of stock.")] = 0.1,
    fail_rate: Annotated[float, typer.Option(help="Share of handler calls failing transiently.")] = 0.05,
    poison: Annotated[int, typer.Option(help="Poison orders that end in the dead letter.")] = 1,
    duplicates: Annotated[int, typer.Option(help="Orders the producer sends twice (same id).")] = 10,
    broker: Annotated[
        str | None,
        typer.Option(
            "--broker",
            "-b",
            help="Broker URL; default: a fresh SQLite file ./.choreograph-demo.db",
            callback=remember_broker,
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 120.0,
) -> None:
    """Run the shop choreography: N orders through five services in worker processes, then a summary."""
    from choreograph.ops.demo import DemoSettings, run_demo

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


cli.add_typer(schema_app, name="schema")
cli.command("catalog")(catalog_command)
cli.command("asyncapi")(asyncapi_command)
log_cli.register(cli)
flows_cli.register(cli)
backup_cli.register(cli)
observe_cli.mount(cli)


def main() -> None:
    """Entry point of the ``choreograph`` script."""
    cli()
