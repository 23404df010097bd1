"""``choreograph demo``: the shop choreography end to end, in real worker processes.

The coordinator publishes the orders; separate OS processes run the five
services against the same log (competing consumers per handler group); the
summary is computed from the log itself and the workers' counters.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from choreograph.brokers import broker_class
from choreograph.core.broker import Broker, DeadLetterStore, LogReader, TopicAdmin
from choreograph.core.errors import ConfigurationError
from choreograph.core.redaction import redact_url
from choreograph.observe.flows import summarize
from choreograph.ops.session import opened_app
from choreograph.ops.terminal import out, shown_url
from choreograph.runtime.app import App

DEMO_DB = ".choreograph-demo.db"
APP_SPEC = "choreograph.examples.shop.app:app"


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """What the demo runs and how it misbehaves."""

    orders: int = 1000
    workers: int = 2
    decline_rate: float = 0.15
    stockout_rate: float = 0.1
    fail_rate: float = 0.05
    poison: int = 1
    duplicates: int = 10
    broker: str | None = None
    timeout: float = 120.0


def _fresh_sqlite_url() -> str:
    for suffix in ("", "-wal", "-shm"):
        Path(DEMO_DB + suffix).unlink(missing_ok=True)
    return f"sqlite:///./{DEMO_DB}"


async def _count(admin: TopicAdmin, names: set[str]) -> int:
    return sum(info.records for info in await admin.topics() if info.name in names)


async def run_demo(settings: DemoSettings) -> None:
    """Run the demo and print its summary table."""
    if settings.orders < 1 or settings.workers < 1:
        raise ConfigurationError("--orders and --workers must be >= 1")
    if settings.broker and not broker_class(settings.broker).capabilities.cross_process:
        raise ConfigurationError(
            f"the demo runs worker processes, and {redact_url(settings.broker)} is not shared between processes; "
            "use a shared broker such as sqlite:///demo.db"
        )
    url = settings.broker or _fresh_sqlite_url()
    async with opened_app(APP_SPEC, url) as app:  # the shop ships inside the package: works from any directory
        await _run(app, url, settings)


async def _run(app: App, url: str, settings: DemoSettings) -> None:
    """Start the workers, publish the orders, wait until each one finished, then print the summary."""
    from choreograph.examples.shop.events import OrderCancelled, OrderCompleted, OrderPlaced

    broker: Broker = app.broker
    if not isinstance(broker, TopicAdmin) or not isinstance(broker, LogReader):
        raise ConfigurationError(f"the demo needs a broker that lists and reads topics; {redact_url(url)} does not")
    await broker.ping()

    # The URL may hold a password: workers get it from the environment, never on their
    # command line (which every user of the machine can read with ps).
    env = dict(
        os.environ,
        CHOREOGRAPH_BROKER=url,
        SHOP_DECLINE_RATE=str(settings.decline_rate),
        SHOP_STOCKOUT_RATE=str(settings.stockout_rate),
        SHOP_FAIL_RATE=str(settings.fail_rate),
        PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])),
    )
    stats_dir = Path(tempfile.mkdtemp(prefix="choreograph-demo-"))
    out.print(
        f"[bold]Shop demo[/]: {settings.orders} orders, {settings.workers} worker processes, "
        f"broker {shown_url(url)}\n"
        f"  declines {settings.decline_rate:.0%}, stock-outs {settings.stockout_rate:.0%}, "
        f"transient failures {settings.fail_rate:.0%}, poison orders {settings.poison}, "
        f"re-sent duplicates {settings.duplicates}"
    )
    # Worker logs go to files, not pipes: a full pipe would block a worker.
    logs = [stats_dir / f"worker-{i}.log" for i in range(settings.workers)]
    handles = [log.open("wb") for log in logs]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "choreograph", "run", APP_SPEC,
             "--stats-file", str(stats_dir / f"worker-{i}.json"), "--log-level", "WARNING"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=handle,
        )
        for i, handle in enumerate(handles)
    ]  # fmt: skip
    started = time.monotonic()
    try:
        orders = []
        for n in range(settings.orders):
            customer = "poison" if n < settings.poison else f"customer-{n % 37}"
            order_id = f"order-{n:05d}"
            items = [{"sku": f"sku-{(n * 7) % 23}", "quantity": 1 + n % 3}]
            orders.append(
                (OrderPlaced(order_id=order_id, customer=customer, items=items, total_cents=1000 + n), order_id)
            )
        sent = await app.publish_many(orders)
        # An at-least-once producer retrying after a lost reply: the same envelopes again.
        for envelope in sent[settings.poison : settings.poison + settings.duplicates]:
            await app.publish_envelope(OrderPlaced.topic(), envelope)
        final_topics = {OrderCompleted.topic(), OrderCancelled.topic()}
        store = broker if isinstance(broker, DeadLetterStore) else None
        with Progress(
            TextColumn("orders finished"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=out
        ) as progress:
            task = progress.add_task("orders", total=settings.orders)
            while True:
                dead = len(await store.dead_letters(limit=100_000)) if store else 0
                finished = await _count(broker, final_topics) + dead
                progress.update(task, completed=min(finished, settings.orders))
                if finished >= settings.orders:
                    break
                crashed = [i for i, w in enumerate(workers) if w.poll() is not None]
                if crashed:
                    detail = logs[crashed[0]].read_text(errors="replace")[-2000:]
                    code = workers[crashed[0]].returncode
                    raise ConfigurationError(f"worker {crashed[0]} exited early (code {code}):\n{detail}")
                if time.monotonic() - started > settings.timeout:
                    raise ConfigurationError(
                        f"only {finished}/{settings.orders} orders finished within {settings.timeout:.0f}s"
                    )
                await asyncio.sleep(0.1)  # progress display refresh, not synchronization
        elapsed = time.monotonic() - started
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        for handle in handles:
            handle.close()
    await _summary(app, broker, settings, elapsed, stats_dir)


async def _summary(app: App, broker: Broker, settings: DemoSettings, elapsed: float, stats_dir: Path) -> None:
    """Print the observer's figures for the order flow plus the workers' counters."""
    from choreograph.examples.shop.flows import order_flow

    figures = (await summarize(app, [order_flow], broker))[order_flow.name]
    dead = await broker.dead_letters(limit=100_000) if isinstance(broker, DeadLetterStore) else []
    totals: dict[str, int] = {}
    for path in stats_dir.glob("worker-*.json"):
        for counters in json.loads(path.read_text()).values():
            for name, value in counters.items():
                totals[name] = totals.get(name, 0) + value
    compensation_problems = figures.compensation_missing + figures.compensation_failed
    # Cancelled flows are the out-of-stock ones plus the declined ones whose stock was released; a flow whose
    # compensation is missing or failed was never cancelled, so it is not subtracted (that went negative).
    out_of_stock = max(0, figures.failed - figures.compensated)

    table = Table("", "count", title=f"Shop demo: {settings.orders} orders in {elapsed:.1f}s")
    table.add_row("orders placed (flow started)", str(figures.started))
    table.add_row("[green]completed[/] (paid and shipped)", str(figures.completed))
    table.add_row("[yellow]cancelled[/]: out of stock", str(out_of_stock))
    table.add_row("[yellow]cancelled[/]: payment declined, stock released (compensated)", str(figures.compensated))
    table.add_row("[red]compensation missing or failed[/]", str(compensation_problems))
    table.add_row("[red]dead-lettered[/] (still in flight)", f"{len({d.event_id for d in dead})} ({figures.in_flight})")
    table.add_row("stuck past the flow deadline", str(figures.stuck))
    table.add_row("retries (transient failures)", str(totals.get("retries", 0)))
    table.add_row("duplicates skipped by the inbox", str(totals.get("duplicates", 0)))
    table.add_row("events handled", str(totals.get("handled", 0)))
    if figures.completion_rate is not None:
        table.add_row("completion rate (completed / finished)", f"{figures.completion_rate:.1%}")
    finality = figures.time_to_finality
    if finality.count:
        table.add_row(
            "OrderPlaced -> final event p50 / p95 / p99",
            " / ".join(f"{(q or 0) * 1000:.0f}" for q in (finality.p50, finality.p95, finality.p99)) + " ms",
        )
    out.print(table)
    if dead:
        url = shown_url(settings.broker or f"sqlite:///./{DEMO_DB}")
        out.print(f"Inspect dead letters with: choreograph dlq list --broker {url}", soft_wrap=True)
        out.print(
            f"Follow one order with:     choreograph flow show {APP_SPEC} CORRELATION_ID --broker {url}", soft_wrap=True
        )
