"""``choreograph flows`` / ``choreograph flow show`` / ``choreograph observe``: the workflow observer's CLI.

Mount with :func:`register`::

    flows_cli.register(cli)   # adds `flows`, `flow show` and `observe`

Flows are found, in this order: ``--flows MODULE:ATTR``; flows declared on
the App with ``app.declare(flow)``; a ``flows`` attribute of the app's module; a ``flows`` attribute of
the sibling module ``<package>.flows`` (``choreograph.examples.shop.app:app`` ->
``choreograph.examples.shop.flows:flows``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.table import Table

from choreograph.core import codec
from choreograph.core.broker import DeadLetterStore
from choreograph.core.errors import ConfigurationError, DecodeError, NotFound
from choreograph.observe.flows import (
    Flow,
    FlowFigures,
    FlowTracker,
    Instance,
    Observer,
    Quantiles,
    replay,
)
from choreograph.observe.flows.events import OBSERVER_SOURCE
from choreograph.observe.flows.metrics import serve_flow_metrics
from choreograph.observe.flows.settings import stored_state
from choreograph.ops.loader import load_object
from choreograph.ops.session import opened_app
from choreograph.ops.terminal import BrokerOption, cell, emit_json, fmt_time, out, run_async, safe, shown_url
from choreograph.runtime.app import App

AppArgument = Annotated[
    str,
    typer.Argument(metavar="MODULE:APP", help="The App whose flows to show, e.g. choreograph.examples.shop.app:app"),
]
FlowsOption = Annotated[
    str | None,
    typer.Option(
        "--flows",
        metavar="MODULE:ATTR",
        help="Where the Flow list is; default: app.declare()d flows, MODULE.flows, or the sibling module flows.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]

flow = typer.Typer(help="One flow instance: its timeline, state and what it waits for.", no_args_is_help=True)


def _flow_list(value: object, where: str) -> list[Flow]:
    items: list[object] = list(value) if isinstance(value, list | tuple) else [value]
    flows = [item for item in items if isinstance(item, Flow)]
    if not flows or len(flows) != len(items):
        raise ConfigurationError(f"{where} is not a Flow or a list of Flows")
    return flows


def load_flows(app_spec: str, app: App, flows_spec: str | None = None) -> list[Flow]:
    """Find the flows declared for ``app`` (see the module docstring). Raises ConfigurationError."""
    if flows_spec:
        return _flow_list(load_object(flows_spec, default_attribute="flows"), flows_spec)
    declared = [item for item in app.declarations if isinstance(item, Flow)]
    if declared:
        return declared
    module_name = app_spec.partition(":")[0]
    candidates = [module_name]
    package = module_name.rpartition(".")[0]
    candidates.append(f"{package}.flows" if package else "flows")
    for candidate in candidates:
        try:
            module = importlib.import_module(candidate)
        except ModuleNotFoundError as exc:
            if exc.name and candidate.startswith(exc.name):
                continue
            raise
        if hasattr(module, "flows"):
            return _flow_list(module.flows, f"{candidate}:flows")
    raise ConfigurationError(
        f"no flows declared for {app_spec}: define `flows = [Flow(...)]` in {' or '.join(candidates)}, "
        "or pass --flows MODULE:ATTR"
    )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def _quantiles(q: Quantiles) -> str:
    return f"{_ms(q.p50)} / {_ms(q.p95)} / {_ms(q.p99)} ms  (n={q.count})"


def _figures_table(figures: FlowFigures, flow_decl: Flow) -> Table:
    table = Table("", "value", title=f"Flow [bold]{safe(figures.flow)}[/] (deadline {flow_decl.timeout:g}s)")
    rate = "-" if figures.completion_rate is None else f"{figures.completion_rate:.1%}"
    for label, value in (
        ("started", figures.started),
        ("[green]completed[/]", figures.completed),
        ("[yellow]failed[/]", figures.failed),
        ("compensated", figures.compensated),
        ("[red]compensation missing[/]", figures.compensation_missing),
        ("[red]compensation failed[/]", figures.compensation_failed),
        ("in flight", figures.in_flight),
        ("[red]stuck[/] (past deadline)", figures.stuck),
        ("awaiting start event", figures.awaiting_start),
        ("completion rate", rate),
        ("time to finality p50 / p95 / p99", _quantiles(figures.time_to_finality)),
    ):
        table.add_row(label, str(value))
    for step, q in figures.step_latency.items():
        table.add_row(cell(f"  step {step}"), _quantiles(q))
    return table


async def _trackers(app: App, flows: Sequence[Flow], state: bool, correlation_id: str | None) -> dict[str, FlowTracker]:
    now = app.clock.now()
    if not state:
        return await replay(app.broker, flows, now=now, correlation_id=correlation_id)
    store = stored_state(app)
    try:
        trackers = {}
        for declared in flows:
            if correlation_id is None:
                instances = await store.load(declared.name)
            else:  # one indexed lookup, not every stored instance
                instances = await store.fetch(declared.name, [correlation_id])
            trackers[declared.name] = FlowTracker(declared, instances, notify=False)
        return trackers
    finally:
        await store.close()


def flows_command(
    app_spec: AppArgument,
    broker: BrokerOption = None,
    flows_spec: FlowsOption = None,
    state: Annotated[
        bool, typer.Option("--state", help="Read a running observer's stored state instead of replaying the log.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show each declared flow's figures: counts, completion rate, time to finality, step latency.

    By default the figures are computed by replaying the log (read-only: no
    consumer group moves). Times are in milliseconds.
    """

    @run_async
    async def main() -> None:
        async with opened_app(app_spec, broker) as app:
            flows = load_flows(app_spec, app, flows_spec)
            trackers = await _trackers(app, flows, state, None)
        now = app.clock.now()
        figures = {name: tracker.figures(now) for name, tracker in trackers.items()}
        if as_json:
            emit_json({n: f.as_dict() for n, f in figures.items()})
            return
        for declared in flows:
            out.print(_figures_table(figures[declared.name], declared))

    main()


