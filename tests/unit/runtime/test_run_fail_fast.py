"""`choreograph run` keeps running when a consumer crashes, and exits non-zero on it with --fail-fast."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
COMMAND = [sys.executable, "-m", "choreograph", "run", "tests.unit.runtime.crashing_app:app"]


def start(*extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [*COMMAND, *extra], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_a_crashing_consumer_is_restarted_with_backoff_and_the_worker_stays_up() -> None:
    proc = start()
    try:
        assert proc.stderr is not None
        crashes: list[str] = []
        for line in proc.stderr:  # blocks until the next log line: the worker is alive while it writes them
            if "crashed" in line:
                crashes.append(line)
            if len(crashes) == 2:
                break
        assert proc.poll() is None, "the worker must still be running"
        assert "consumer svc.tick crashed (1 in a row); restarting in 0.5s" in crashes[0]
        assert "consumer svc.tick crashed (2 in a row); restarting in 1.0s" in crashes[1]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.mark.slow
def test_with_fail_fast_the_first_crash_stops_the_worker_with_a_non_zero_exit() -> None:
    proc = start("--fail-fast")
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert "a bug in the backend while subscribing svc.tick" in stderr
