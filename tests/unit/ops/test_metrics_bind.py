"""The metrics server listens on loopback unless told otherwise (``--metrics-host``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from choreograph import App
from choreograph.observe.metrics import serve_metrics

APP = "choreograph.examples.shop.app:app"


async def test_serve_metrics_binds_loopback_by_default() -> None:
    app = App("bind", broker="memory://")
    server = await serve_metrics(app, 0)
    try:
        addresses = {sock.getsockname()[0] for sock in server._server.sockets}
        assert addresses == {"127.0.0.1"}
    finally:
        await server.close()
        await app.close()


def _listening_address(port: int) -> str:
    """The local address a LISTEN socket on ``port`` is bound to, from /proc/net/tcp (hex, little-endian)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, hex_port = fields[1].split(":")
        if int(hex_port, 16) == port and fields[3] == "0A":
            return ".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0))
    raise AssertionError(f"nothing listens on port {port}")


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listening sockets from /proc/net/tcp")
@pytest.mark.parametrize(("options", "bound"), [([], "127.0.0.1"), (["--metrics-host", "0.0.0.0"], "0.0.0.0")])
def test_run_binds_the_metrics_server_where_told(tmp_path: Path, options: list[str], bound: str) -> None:
    # Given a worker started with a metrics port and, or not, a metrics host
    proc = subprocess.Popen(
        [sys.executable, "-m", "choreograph", "run", APP, "--metrics-port", "0", *options,
         "--broker", f"sqlite:///{tmp_path}/m.db"],
        env={**os.environ, "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline().decode()  # printed once the metrics server listens
        match = re.search(r"metrics on (\S+):(\d+)/metrics", banner)
        assert match, banner + (proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else "")

        # Then the socket it listens on is bound to that interface only
        assert match.group(1) == bound
        assert _listening_address(int(match.group(2))) == bound
    finally:
        # The banner comes once SIGTERM stops the app gracefully: it exits 0
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
