"""`choreograph run` stops on SIGTERM after finishing and committing in-flight handlers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from choreograph import App
from choreograph.brokers.sqlite import SqliteBroker
from tests.integration.slow_worker import Job

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
async def test_sigterm_finishes_in_flight_handler_and_commits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/log.db"
    log = tmp_path / "worker.log"
    producer = App("p", broker=url)
    await producer.publish(Job(n=1))
    await producer.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "choreograph", "run", "tests.integration.slow_worker:app", "--broker", url],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "SLOW_WORKER_LOG": str(log)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not (log.exists() and "started 1" in log.read_text()):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            assert time.monotonic() < deadline, "handler never started"
            time.sleep(0.01)
        # When SIGTERM arrives while the handler is mid-way
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.stderr:
            proc.stderr.close()
    # Then the handler finished, the process exited cleanly and the offset is committed
    assert code == 0
    assert log.read_text().splitlines() == ["started 1", "finished 1"]
    broker = SqliteBroker.from_url(url)
    try:
        assert sum(row.lag for row in await broker.lag("worker.work")) == 0
    finally:
        await broker.close()
