"""The Deployment's container command, run as a process: probes answer, SIGTERM stops it within the grace period.

The args are the ones in deploy/kubernetes/deployment.yaml (only the metrics
port becomes 0, a free one), the broker URL comes from the environment as the
Secret provides it; the broker is a SQLite file instead of Kafka.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from choreograph import App
from choreograph.examples.shop.events import LineItem, OrderPlaced
from tests.deploy.test_manifests import one, worker

ROOT = Path(__file__).resolve().parents[2]


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.slow
async def test_the_container_command_serves_probes_and_stops_within_its_grace_period(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shop.db"
    producer = App("shop", broker=url)
    await producer.publish_many(
        (OrderPlaced(order_id=f"o{i}", customer="c", items=[LineItem(sku="s", quantity=1)], total_cents=100), f"o{i}")
        for i in range(200)
    )
    await producer.close()
    args = list(worker()["args"])
    args[args.index("--metrics-port") + 1] = "0"
    env = {**os.environ, "CHOREOGRAPH_BROKER": url, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "choreograph", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        match = re.search(r"metrics on \S*:(\d+)/metrics", banner)
        assert match, banner
        port = int(match.group(1))
        # Then the probes of the Deployment answer: alive, and ready once the consumers run
        assert _get(port, "/healthz")[0] == 200
        deadline = time.monotonic() + 30
        while (reply := _get(port, "/readyz"))[0] != 200:
            assert time.monotonic() < deadline, reply
            time.sleep(0.05)  # a kubelet's polling, shortened
        assert "2 consumer(s) running" in reply[1]  # inventory: reserve_stock and release_stock
        # When the kubelet sends SIGTERM
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    # Then it exits cleanly well within the grace period
    grace = one("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert code == 0
    assert took < grace, (took, grace)
