"""Observability commands: ``slo``, ``export prometheus-rules``, ``export alertmanager``, ``export grafana``, ``trace``.

:func:`register` adds them to the main CLI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from choreograph.observe.alerting import DEFAULT_RUNBOOK_BASE, flow_owners
from choreograph.observe.alertmanager import alertmanager_yaml
from choreograph.observe.alerts import alert_settings, prometheus_rules
from choreograph.observe.dashboards import dashboards
from choreograph.observe.flows.flow import Flow
from choreograph.observe.slo import (
    BURN_WINDOWS,
    LogSource,
    SLOReport,
    WindowSLI,
    declared_slos,
    format_window,
    measure,
)
from choreograph.observe.trace_view import collect_trace, render_trace, trace_rows
from choreograph.ops.loader import load_app
from choreograph.ops.session import opened_app, opened_broker
from choreograph.ops.terminal import BrokerOption, emit_json, out, run_async, safe

AppArgument = Annotated[
    str, typer.Argument(metavar="MODULE:APP", help="The App, e.g. choreograph.examples.shop.app:app")
]

RunbookOption = Annotated[
    str,
    typer.Option(
        metavar="URL",
        help="Where docs/runbooks is served (each alert's runbook_url is URL/<alert>.md).",
        envvar="CHOREOGRAPH_RUNBOOK_BASE_URL",
    ),
]

export_app = typer.Typer(
    help="Export monitoring configuration: Prometheus rules, Alertmanager routes, Grafana dashboards.",
    no_args_is_help=True,
)


def _pct(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def _burn(value: float | None) -> str:
    if value is None:
        return "-"
    style = "red" if value >= 6 else "yellow" if value >= 1 else "green"
    return f"[{style}]{value:.2f}x[/]"


def _report_table(report: SLOReport) -> Table:
    slo = report.slo
    remaining = report.budget_remaining
    title = (
        f"[bold]{slo.name}[/] ({slo.kind}) target {slo.target:.3%} over {format_window(slo.window)}: "
        f"SLI {_pct(report.compliance.ratio)}, error budget left "
        f"[{'red' if remaining is not None and remaining < 0 else 'green'}]{_pct(remaining, 1)}[/]"
    )
    table = Table("window", "valid", "bad", "SLI", "burn rate", title=title, title_justify="left")
    for row in (*report.windows, report.compliance):
        table.add_row(
            format_window(row.window), str(row.valid), str(row.bad), _pct(row.ratio), _burn(row.burn_rate(slo))
        )
    table.caption = f"based on {report.basis}"
    return table


def _report_doc(report: SLOReport) -> dict[str, Any]:
    """An SLO's figures as ``slo --json`` prints them (ratios as fractions; None where nothing was valid)."""
    slo = report.slo

    def window(row: WindowSLI) -> dict[str, Any]:
        return {
            "window_seconds": row.window,
            "valid": row.valid,
            "bad": row.bad,
            "sli": row.ratio,
            "burn_rate": row.burn_rate(slo),
        }

    return {
        "name": slo.name,
        "kind": slo.kind,
        "target": slo.target,
        "window_seconds": slo.window,
        "sli": report.compliance.ratio,
        "budget_remaining": report.budget_remaining,
        "windows": [window(row) for row in (*report.windows, report.compliance)],
        "basis": report.basis,
    }


def slo(
    app_spec: AppArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document per SLO (for scripts).")] = False,
    broker: BrokerOption = None,
) -> None:
    """Print each declared SLO's SLI, error budget left and burn rate per window, from the broker's data.

    Settled outcomes are not stored, so success rates are records consumed
    (below the committed offset) against dead letters; latency is the append
    time of an event minus its correlation's start; completion pairs start and
    end events by correlation id.
    """

    @run_async
    async def main() -> None:
        async with opened_app(app_spec, broker) as app:
            slos = declared_slos(app.declarations)
            if not slos:
                if not as_json:  # an empty listing: no documents
                    out.print(f"{safe(app_spec)} declares no SLO; add app.declare(SLO.success_rate(...)) and friends")
                return
            source = LogSource(app.broker, horizon=max(max(s.window for s in slos), *BURN_WINDOWS))
            for objective in slos:
                report = await measure(objective, source)
                if as_json:
                    emit_json(_report_doc(report))
                else:
                    out.print(_report_table(report))

    main()


