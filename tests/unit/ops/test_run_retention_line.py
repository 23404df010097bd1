"""`choreograph run` says at startup which log retention is in effect, on stdout and in its log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def startup_lines(broker: str) -> tuple[str, str]:
    """Run the worker until it has printed its retention line; return (stdout, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "choreograph", "run", "tests.unit.ops.retention_app:app", "--broker", broker]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # blocks until the next line; the worker prints the banner, then this one
            seen.append(line)
            if "log retention:" in line:
                break
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
        return "".join(seen) + stdout, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_the_default_retention_is_named_on_stdout_and_in_the_log(tmp_path: Path) -> None:
    stdout, stderr = startup_lines(f"sqlite:///{tmp_path}/run.db")
    assert "log retention: 7 days (sqlite default;" in stdout
    assert "set ?retention=" in stdout
    assert "log retention: 7 days (sqlite default;" in stderr


@pytest.mark.slow
def test_a_configured_retention_and_keep_forever_are_named(tmp_path: Path) -> None:
    stdout, _ = startup_lines(f"sqlite:///{tmp_path}/run.db?retention=36h")
    assert "log retention: 36 hours (sqlite, configured;" in stdout
    stdout, _ = startup_lines(f"sqlite:///{tmp_path}/run.db?retention_max_age=none")
    assert "log retention: forever (no retention) (sqlite, configured;" in stdout