def _instance_doc(tracker: FlowTracker, instance: Instance, now: float) -> dict[str, Any]:
    declared = tracker.flow
    start = instance.timeline()[0].time
    stuck = instance.is_stuck(declared, now)
    return {
        "flow": declared.name,
        "correlation_id": instance.correlation_id,
        "status": instance.status(declared) + (" (stuck)" if stuck else ""),
        "started_at": instance.started_at(declared),
        "due_at": instance.due_at(declared),
        "duration": instance.duration(declared),
        "waiting_for": instance.waiting_for(declared, now),
        "compensations": [
            {"compensation": c.rule.name, "state": c.state, "detail": c.detail}
            for c in instance.compensations(declared, now)
        ],
        "timeline": [
            {
                "time": seen.time,
                "offset_ms": round((seen.time - start) * 1000, 1),
                "type": seen.type,
                "kind": declared.kind_of(seen.type),
                "source": seen.source,
                "id": seen.id,
                "cause": seen.cause,
            }
            for seen in instance.timeline()
        ],
    }


async def _dead_letters(app: App, correlation_id: str) -> list[dict[str, Any]]:
    broker = app.broker
    if not isinstance(broker, DeadLetterStore):
        return []
    found = []
    for entry in await broker.dead_letters(status=None, limit=1_000_000):
        try:
            envelope = codec.decode(entry.value)
        except DecodeError:
            continue
        if (envelope.correlationid or envelope.id) == correlation_id:
            found.append(
                {
                    "id": entry.id,
                    "group": entry.group,
                    "event_type": entry.event_type,
                    "error": f"{entry.error_type}: {entry.error_message}",
                    "status": entry.status,
                    "last_failure": entry.last_failure,
                }
            )
    return found


def _print_instance(doc: dict[str, Any]) -> None:
    names = {row["id"]: row["type"] for row in doc["timeline"]}
    out.print(f"[bold]Flow {safe(doc['flow'])}[/] instance {safe(doc['correlation_id'])}", soft_wrap=True)
    for label, value in (
        ("status", doc["status"]),
        ("started", fmt_time(doc["started_at"])),
        ("deadline", fmt_time(doc["due_at"])),
        ("time to finality", "-" if doc["duration"] is None else f"{doc['duration'] * 1000:.0f} ms"),
        ("waiting for", ", ".join(doc["waiting_for"]) or "nothing"),
    ):
        out.print(f"  [bold]{label:>16}[/]  {safe(value)}", soft_wrap=True)
    table = Table("time", "+ms", "event", "kind", "source", "id", "caused by", title="Timeline")
    for row in doc["timeline"]:
        cause = row["cause"]
        table.add_row(
            fmt_time(row["time"]),
            f"{row['offset_ms']:.0f}",
            cell(row["type"]),
            cell(row["kind"] or ""),
            cell(row["source"]),
            cell(row["id"]),
            cell(names.get(cause, cause or "-") if cause else "-"),
        )
    out.print(table)
    if doc["compensations"]:
        comp = Table("compensation", "state", "detail", title="Compensations")
        for row in doc["compensations"]:
            comp.add_row(cell(row["compensation"]), cell(row["state"]), cell(row["detail"]))
        out.print(comp)