@export_app.command("prometheus-rules")
def export_prometheus_rules(
    app_spec: AppArgument,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")] = None,
    lag_seconds: Annotated[
        float,
        typer.Option(metavar="SECONDS", help="Alert when a group's oldest unhandled record is older than this."),
    ] = 60.0,
    runbook_base_url: RunbookOption = DEFAULT_RUNBOOK_BASE,
) -> None:
    """Write Prometheus recording rules, multi-window multi-burn-rate SLO alerts and operational alerts.

    Every alert links its runbook (runbook_url); alerts about a service carry
    its owner's labels (team, oncall, escalation) for Alertmanager to route,
    and alerts about a declared flow those of the owner of its start event.
    """
    app = load_app(app_spec)
    topology = app.topology()
    settings = alert_settings(
        app_name=app.name,
        app_spec=app_spec,
        owners=topology.owners(),
        runbook_base=runbook_base_url,
        lag_seconds=lag_seconds,
        flow_owners=flow_owners([d for d in app.declarations if isinstance(d, Flow)], topology),
    )
    _write(prometheus_rules(declared_slos(app.declarations), settings=settings), output)


@export_app.command("alertmanager")
def export_alertmanager(
    app_spec: AppArgument,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")] = None,
    slack_api_url_file: Annotated[
        str | None,
        typer.Option(
            metavar="PATH",
            help="File holding the Slack webhook URL (read by Alertmanager); owners whose on-call is a #channel "
            "are then notified there.",
        ),
    ] = None,
) -> None:
    """Write an Alertmanager configuration: a route per owning team, page vs ticket, inhibitions.

    Pages (severity page) and tickets go to separate receivers per team
    (team-<owner>-page, team-<owner>-ticket); alerts with no owner to
    app-<app>-page / -ticket; lag alerts are inhibited while a replay runs.
    Check it with: amtool check-config FILE.
    """
    app = load_app(app_spec)
    _write(alertmanager_yaml(app.name, app.topology().owners(), slack_api_url_file=slack_api_url_file), output)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        out.print(text, markup=False, highlight=False, end="")
        return
    output.write_text(text)
    out.print(f"wrote {safe(output)}")


@export_app.command("grafana")
def export_grafana(
    app_spec: AppArgument,
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for the dashboard JSON files.")] = Path(
        "dashboards"
    ),
) -> None:
    """Write executive, on-call and debug Grafana dashboards (JSON) for the App."""
    app = load_app(app_spec)
    output.mkdir(parents=True, exist_ok=True)
    for stem, model in dashboards(declared_slos(app.declarations), app.name).items():
        path = output / f"{app.name}-{stem}.json"
        path.write_text(json.dumps(model, indent=2) + "\n")
        out.print(f"wrote {safe(path)}")


def trace(
    correlation_id: Annotated[str, typer.Argument(metavar="CORRELATION_ID", help="The correlation to show.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document per event and dead letter (for scripts).")
    ] = False,
    broker: BrokerOption = None,
) -> None:
    """Print a waterfall of every event of one correlation, built from the log (and its dead letters)."""

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            found = await collect_trace(target, correlation_id)
        if as_json:
            for row in trace_rows(found):
                emit_json(row)
            return
        out.print(render_trace(found))

    main()


def register(cli: typer.Typer) -> None:
    """Add ``slo``, ``trace`` and the ``export`` group to the main CLI."""
    cli.command("slo")(slo)
    cli.command("trace")(trace)
    cli.add_typer(export_app, name="export")
