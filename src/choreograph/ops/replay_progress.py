"""How ``choreograph replay`` shows and exports its progress: a bar on a terminal, lines elsewhere, metrics.

On a terminal (and without ``--json``) a Rich progress bar shows records done
of all, the rate and the time left; otherwise one plain line at most every
second (``NAME: DONE/TOTAL records, RATE/s, eta N s``), nothing with ``--json``.
The replay metrics (:class:`~choreograph.observe.metrics.ReplayGauges`) live in
a registry of the command's own, pushed to a Prometheus Pushgateway every
:data:`PUSH_INTERVAL` seconds and once at the end (``running`` 0) when
``--pushgateway`` is given.
"""

from __future__ import annotations

import asyncio
import sys
import time
from types import TracebackType
from typing import Final

from prometheus_client import CollectorRegistry, push_to_gateway
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from choreograph.core.redaction import redact_url
from choreograph.observe.metrics import ReplayGauges
from choreograph.ops.terminal import cell, err, out, plain, safe, scrub

PUSH_INTERVAL: Final = 2.0
"""Seconds between two pushes of the replay metrics to a Pushgateway."""


class ReplayProgress:
    """Progress of one replay named ``name`` (feeding ``group``, ``""`` for a copy): display and metrics."""

    def __init__(self, name: str, *, group: str = "", as_json: bool = False, pushgateway: str | None = None) -> None:
        self.name = name
        self.group = group
        self.as_json = as_json
        self.pushgateway = pushgateway
        self.registry = CollectorRegistry()
        self.gauges = ReplayGauges(self.registry)
        self._started = time.monotonic()
        self._pushed = 0.0
        self._printed = 0.0
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    async def __aenter__(self) -> ReplayProgress:
        self._started = time.monotonic()
        if sys.stdout.isatty() and not self.as_json:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=out,
            )
            self._bar.start()
            self._task = self._bar.add_task(cell(self.name).plain, total=None, rate="")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        self.gauges.stopped(self.name)
        await asyncio.to_thread(self._push, True)

    def tick(self, done: int, total: int) -> None:
        """Report ``done`` of ``total`` records; draws, prints or pushes as due. Never blocks the loop."""
        now = time.monotonic()
        elapsed = max(1e-6, now - self._started)
        speed = done / elapsed
        self.gauges.progress(self.name, done, total, elapsed, group=self.group)
        if self.pushgateway is not None and now - self._pushed >= PUSH_INTERVAL:
            self._pushed = now
            asyncio.get_running_loop().run_in_executor(None, self._push, False)
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, total=total, rate=f"{speed:.0f}/s")
        elif not self.as_json and (now - self._printed >= 1.0 or done >= total):
            self._printed = now
            eta = f"{(total - done) / speed:.0f} s" if speed > 0 else "-"
            plain(f"{self.name}: {done}/{total} records, {speed:.0f}/s, eta {eta}")

    def _push(self, final: bool) -> None:
        if self.pushgateway is None:
            return
        try:
            push_to_gateway(self.pushgateway, job="choreograph_replay", registry=self.registry, timeout=2.0)
        except OSError as exc:
            if final:  # on stderr: with --json, stdout holds only the report
                message = f"could not push the replay metrics to {redact_url(self.pushgateway)}: {exc}"
                err.print(f"[yellow]warning:[/] {safe(scrub(message))}", soft_wrap=True)