@flow.command("show")
def show(
    app_spec: AppArgument,
    correlation_id: Annotated[str, typer.Argument(metavar="CORRELATION_ID", help="The instance to show.")],
    broker: BrokerOption = None,
    flows_spec: FlowsOption = None,
    state: Annotated[
        bool, typer.Option("--state", help="Read a running observer's stored state instead of replaying the log.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show one instance: its timeline with causation, its state, what it waits for, its dead letters."""

    @run_async
    async def main() -> None:
        async with opened_app(app_spec, broker) as app:
            flows = load_flows(app_spec, app, flows_spec)
            trackers = await _trackers(app, flows, state, correlation_id)
            dead = await _dead_letters(app, correlation_id)
        now = app.clock.now()
        docs = [
            _instance_doc(tracker, tracker.instances[correlation_id], now)
            for tracker in trackers.values()
            if correlation_id in tracker.instances
        ]
        if not docs:
            raise NotFound(f"no instance of {', '.join(f.name for f in flows)} has correlation id {correlation_id!r}")
        if as_json:
            emit_json({"instances": docs, "dead_letters": dead})
            return
        for doc in docs:
            _print_instance(doc)
        if dead:
            table = Table("id", "group", "event", "error", "status", "last failure", title="Dead letters")
            for row in dead:
                table.add_row(
                    cell(row["id"]),
                    cell(row["group"]),
                    cell(row["event_type"] or "?"),
                    cell(row["error"][:60]),
                    cell(row["status"]),
                    fmt_time(row["last_failure"]),
                )
            out.print(table)

    main()


def observe(
    app_spec: AppArgument,
    broker: BrokerOption = None,
    flows_spec: FlowsOption = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(metavar="PORT", help="Serve the flow figures at /metrics (choreograph_flow_instances)."),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(metavar="HOST", help="Interface for --metrics-port (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    source: Annotated[
        str,
        typer.Option(metavar="SERVICE", help="Source of the notices (signed with its key when the App signs)."),
    ] = OBSERVER_SOURCE,
) -> None:
    """Run the workflow observer until SIGINT/SIGTERM (groups ``observer.<flow>``).

    It keeps its state with the broker (the SQLite log file; the key-value store
    of NATS, Redis or Kafka) and publishes choreograph.flow.stuck / completed /
    compensation_missing events. With --metrics-port it serves its figures for
    Prometheus: the stuck-flow and missing-compensation alerts read them.
    """

    @run_async
    async def main() -> None:
        async with opened_app(app_spec, broker) as app:
            flows = load_flows(app_spec, app, flows_spec)
            await app.broker.ping()
            observer = Observer(app, flows, source=source)
            server = (
                None
                if metrics_port is None
                else await serve_flow_metrics(observer.figures, metrics_port, host=metrics_host)
            )
            loop = asyncio.get_running_loop()
            task = asyncio.create_task(observer.run())
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, observer.request_stop)
            names = safe(", ".join(f.name for f in flows))
            out.print(f"[bold]choreograph[/] observing {names} on {shown_url(app.broker_url)}")
            if server is not None:
                out.print(f"flow metrics at http://{safe(metrics_host)}:{server.sockets[0].getsockname()[1]}/metrics")
            try:
                await task
            finally:
                if server is not None:
                    server.close()
                    await server.wait_closed()

    main()


def register(cli: typer.Typer) -> None:
    """Add ``flows``, ``flow show`` and ``observe`` to ``cli``."""
    cli.command("flows")(flows_command)
    cli.add_typer(flow, name="flow")
    cli.command("observe")(observe)
