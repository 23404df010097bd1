"""Flow figures over HTTP: what the stuck-flow and missing-compensation alerts read."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from choreograph.observe.flows import FlowFigures
from choreograph.observe.flows.metrics import serve_flow_metrics

ROOT = Path(__file__).resolve().parents[3]


def instances(text: str) -> dict[tuple[str, str], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "choreograph_flow_instances":
                out[(sample.labels["flow"], sample.labels["state"])] = sample.value
    return out


async def get(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    body = (await reader.read()).decode()
    writer.close()
    return body.split("\r\n\r\n", 1)[1]


async def test_the_server_exports_the_figures_at_scrape_time() -> None:
    figures = {"order": FlowFigures(flow="order", started=5, stuck=2, compensation_failed=1)}
    server = await serve_flow_metrics(lambda: figures, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        first = instances(await get(port))
        assert first[("order", "stuck")] == 2 and first[("order", "compensation_failed")] == 1
        figures["order"] = FlowFigures(flow="order", started=5, completed=5)  # read again at the next scrape
        assert instances(await get(port))[("order", "stuck")] == 0
    finally:
        server.close()
        await server.wait_closed()


def test_observe_serves_its_figures_with_metrics_port(tmp_path: Path) -> None:
    env = {**os.environ, "CHOREOGRAPH_BROKER": f"sqlite:///{tmp_path / 'log.db'}", "PYTHONPATH": str(ROOT)}
    app = "choreograph.examples.shop.app:app"
    process = subprocess.Popen(
        [sys.executable, "-m", "choreograph", "observe", app, "--metrics-port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen = []
        deadline = time.monotonic() + 60
        port = None
        while port is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line)
            found = re.search(r"flow metrics at http://127\.0\.0\.1:(\d+)/metrics", line)
            port = int(found.group(1)) if found else None
        assert port is not None, "".join(seen)
        # The observer's trackers exist once it has loaded its state: until then a scrape has no flow yet.
        scraped: dict[tuple[str, str], float] = {}
        while ("order", "stuck") not in scraped and time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                scraped = instances(response.read().decode())
            time.sleep(0.0 if ("order", "stuck") in scraped else 0.05)  # the polling pace, not a synchronization
        assert scraped[("order", "stuck")] == 0
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
