"""The ``choreograph`` command line: run workers and operate the log.

Exit codes: 0 ok; 1 the command found a problem (not found, failures);
2 bad input (arguments, JSON, module, URL); 3 the broker is unreachable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated, TypeVar

import orjson
import typer
from rich.table import Table

from choreograph.brokers import open_broker
from choreograph.core import codec
from choreograph.core.broker import Broker, LagReporter, LogReader, Position, Record, TopicAdmin
from choreograph.core.envelope import Envelope, now_rfc3339
from choreograph.core.errors import ConfigurationError, DecodeError, UnknownTopic
from choreograph.core.ids import new_id
from choreograph.observe.logs import configure_logging, install_log_context
from choreograph.observe.metrics import install_metrics, serve_metrics
from choreograph.observe.tracing import install_tracing
from choreograph.ops import dlq_cli, flows_cli, observe_cli
from choreograph.ops.console import EXIT_USAGE, BrokerOption, fail, fmt_time, out, run_async
from choreograph.ops.loader import load_app
from choreograph.ops.schema_cli import asyncapi_command, catalog_command, schema_app

T = TypeVar("T")

cli = typer.Typer(
    name="choreograph",
    help="Event choreography toolkit: run services, inspect topics, lag and dead letters, run the demo.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cli.add_typer(dlq_cli.dlq, name="dlq")


def _require(broker: Broker, protocol: type[T], what: str) -> T:
    if not isinstance(broker, protocol):
        raise ConfigurationError(f"this broker ({type(broker).__name__}) cannot {what}")
    return broker


async def _known_topic(broker: Broker, topic: str) -> None:
    admin = _require(broker, TopicAdmin, "list topics")
    names = [info.name for info in await admin.topics()]
    if topic not in names:
        hint = f"; known topics: {', '.join(names)}" if names else "; the log has no topics yet"
        raise UnknownTopic(f"unknown topic {topic!r}{hint}")


@cli.command()
def run(
    app_spec: Annotated[str, typer.Argument(metavar="MODULE:APP", help="The App to run, e.g. examples.shop.app:app")],
    service: Annotated[
        list[str] | None, typer.Option("--service", "-s", help="Run only this service (repeatable).")
    ] = None,
    broker: BrokerOption = None,
    stop_timeout: Annotated[float, typer.Option(help="Seconds to let in-flight handlers finish on stop.")] = 30.0,
    stats_file: Annotated[
        Path | None, typer.Option(help="On exit, write per-handler counters to this JSON file.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics at http://0.0.0.0:PORT/metrics.")
    ] = None,
    log_json: Annotated[bool, typer.Option("--log-json", help="Write logs as JSON lines (production).")] = False,
    log_level: Annotated[str, typer.Option(help="Log level: DEBUG, INFO, WARNING, ERROR.")] = "INFO",
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
        server = await serve_metrics(app, metrics_port) if metrics_port is not None else None
        names = ", ".join(service or app.services)
        where = f"; metrics on :{server.port}/metrics" if server else ""
        out.print(f"[bold]choreograph[/] running {names} on {app.broker_url}{where} (Ctrl-C to stop)")
        try:
            await app.run(service or None, stop_timeout=stop_timeout)
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


def _parse_start(start: str) -> Position:
    if start == "earliest":
        return Position.earliest()
    if start == "latest":
        return Position.at_time(time.time())
    try:
        return Position.at_time(float(start))
    except ValueError:
        pass
    try:
        from datetime import datetime

        return Position.at_time(datetime.fromisoformat(start).timestamp())
    except ValueError:
        raise ConfigurationError(
            f"--from {start!r}: use earliest, latest, epoch seconds or an ISO time like 2026-11-26T10:00:00"
        ) from None


def _describe(value: bytes) -> tuple[str, str, str, str]:
    try:
        env = codec.decode(value)
    except DecodeError as exc:
        return ("?", "[red]undecodable[/]", "-", str(exc)[:60])
    return (env.id, env.type, env.correlationid or "-", orjson.dumps(env.data).decode()[:80])


@cli.command()
def tail(
    topic: Annotated[str, typer.Argument(help="Topic to read.")],
    start: Annotated[str, typer.Option("--from", help="earliest, latest, epoch seconds or ISO time.")] = "earliest",
    limit: Annotated[int, typer.Option(help="Most records to print (0 = no limit with --follow).")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new records.")] = False,
    raw: Annotated[bool, typer.Option(help="Print each record's JSON as is.")] = False,
    broker: BrokerOption = None,
) -> None:
    """Print records of TOPIC without joining a consumer group (does not move any offset)."""

    @run_async
    async def main() -> None:
        target = open_broker(broker)
        try:
            await _known_topic(target, topic)
            reader = _require(target, LogReader, "read topics")
            position = _parse_start(start)
            printed = 0
            printed_ids: set[tuple[int, int]] = set()
            while True:
                want = min(1000, limit - printed) if limit else 1000
                batch = await reader.read(topic, position, limit=want)
                batch = [d for d in batch if (d.partition, d.offset) not in printed_ids]
                for delivery in batch:
                    if raw:
                        out.print(delivery.value.decode(errors="replace"), markup=False)
                        continue
                    eid, etype, corr, data = _describe(delivery.value)
                    out.print(
                        f"{fmt_time(delivery.timestamp)} p{delivery.partition}@{delivery.offset} "
                        f"[cyan]{etype}[/] key={delivery.key} id={eid} corr={corr} {data}"
                    )
                printed += len(batch)
                if batch:
                    # Follow by time, not offsets: a partition not seen yet must not restart
                    # at its beginning. The 1 s overlap absorbs clock skew between writers;
                    # records already printed are skipped by (partition, offset).
                    newest = max(delivery.timestamp for delivery in batch)
                    position = Position.at_time(newest - 1.0)
                    printed_ids.update((d.partition, d.offset) for d in batch)
                if limit and printed >= limit:
                    break
                if not batch:
                    if not follow:
                        break
                    await asyncio.sleep(0.2)  # poll interval of an interactive tail
        finally:
            await target.close()

    main()


@cli.command()
def topics(broker: BrokerOption = None) -> None:
    """List topics with partitions and record counts."""

    @run_async
    async def main() -> None:
        target = open_broker(broker)
        try:
            infos = await _require(target, TopicAdmin, "list topics").topics()
        finally:
            await target.close()
        table = Table("topic", "partitions", "records", "end offset", title="Topics")
        for info in infos:
            table.add_row(info.name, str(info.partitions), str(info.records), str(info.end_offset))
        out.print(table)

    main()


@cli.command()
def lag(
    group: Annotated[str | None, typer.Option(help="Only this consumer group.")] = None,
    per_partition: Annotated[bool, typer.Option("--partitions", help="One row per partition.")] = False,
    broker: BrokerOption = None,
) -> None:
    """Show consumer lag (published minus committed) per group and topic."""

    @run_async
    async def main() -> None:
        target = open_broker(broker)
        try:
            rows = await _require(target, LagReporter, "report lag").lag(group)
        finally:
            await target.close()
        if group and not rows:
            raise UnknownTopic(f"no consumer group {group!r} has committed anything")
        table = Table("group", "topic", *(["partition"] if per_partition else []), "end", "committed", "lag")
        if per_partition:
            for row in rows:
                table.add_row(
                    row.group, row.topic, str(row.partition), str(row.end_offset), str(row.committed), str(row.lag)
                )
        else:
            totals: dict[tuple[str, str], list[int]] = {}
            for row in rows:
                acc = totals.setdefault((row.group, row.topic), [0, 0, 0])
                acc[0] += row.end_offset
                acc[1] += row.committed
                acc[2] += row.lag
            for (g, t), (end, committed, lagged) in sorted(totals.items()):
                table.add_row(g, t, str(end), str(committed), f"[red]{lagged}[/]" if lagged else "0")
        out.print(table)

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
        typer.Option("--broker", "-b", help="Broker URL; default: a fresh SQLite file ./.choreograph-demo.db"),
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
flows_cli.register(cli)
observe_cli.mount(cli)


def main() -> None:
    """Entry point of the ``choreograph`` script."""
    cli()
