"""``choreograph demo --incident stuck-orders``: an incident drill on the shop (seed scenario 3).

The drill runs the shop in worker processes, then breaks one handler mid-run
the way production breaks: a feature flag (``new-carrier-api`` in the file
``SHOP_FLAGS_FILE`` names) makes the shipping handler fail every order, so
paid orders end in the dead letter and stay unfinished past their deadline.
It then prints the alerts that would fire (from the generated rules'
definitions, with the owner labels Alertmanager routes on) and works the
runbook, printing every command before running it exactly as printed:

1. ``choreograph flows ...`` shows the stuck orders;
2. ``choreograph dlq groups`` finds the failure group;
3. the fix: turn the flag off (``rm`` the flags file);
4. ``choreograph dlq retry --group FP --rate N`` hands the group back to shipping;
5. ``choreograph flows ...`` again: zero stuck.

Commands read the broker from ``CHOREOGRAPH_BROKER`` (exported by the drill
and printed with credentials hidden), so no password reaches a command line.
Orders count as stuck after 5 s (``incident_flows``) instead of the shop's 30 s.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from choreograph.core.broker import Broker, DeadLetterStore, TopicAdmin
from choreograph.core.errors import ChoreographError, ConfigurationError
from choreograph.core.fingerprint import FailureGroup, failure_groups
from choreograph.observe.alert_operations import OPERATIONAL_ALERTS
from choreograph.observe.alerting import DEFAULT_RUNBOOK_BASE, PAGE, AlertSettings, flow_owners
from choreograph.observe.flows import FlowFigures, summarize
from choreograph.ops.demo import APP_SPEC, DEMO_DB, DemoSettings
from choreograph.ops.demo_workers import Workers
from choreograph.ops.session import opened_app
from choreograph.ops.terminal import out, safe, shown_url
from choreograph.runtime.app import App

INCIDENTS: Final = ("stuck-orders",)
FLOWS_SPEC: Final = "choreograph.examples.shop.flows:incident_flows"
BROKEN_GROUP: Final = "shipping.ship"
RETRY_RATE: Final = 500
_POLL: Final = 0.2


class DrillFailed(ChoreographError):
    """The drill did not reach the state it waits for in time."""


def _choreograph(*args: str) -> list[str]:
    return ["choreograph", *args]


async def _figures(app: App) -> FlowFigures:
    from choreograph.examples.shop.flows import incident_flows

    return (await summarize(app, incident_flows, app.broker))["order"]


async def _open_groups(broker: Broker) -> list[FailureGroup]:
    if not isinstance(broker, DeadLetterStore):
        raise ConfigurationError("the drill needs a broker that keeps dead letters")
    return failure_groups(await broker.dead_letters(limit=100_000))


async def _wait(what: str, check: Callable[[], Awaitable[bool]], workers: Workers, deadline: float) -> None:
    """Poll ``check`` until true while the workers run (a display loop: the drill's pace, not a test's sync)."""
    while not await check():
        workers.check()
        if time.monotonic() > deadline:
            raise DrillFailed(f"the drill gave up waiting for {what}")
        await asyncio.sleep(_POLL)


def _fresh_url() -> str:
    for suffix in ("", "-wal", "-shm"):
        Path(DEMO_DB + suffix).unlink(missing_ok=True)
    return f"sqlite:///./{DEMO_DB}"


class Drill:
    """One run of the stuck-orders drill against ``url``."""

    def __init__(self, app: App, url: str, settings: DemoSettings, workdir: Path) -> None:
        self.app, self.url, self.settings, self.workdir = app, url, settings, workdir
        self.flags = workdir / "shop-flags"
        self.deadline = time.monotonic() + settings.timeout
        self.placed = 0

    def env(self) -> dict[str, str]:
        return dict(
            os.environ,
            CHOREOGRAPH_BROKER=self.url,
            SHOP_FLAGS_FILE=str(self.flags),
            SHOP_DECLINE_RATE=str(self.settings.decline_rate),
            SHOP_STOCKOUT_RATE=str(self.settings.stockout_rate),
            SHOP_FAIL_RATE=str(self.settings.fail_rate),
            PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])),
        )

    async def place(self, count: int) -> None:
        from choreograph.examples.shop.events import OrderPlaced

        orders = []
        for n in range(self.placed, self.placed + count):
            order_id = f"order-{n:05d}"
            items = [{"sku": f"sku-{(n * 7) % 23}", "quantity": 1 + n % 3}]
            event = OrderPlaced(order_id=order_id, customer=f"customer-{n % 37}", items=items, total_cents=1000 + n)
            orders.append((event, order_id))
        await self.app.publish_many(orders)
        self.placed += count

    async def settled(self) -> bool:
        """Every order placed so far is final or has a dead letter."""
        figures = await _figures(self.app)
        dead = sum(g.count for g in await _open_groups(self.app.broker))
        return figures.completed + figures.failed + dead >= self.placed

    def run(self, command: list[str], note: str = "") -> str:
        """Print ``command`` as a shell line, run it, print its output; raise DrillFailed if it fails."""
        shown = shlex.join(command)
        out.print(f"[bold]$ {safe(shown)}[/]" + (f"   [dim]# {safe(note)}[/]" if note else ""), soft_wrap=True)
        argv = [sys.executable, "-m", "choreograph", *command[1:]] if command[0] == "choreograph" else command
        env = {**self.env(), "COLUMNS": os.environ.get("COLUMNS", "160")}
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
        text = result.stdout + result.stderr
        out.print(text.rstrip(), markup=False, highlight=False)
        if result.returncode != 0:
            raise DrillFailed(f"{shown} exited with {result.returncode}")
        return text


def _print_alerts(app: App, figures: FlowFigures, groups: list[FailureGroup]) -> None:
    """Print the alerts whose conditions hold now, with the labels the generated rules give them."""
    from choreograph.examples.shop.flows import incident_flows

    topology = app.topology()
    owners = flow_owners(incident_flows, topology)
    settings = AlertSettings(app.name, APP_SPEC, topology.owners(), DEFAULT_RUNBOOK_BASE, flow_owners=owners)
    flow_labels = {"flow": "order", **(owners["order"].labels() if "order" in owners else {})}
    by_name = {alert.name: alert for alert in OPERATIONAL_ALERTS}
    firing: list[tuple[str, dict[str, str]]] = []
    if figures.stuck:
        firing.append(("ChoreographFlowsStuck", flow_labels))
    if figures.compensation_missing or figures.compensation_failed:
        firing.append(("ChoreographCompensationMissing", flow_labels))
    for group in groups:
        owner = settings.owners.get(group.group.split(".", 1)[0])
        labels = {"group": group.group, "reason": group.reason}
        firing.append(("ChoreographDeadLettersOpen", {**labels, **(owner.labels() if owner else {})}))
    out.print("\n[bold]Alerts that would fire[/] (conditions of `choreograph export prometheus-rules` met now;")
    out.print("Prometheus waits each rule's `for` before it fires):")
    for name, labels in firing:
        alert = by_name[name]
        style = "red" if alert.severity == PAGE else "yellow"
        shown = ", ".join(f"{k}={safe(v)}" for k, v in labels.items())
        route = f"team {safe(labels['team'])}" if "team" in labels else f"app {safe(app.name)} (no owning team)"
        out.print(f"  [{style}]{alert.severity.upper():6}[/] {name}  {shown}  -> {route}", soft_wrap=True)
        out.print(f"         runbook: {safe(settings.runbook_url(name))}", soft_wrap=True)


async def _drill(app: App, url: str, settings: DemoSettings, workdir: Path) -> None:
    if not isinstance(app.broker, TopicAdmin):
        raise ConfigurationError("the drill needs a broker that lists topics")
    await app.broker.ping()
    drill = Drill(app, url, settings, workdir)
    first = max(1, settings.orders // 2)
    out.print(f"[bold]Incident drill: stuck orders[/] on {shown_url(url)} ({settings.orders} orders)")
    out.print(f"export CHOREOGRAPH_BROKER={shown_url(url)}   # every command below reads it", soft_wrap=True)
    with Workers(APP_SPEC, settings.workers, drill.env(), workdir) as workers:
        await drill.place(first)
        await _wait("the first orders to finish", drill.settled, workers, drill.deadline)
        figures = await _figures(app)
        out.print(f"1. {first} orders flow normally: {figures.completed} completed, {figures.failed} cancelled.")

        drill.flags.write_text("new-carrier-api\n")
        out.print(
            f"2. A deploy turns feature flag new-carrier-api on ({safe(drill.flags)}): "
            "the shipping handler now fails every order.",
            soft_wrap=True,
        )
        await drill.place(settings.orders - first)
        await _wait("the broken orders to dead-letter", drill.settled, workers, drill.deadline)

        async def stuck() -> bool:
            figures = await _figures(app)
            broken = sum(g.count for g in await _open_groups(app.broker) if g.group == BROKEN_GROUP)
            return broken > 0 and figures.stuck >= broken

        await _wait("the broken orders to pass their deadline", stuck, workers, drill.deadline)
        figures, groups = await _figures(app), await _open_groups(app.broker)
        out.print(
            f"3. {settings.orders - first} more orders: {sum(g.count for g in groups)} dead-lettered, "
            f"{figures.stuck} orders stuck past their 5 s deadline."
        )
        _print_alerts(app, figures, groups)

        out.print("\n[bold]Runbook[/] (docs/runbooks/stuck-flows.md), run as written:")
        flows_command = _choreograph("flows", APP_SPEC, "--flows", FLOWS_SPEC)
        drill.run(flows_command, "how many are stuck, waiting for what")
        drill.run(_choreograph("dlq", "groups"), "which failure group holds them")
        target = next(g for g in await _open_groups(app.broker) if g.group == BROKEN_GROUP)
        drill.run(["rm", str(drill.flags)], "the fix: turn feature flag new-carrier-api off")
        drill.run(
            _choreograph("dlq", "retry", "--group", target.fingerprint, "--rate", str(RETRY_RATE)),
            "hand the group back to shipping",
        )

        async def recovered() -> bool:
            figures = await _figures(app)
            return figures.stuck == 0 and figures.in_flight == 0

        await _wait("the retried orders to finish", recovered, workers, drill.deadline)
        drill.run(flows_command, "verify: 0 stuck, 0 in flight")
    figures = await _figures(app)
    out.print(
        f"[green]Recovered[/]: {figures.completed} completed, {figures.failed} cancelled, "
        f"{figures.stuck} stuck, {figures.in_flight} in flight."
    )


async def run_incident(settings: DemoSettings, incident: str) -> None:
    """Run the named incident drill (``stuck-orders``) and print what an on-call engineer would do."""
    if incident not in INCIDENTS:
        raise ConfigurationError(f"unknown incident {incident!r}; choose one of: {', '.join(INCIDENTS)}")
    if settings.orders < 2 or settings.workers < 1:
        raise ConfigurationError("the drill needs --orders >= 2 and --workers >= 1")
    url = settings.broker or _fresh_url()
    workdir = Path(tempfile.mkdtemp(prefix="choreograph-drill-"))
    try:
        async with opened_app(APP_SPEC, url) as app:
            await _drill(app, url, settings, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
