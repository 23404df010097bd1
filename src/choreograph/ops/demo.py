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
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from choreograph.core import codec
from choreograph.core.broker import Broker, DeadLetterStore, LogReader, Position, TopicAdmin
from choreograph.core.errors import ConfigurationError, DecodeError
from choreograph.ops.console import out
from choreograph.ops.loader import load_app

DEMO_DB = ".choreograph-demo.db"
APP_SPEC = "examples.shop.app:app"


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


async def _read_all(reader: LogReader, topic: str) -> list[tuple[float, str, dict[str, object]]]:
    """Return (timestamp, correlation id, data) of every decodable record of ``topic``."""
    rows: list[tuple[float, str, dict[str, object]]] = []
    position = Position.earliest()
    seen: dict[int, int] = {}
    while True:
        batch = await reader.read(topic, position, limit=5000)
        if not batch:
            return rows
        for delivery in batch:
            seen[delivery.partition] = max(seen.get(delivery.partition, 0), delivery.offset + 1)
            try:
                env = codec.decode(delivery.value)
            except DecodeError:
                continue
            rows.append((delivery.timestamp, env.correlationid or env.id, env.data))
        position = Position.at_offsets(seen)


async def _count(admin: TopicAdmin, names: set[str]) -> int:
    return sum(info.records for info in await admin.topics() if info.name in names)


async def run_demo(settings: DemoSettings) -> None:
    """Run the demo and print its summary table."""
    if settings.orders < 1 or settings.workers < 1:
        raise ConfigurationError("--orders and --workers must be >= 1")
    if settings.broker and settings.broker.startswith("memory://"):
        raise ConfigurationError("the demo runs worker processes; use a shared broker such as sqlite:///demo.db")
    try:
        app = load_app(APP_SPEC)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"{exc}\nthe demo runs the shop in examples/shop: run it from the repository root"
        ) from None
    from examples.shop.events import OrderCancelled, OrderCompleted, OrderPlaced

    url = settings.broker or _fresh_sqlite_url()
    app.configure_broker(url)
    broker: Broker = app.broker
    if not isinstance(broker, TopicAdmin) or not isinstance(broker, LogReader):
        raise ConfigurationError(f"the demo needs a broker that lists and reads topics; {url} does not")
    await broker.ping()

    env = dict(
        os.environ,
        SHOP_DECLINE_RATE=str(settings.decline_rate),
        SHOP_STOCKOUT_RATE=str(settings.stockout_rate),
        SHOP_FAIL_RATE=str(settings.fail_rate),
        PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])),
    )
    stats_dir = Path(tempfile.mkdtemp(prefix="choreograph-demo-"))
    out.print(
        f"[bold]Shop demo[/]: {settings.orders} orders, {settings.workers} worker processes, broker {url}\n"
        f"  declines {settings.decline_rate:.0%}, stock-outs {settings.stockout_rate:.0%}, "
        f"transient failures {settings.fail_rate:.0%}, poison orders {settings.poison}, "
        f"re-sent duplicates {settings.duplicates}"
    )
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "choreograph",
                "run",
                APP_SPEC,
                "--broker",
                url,
                "--stats-file",
                str(stats_dir / f"worker-{i}.json"),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(settings.workers)
    ]
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
                crashed = [w for w in workers if w.poll() is not None]
                if crashed:
                    detail = crashed[0].stderr.read().decode(errors="replace") if crashed[0].stderr else ""
                    raise ConfigurationError(f"a worker exited early (code {crashed[0].returncode}):\n{detail[-2000:]}")
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
    await _summary(broker, settings, elapsed, stats_dir)
    await app.close()


async def _summary(broker: Broker, settings: DemoSettings, elapsed: float, stats_dir: Path) -> None:
    from examples.shop.events import InventoryReleased, OrderCancelled, OrderCompleted, OrderPlaced

    assert isinstance(broker, LogReader)
    placed = {corr: ts for ts, corr, _ in await _read_all(broker, OrderPlaced.topic())}
    completed = {corr: ts for ts, corr, _ in await _read_all(broker, OrderCompleted.topic())}
    cancelled = {corr: (ts, data) for ts, corr, data in await _read_all(broker, OrderCancelled.topic())}
    released = {corr for _, corr, _ in await _read_all(broker, InventoryReleased.topic())}
    declined = [corr for corr, (_, data) in cancelled.items() if data.get("reason") == "payment declined"]
    compensated = sum(1 for corr in declined if corr in released)
    dead = await broker.dead_letters(limit=100_000) if isinstance(broker, DeadLetterStore) else []
    totals: dict[str, int] = {}
    for path in stats_dir.glob("worker-*.json"):
        for counters in json.loads(path.read_text()).values():
            for name, value in counters.items():
                totals[name] = totals.get(name, 0) + value
    finals = {**{c: ts for c, (ts, _) in cancelled.items()}, **completed}
    latencies = sorted((finals[c] - placed[c]) * 1000 for c in finals if c in placed)

    table = Table("", "count", title=f"Shop demo: {settings.orders} orders in {elapsed:.1f}s")
    table.add_row("orders placed", str(len(placed)))
    table.add_row("[green]completed[/] (paid and shipped)", str(len(completed)))
    table.add_row("[yellow]cancelled[/]: out of stock", str(len(cancelled) - len(declined)))
    table.add_row(
        "[yellow]cancelled[/]: payment declined, stock released (compensated)", f"{compensated}/{len(declined)}"
    )
    table.add_row("[red]dead-lettered[/]", str(len({d.event_id for d in dead})))
    table.add_row("retries (transient failures)", str(totals.get("retries", 0)))
    table.add_row("duplicates skipped by the inbox", str(totals.get("duplicates", 0)))
    table.add_row("events handled", str(totals.get("handled", 0)))
    if latencies:
        q = statistics.quantiles(latencies, n=1000, method="inclusive") if len(latencies) > 1 else latencies * 999
        table.add_row("OrderPlaced -> final event p50 / p95 / p99", f"{q[499]:.0f} / {q[949]:.0f} / {q[989]:.0f} ms")
    out.print(table)
    if dead:
        out.print(
            f"Inspect dead letters with: choreograph dlq list --broker {settings.broker or 'sqlite:///./' + DEMO_DB}"
        )
