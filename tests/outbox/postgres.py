"""A throwaway PostgreSQL server for the outbox tests: initdb in a temporary directory, on a free port.

Debian's ``postgresql`` package puts the server under ``/usr/lib/postgresql/<version>/bin``.
PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` user, in a directory that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.brokers.processes import free_port, stop_process, wait_ready

USER = "choreograph"


def find_postgres_bin() -> Path | None:
    """Return the newest Debian PostgreSQL bin directory holding initdb and postgres, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """One postgres process with trust authentication for ``choreograph`` on 127.0.0.1:``port``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="choreograph-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, user=self._user)

    def start(self) -> None:
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    str(self.bindir / "postgres"),
                    "-D", str(self.data),
                    "-p", str(self.port),
                    "-c", "listen_addresses=127.0.0.1",
                    "-c", f"unix_socket_directories={self.root}",
                    "-c", "fsync=off",  # a test server: durability is PostgreSQL's, not under test here
                    "-c", "max_connections=200",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self._user,
            )  # fmt: skip
        wait_ready(self._proc, self._accepts, "postgres", self.log, 30.0)

    def _accepts(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
            pass
        result = subprocess.run(
            [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
        )
        return result.returncode == 0

    def create_database(self, name: str) -> str:
        """Create database ``name``; return its SQLAlchemy async URL (psycopg 3)."""
        self._run(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name)
        return self.url(name)

    def url(self, name: str, *, driver: str = "psycopg_async") -> str:
        return f"postgresql+{driver}://{USER}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        stop_process(self._proc)
        shutil.rmtree(self.root, ignore_errors=True)
