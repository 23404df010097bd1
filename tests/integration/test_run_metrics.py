"""`choreograph run --metrics-port` serves /metrics with counts that match the work done."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from choreograph import App
from choreograph.brokers.sqlite import SqliteBroker
from choreograph.examples.shop.events import LineItem, OrderPlaced

ROOT = Path(__file__).resolve().parents[2]


def handled(group: str, count: int) -> str:
    return f'choreograph_events_handled_total{{group="{group}",outcome="success"}} {count}.0'


@pytest.mark.slow
async def test_run_serves_metrics_matching_the_orders_handled(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shop.db"
    orders = 15
    producer = App("shop", broker=url)
    await producer.publish_many(
        (OrderPlaced(order_id=f"o{i}", customer="c", items=[LineItem(sku="s", quantity=1)], total_cents=100), f"o{i}")
        for i in range(orders)
    )
    await producer.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHOP_DECLINE_RATE": "0", "SHOP_STOCKOUT_RATE": "0",
           "SHOP_FAIL_RATE": "0", "COLUMNS": "200"}  # fmt: skip
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "choreograph",
            "run",
            "choreograph.examples.shop.app:app",
            "--broker",
            url,
            "--metrics-port",
            "0",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        port = int(re.search(r"metrics on \S*:(\d+)/metrics", banner).group(1))  # type: ignore[union-attr]
        broker = SqliteBroker.from_url(url)
        deadline = time.monotonic() + 60
        try:
            while True:
                counts = {t.name: t.records for t in await broker.topics()}
                if counts.get("shop.notification.sent", 0) >= orders:
                    break
                assert time.monotonic() < deadline, counts
                time.sleep(0.05)
        finally:
            await broker.close()
        # The counters are updated once a batch is settled; scrape until they catch up.
        while True:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            if handled("notification.notify-completed", orders) in body or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()
    for group in ("inventory.reserve-stock", "payment.capture-payment", "shipping.ship", "orders.complete-order"):
        assert f'choreograph_events_handled_total{{group="{group}",outcome="success"}} {orders}.0' in body, group
    assert (
        f'choreograph_events_handled_total{{group="notification.notify-completed",outcome="success"}} {orders}.0'
        in body
    )
