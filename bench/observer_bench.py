"""Workflow observer throughput vs the SQLite end-to-end rate of the shop, in one run.

1. The shop choreography runs in-process on a fresh SQLite log (all five
   services, inbox dedupe on, no injected failures, 15 % declines, 10 %
   stock-outs) until every order is final: *end-to-end* events/s is every
   event the services handled and emitted over that time.
2. A workflow observer then joins (new groups, from the oldest record) with its
   state in the same SQLite file and catches up on the whole log: *observer*
   events/s is the flow events it read, applied, committed and settled.

The ratio (observer / end-to-end) above 1 means one observer keeps up with
the log it watches. Prints the records as JSON on the last line, as
``python -m bench`` expects of a peer script.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.calibration import peak_rss_mb
from choreograph.core.broker import TopicAdmin
from choreograph.observe.flows import Observer, ObserverConfig, SqliteFlowStore

SHOP_TOPICS = (
    "shop.order.placed",
    "shop.inventory.reserved",
    "shop.inventory.rejected",
    "shop.payment.captured",
    "shop.payment.declined",
    "shop.inventory.released",
    "shop.order.shipped",
    "shop.order.completed",
    "shop.order.cancelled",
    "shop.notification.sent",
)


async def _records(admin: TopicAdmin, topics: set[str]) -> int:
    return sum(info.records for info in await admin.topics() if info.name in topics)


async def _wait(condition: Any, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while not await condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("benchmark did not finish in time")
        await asyncio.sleep(0.01)


async def run(quick: bool) -> list[dict[str, Any]]:
    """Run both phases; return the benchmark records."""
    orders = 1000 if quick else 5000
    os.environ.update(SHOP_DECLINE_RATE="0.15", SHOP_STOCKOUT_RATE="0.1", SHOP_FAIL_RATE="0")
    os.environ.pop("SHOP_BREAK_RELEASE", None)
    from choreograph.examples.shop.events import LineItem, OrderPlaced
    from choreograph.examples.shop.flows import flows

    workdir = Path(tempfile.mkdtemp(prefix="observer-bench-"))
    url = f"sqlite:///{workdir}/shop.db"
    app = importlib.import_module("choreograph.examples.shop.app").app
    app.configure_broker(url)
    broker = app.broker
    assert isinstance(broker, TopicAdmin)

    # Phase 1: the shop end to end.
    await app.start()
    started = time.perf_counter()
    await app.publish_many(
        (OrderPlaced(order_id=f"o{i}", customer="ada", items=[LineItem(sku="s", quantity=1)], total_cents=100), None)
        for i in range(orders)
    )
    finals = {"shop.order.completed", "shop.order.cancelled"}
    notified = {"shop.notification.sent"}
    await _wait(lambda: _records_at_least(broker, finals | notified, 2 * orders), 600)
    e2e_seconds = time.perf_counter() - started
    await app.stop()
    shop_events = await _records(broker, set(SHOP_TOPICS))
    e2e_rate = shop_events / e2e_seconds

    # Phase 2: the observer catches up on the whole log.
    flow_topics = {topic for flow in flows for topic in flow.topics}
    flow_events = await _records(broker, flow_topics)
    store = SqliteFlowStore(workdir / "shop.db")
    observer = Observer(app, flows, store=store, config=ObserverConfig(batch_size=1000, fetch_timeout=0.05))
    started = time.perf_counter()
    await observer.start()

    async def caught_up() -> bool:
        return observer.stats.events >= flow_events

    await _wait(caught_up, 600)
    observer_seconds = time.perf_counter() - started
    figures = observer.figures()["order"]
    await observer.close()
    await app.close()
    if figures.completed + figures.failed != orders:
        raise RuntimeError(f"observer saw {figures.completed + figures.failed} final orders of {orders}")
    observer_rate = flow_events / observer_seconds
    return [
        {
            "backend": "observer",
            "workload": f"flow catch-up, {orders} shop orders ({flow_events} flow events, state in SQLite)",
            "events_per_s": round(observer_rate),
            "p50_ms": None,
            "p99_ms": None,
            "peak_rss_mb": peak_rss_mb(),
            "reference": "sqlite shop end-to-end (same run)",
            "reference_events_per_s": round(e2e_rate),
            "ratio": round(observer_rate / e2e_rate, 2),
            "commits": observer.stats.commits,
            "time_to_finality_p99_ms": None
            if figures.time_to_finality.p99 is None
            else round(figures.time_to_finality.p99 * 1000, 1),
        }
    ]


async def _records_at_least(admin: TopicAdmin, topics: set[str], count: int) -> bool:
    return await _records(admin, topics) >= count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a fifth of the work, for a smoke run")
    args = parser.parse_args()
    records = asyncio.run(run(args.quick))
    for rec in records:
        print(
            f"observer {rec['events_per_s']:,} events/s vs shop end-to-end {rec['reference_events_per_s']:,} "
            f"events/s: ratio {rec['ratio']}",
            file=sys.stderr,
        )
    print(json.dumps(records))


if __name__ == "__main__":
    main()
