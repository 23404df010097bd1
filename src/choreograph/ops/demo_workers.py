"""Worker processes for the demo's drills: ``choreograph run MODULE:APP`` children with logs in files."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from choreograph.core.errors import ChoreographError


class WorkerCrashed(ChoreographError):
    """A worker process exited while the drill needed it."""


class Workers:
    """Start ``count`` worker processes on enter; stop them (SIGTERM, then kill after 30 s) on exit.

    The broker URL travels in ``env`` (``CHOREOGRAPH_BROKER``), never on a
    command line. Logs go to files in ``workdir``, not pipes: a full pipe would
    block a worker.
    """

    def __init__(self, app_spec: str, count: int, env: dict[str, str], workdir: Path) -> None:
        self.app_spec, self.count, self.env, self.workdir = app_spec, count, env, workdir
        self.logs = [workdir / f"worker-{i}.log" for i in range(count)]
        self._processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Workers:
        for i, log in enumerate(self.logs):
            with log.open("wb") as handle:
                self._processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "choreograph", "run", self.app_spec, "--log-level", "WARNING",
                         "--stats-file", str(self.workdir / f"worker-{i}.json")],
                        env=self.env,
                        stdout=subprocess.DEVNULL,
                        stderr=handle,
                    )
                )  # fmt: skip
        return self

    def check(self) -> None:
        """Raise WorkerCrashed, with the end of its log, if a worker has exited."""
        for i, process in enumerate(self._processes):
            if process.poll() is not None:
                detail = self.logs[i].read_text(errors="replace")[-2000:]
                raise WorkerCrashed(f"worker {i} exited early (code {process.returncode}):\n{detail}")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
