"""``choreograph run``: run an App's handlers as workers, configured the twelve-factor way.

Every option can come from the command line, from a ``CHOREOGRAPH_<OPTION>``
environment variable (``--stop-timeout`` is ``CHOREOGRAPH_STOP_TIMEOUT``), or
from the TOML file given by ``--config`` / ``$CHOREOGRAPH_CONFIG`` (keys are the
option names), in that order of precedence; see :mod:`choreograph.ops.config_file`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from choreograph.core.errors import ConfigurationError
from choreograph.core.retention import RetentionReporter
from choreograph.observe.health import serve_probes
from choreograph.observe.logs import configure_logging, install_log_context
from choreograph.observe.metrics import install_metrics
from choreograph.observe.tracing import install_tracing
from choreograph.ops.config_file import ENV_PREFIX, ConfigOption
from choreograph.ops.loader import EXAMPLE
from choreograph.ops.session import opened_app
from choreograph.ops.terminal import BrokerOption, out, run_async, safe, shown_url
from choreograph.outbox.companion import companions_running

DEFAULT_METRICS_HOST = "127.0.0.1"
"""The metrics server listens on loopback unless ``--metrics-host`` widens it."""


def _env(name: str) -> str:
    return f"{ENV_PREFIX}{name.upper()}"


def _setting(name: str, *flags: str, help: str, metavar: str | None = None) -> Any:  # noqa: A002 - typer's name
    """A ``run`` option also read from ``CHOREOGRAPH_<NAME>`` (and, through it, the --config file)."""
    return typer.Option(*flags, metavar=metavar, envvar=_env(name), show_envvar=True, help=help)


def run(
    app_spec: Annotated[
        str | None,
        typer.Argument(
            metavar="MODULE:APP",
            envvar=_env("app"),
            show_envvar=True,
            show_default=False,
            help=f"The App to run, e.g. {EXAMPLE} (config key: app).",
        ),
    ] = None,
    service: Annotated[
        list[str] | None,
        _setting(
            "service",
            "--service",
            "-s",
            metavar="NAME",
            help="Run only this service (repeatable; in the environment, names separated by spaces).",
        ),
    ] = None,
    broker: BrokerOption = None,
    stop_timeout: Annotated[
        float,
        _setting("stop_timeout", metavar="SECONDS", help="Seconds to let in-flight handlers finish on stop."),
    ] = 30.0,
    stats_file: Annotated[
        Path | None,
        _setting("stats_file", metavar="FILE", help="On exit, write per-handler counters to this JSON file."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        _setting(
            "metrics_port", metavar="PORT", help="Serve /metrics, /healthz and /readyz at http://METRICS_HOST:PORT."
        ),
    ] = None,
    metrics_host: Annotated[
        str,
        _setting(
            "metrics_host",
            metavar="HOST",
            help="Interface the metrics server binds; default loopback only (0.0.0.0: all interfaces).",
        ),
    ] = DEFAULT_METRICS_HOST,
    log_json: Annotated[
        bool,
        _setting("log_json", "--log-json", help="Write logs as JSON lines (production)."),
    ] = False,
    log_level: Annotated[
        str,
        _setting("log_level", metavar="LEVEL", help="Log level: DEBUG, INFO, WARNING, ERROR."),
    ] = "INFO",
    fail_fast: Annotated[
        bool,
        _setting(
            "fail_fast",
            "--fail-fast",
            help="Stop every handler and exit non-zero when a consumer crashes (default: log it and restart it).",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Run the App's handlers as workers until SIGINT/SIGTERM.

    Each handler is its own consumer group. Start several processes on the same
    broker to share the work: partitions are spread across them, and a crashed
    process's partitions move to the survivors. On SIGINT/SIGTERM in-flight
    handlers finish and their results are committed before exit.

    Every option can also be set by its CHOREOGRAPH_<OPTION> environment
    variable or in the --config TOML file; the command line wins, then the
    environment, then the file.
    """

    configure_logging(json=log_json, level=log_level.upper())

    @run_async
    async def main() -> None:
        if not app_spec:
            raise ConfigurationError(
                f"name the App to run: MODULE:APP, ${_env('app')}, or app = ... in the --config file"
            )
        async with opened_app(app_spec, broker) as app:  # closed even when it fails before running
            install_log_context(app)
            install_tracing(app)
            install_metrics(app)
            await app.broker.ping()
            server = await serve_probes(app, metrics_port, host=metrics_host) if metrics_port is not None else None
            names = safe(", ".join(service or app.services))
            where = f"; metrics on {safe(metrics_host)}:{server.port}/metrics" if server else ""

            def announce() -> None:  # once SIGTERM stops the app gracefully: a test or supervisor may act on it
                out.print(
                    f"[bold]choreograph[/] running {names} on {shown_url(app.broker_url)}{where} (Ctrl-C to stop)"
                )
                if isinstance(app.broker, RetentionReporter):  # the log's growth is bounded by this, or by nothing
                    retention = app.broker.describe_retention().describe()
                    logging.getLogger("choreograph.run").info(retention)
                    out.print(safe(retention))

            try:
                # relays declared with app.declare(Relay(engine, app)), their metrics beside the App's
                async with companions_running(app, registry=install_metrics(app).registry):
                    await app.run(service or None, stop_timeout=stop_timeout, fail_fast=fail_fast, on_ready=announce)
            finally:
                if server is not None:
                    await server.close()
                if stats_file is not None:
                    stats = {group: dataclasses.asdict(counters) for group, counters in app.stats().items()}
                    stats_file.write_text(json.dumps(stats, indent=2))

    main()


def register(cli: typer.Typer) -> None:
    """Add ``run`` to ``cli``."""
    cli.command("run")(run)
