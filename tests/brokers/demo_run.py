"""Run the shop demo (`choreograph demo`) against a test server, as a user would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_demo(url: str, orders: int = 100) -> dict[str, str]:
    """Run the demo on ``url``; assert it succeeded and return its summary rows (label -> count)."""
    result = subprocess.run(
        [sys.executable, "-m", "choreograph", "demo", "--orders", str(orders), "--broker", url, "--timeout", "180"],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"demo failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    rows = dict(re.findall(r"^[│|] (\S.*?)\s+[│|] (\S.*?)\s+[│|]$", result.stdout, re.MULTILINE))
    assert rows, f"no summary table in:\n{result.stdout}"
    return rows


def assert_shop_outcome(rows: dict[str, str], orders: int, *, resends_reach_consumers: bool = True) -> None:
    """Every order started and finished one way or another; no compensation went missing.

    The demo re-sends 10 orders with the same ids: consumers' inboxes skip them, unless the
    broker already dropped them at publish (``resends_reach_consumers=False``: NATS, whose
    stream deduplicates on ``Nats-Msg-Id``).
    """
    assert rows["orders placed (flow started)"] == str(orders)
    finished = (
        int(rows["completed (paid and shipped)"])
        + int(rows["cancelled: out of stock"])
        + int(rows["cancelled: payment declined, stock released (compensated)"])
        + int(rows["dead-lettered (still in flight)"].split()[0])
    )
    assert finished >= orders, rows
    assert rows["compensation missing or failed"] == "0"
    skipped = int(rows["duplicates skipped by the inbox"])
    if resends_reach_consumers:
        assert skipped >= 10, rows
    else:
        assert skipped < 10, rows  # the stream dropped the re-sends: the inbox did not see them all
