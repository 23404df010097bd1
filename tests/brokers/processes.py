"""Helpers every test-broker fixture shares: free ports, skip-or-fail on a missing binary, process start/stop."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REQUIRE_ENV = "CHOREOGRAPH_REQUIRE_BROKERS"


def skip_or_fail(reason: str) -> None:
    """Skip the test, or fail it when CHOREOGRAPH_REQUIRE_BROKERS=1 (CI)."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1, so a missing broker is a failure)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str, log: Path, timeout: float) -> None:
    """Poll ``ready()`` until it holds; RuntimeError with the log's tail if ``proc`` exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{what} was not ready within {timeout}s")


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM ``proc`` and wait; SIGKILL it if it lingers past 10 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
