"""Chaos runs: kill -9 loops and broker restarts against real worker processes, judged by an external ledger.

A run publishes ``events`` records over ``keys`` partition keys (each key's records
numbered 0, 1, 2, ...), starts ``workers`` worker processes (:mod:`tests.chaos.worker`),
and while they work kills one with SIGKILL ``kills`` times (starting a replacement each
time) and restarts the broker ``restarts`` times where it can. When every input has an
output it reports:

- ``lost``: inputs with no output in the log (must be 0 everywhere);
- ``duplicate_outputs``: output records beyond one per input (0 where settles are atomic);
- ``duplicate_side_effects``: ledger lines beyond one per input, and per kill;
- ``order_violations``: outputs of a key that follow a later output of the same key in the log;
- ``recovery_seconds``: per kill, the time from the kill until every key the victim was
  handling made progress again (the slowest key decides).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from choreograph import App, decode
from choreograph.brokers import open_broker
from choreograph.observe.paging import read_pages
from tests.chaos.worker import Step

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ChaosReport:
    """What one chaos run measured."""

    backend: str
    events: int
    kills: int
    restarts: int
    lost: int = 0
    duplicate_outputs: int = 0
    duplicate_side_effects: int = 0
    order_violations: int = 0
    keys_out_of_order: int = 0
    recovery_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def side_effects_per_kill(self) -> float:
        """Duplicate side effects divided by kills (a kill re-runs at most what was in flight)."""
        return self.duplicate_side_effects / self.kills if self.kills else float(self.duplicate_side_effects)

    def as_json(self) -> str:
        """One JSON line with every figure."""
        return json.dumps({**asdict(self), "side_effects_per_kill": self.side_effects_per_kill})


@dataclass
class _Ledger:
    path: Path
    lines: list[tuple[str, str, int, int, float]] = field(default_factory=list)
    _offset: int = 0

    def refresh(self) -> int:
        """Read lines appended since the last call; return the total count."""
        if not self.path.exists():
            return 0
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for raw in complete.decode().splitlines():
            parts = raw.split()
            if len(parts) == 5:  # a line cut by a kill -9 has fewer fields: the side effect did not finish
                self.lines.append((parts[0], parts[1], int(parts[2]), int(parts[3]), float(parts[4])))
        return len(self.lines)


def _start_worker(url: str, ledger: Path) -> subprocess.Popen[bytes]:
    # $CHOREOGRAPH_CHAOS_LOGS (a directory): each worker logs there (see worker.py), for post-mortems
    logs = os.environ.get("CHOREOGRAPH_CHAOS_LOGS")
    stderr = open(Path(logs) / f"worker-{time.time_ns()}.log", "wb") if logs else None  # noqa: SIM115
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.worker", str(ledger)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "CHOREOGRAPH_BROKER": url},
            stdout=subprocess.DEVNULL,
            stderr=stderr or subprocess.DEVNULL,
        )
    finally:
        if stderr is not None:
            stderr.close()  # the worker has its own copy


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"chaos: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)


async def _publish(url: str, events: int, keys: int) -> None:
    app = App("chaos-producer", broker=url)
    try:
        batch = 500
        for start in range(0, events, batch):
            chunk = range(start, min(events, start + batch))
            await app.publish_many((Step(key=f"k{i % keys}", seq=i // keys), f"k{i % keys}") for i in chunk)
    finally:
        await app.close()


async def _outputs(url: str) -> list[tuple[int, int, str, str, int]]:
    """Every output in the log: (partition, offset, event id, key, seq), read page by page to the end."""
    broker = open_broker(url)
    try:
        found = []
        async for page in read_pages(broker, "t.chaos.out"):  # type: ignore[arg-type]
            for delivery in page:
                envelope = decode(delivery.value)
                data = envelope.data or {}
                found.append((delivery.partition, delivery.offset, envelope.id, str(data["key"]), int(data["seq"])))
        return found
    finally:
        await broker.close()


def run_chaos(
    backend: str,
    url: str,
    workdir: Path,
    *,
    events: int,
    keys: int = 64,
    workers: int = 2,
    kills: int = 2,
    restarts: int = 0,
    restart_broker: Callable[[], None] | None = None,
    timeout: float = 300.0,
) -> ChaosReport:
    """Run one chaos round against ``url``; see the module docstring for what is reported."""
    report = ChaosReport(backend, events, kills, restarts)
    started = time.monotonic()
    asyncio.run(_publish(url, events, keys))
    ledger = _Ledger(workdir / "ledger.log")
    procs = [_start_worker(url, ledger.path) for _ in range(workers)]
    rng = random.Random(7)
    faults = ["kill"] * kills + ["restart"] * (restarts if restart_broker else 0)
    rng.shuffle(faults)
    victims: list[tuple[float, set[str]]] = []
    try:
        for number, fault in enumerate(faults, start=1):
            # spread the faults over the run: each waits for its share of progress
            target = events * number // (len(faults) + 1)
            _wait(lambda t=target: ledger.refresh() >= t, timeout, f"{target} handled events before fault {number}")
            if fault == "kill":
                # the busiest worker of the last half second: a kill that lands on an idle member proves nothing
                recent = time.time() - 0.5
                busy = Counter(line[3] for line in ledger.lines if line[4] >= recent)
                victim = max(range(len(procs)), key=lambda i: (busy[procs[i].pid], rng.random()))
                pid = procs[victim].pid
                keys_in_hand = {line[1] for line in ledger.lines if line[3] == pid and line[4] >= recent}
                os.kill(pid, signal.SIGKILL)
                procs[victim].wait()
                victims.append((time.time(), keys_in_hand))
                procs[victim] = _start_worker(url, ledger.path)
            else:
                assert restart_broker is not None
                restart_broker()

        def all_handled() -> bool:
            ledger.refresh()
            for proc in procs:
                if proc.poll() is not None:
                    raise AssertionError(f"chaos: a worker exited by itself with {proc.returncode}")
            return len({(line[1], line[2]) for line in ledger.lines}) >= events

        _wait(all_handled, timeout, f"all {events} events handled")
        deadline = time.monotonic() + timeout
        while True:  # the last settles commit after the ledger lines are written
            outputs = asyncio.run(_outputs(url))
            if len({(o[3], o[4]) for o in outputs}) >= events or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    ledger.refresh()
    report.seconds = round(time.monotonic() - started, 2)
    produced = {(key, seq) for _, _, _, key, seq in outputs}
    report.lost = events - len(produced)
    report.duplicate_outputs = len(outputs) - len({o[2] for o in outputs})
    report.duplicate_side_effects = len(ledger.lines) - len({line[0] for line in ledger.lines})
    highest: dict[str, int] = {}
    bad_keys: set[str] = set()
    for _, _, _, key, seq in sorted(outputs):  # log order per partition; a key lives on one partition
        if seq < highest.get(key, -1):
            report.order_violations += 1
            bad_keys.add(key)
        highest[key] = max(seq, highest.get(key, -1))
    report.keys_out_of_order = len(bad_keys)
    by_key: dict[str, list[float]] = defaultdict(list)
    for _, key, _, _, at in ledger.lines:
        by_key[key].append(at)
    for killed_at, keys_in_hand in victims:
        waits = [min((t for t in by_key[k] if t > killed_at), default=killed_at) - killed_at for k in keys_in_hand]
        report.recovery_seconds.append(round(max(waits, default=0.0), 2))
    return report


def summary(reports: list[ChaosReport]) -> str:
    """A Markdown table of ``reports``."""
    rows = [
        "| backend | events | kills | restarts | lost | dup outputs | dup side effects (per kill) "
        "| order violations (keys) | recovery s (max) | run s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        rows.append(
            f"| {r.backend} | {r.events} | {r.kills} | {r.restarts} | {r.lost} | {r.duplicate_outputs} "
            f"| {r.duplicate_side_effects} ({r.side_effects_per_kill:.1f}) "
            f"| {r.order_violations} ({r.keys_out_of_order}) "
            f"| {max(r.recovery_seconds, default=0.0):.2f} | {r.seconds:.1f} |"
        )
    return "\n".join(rows)


__all__ = ["ChaosReport", "run_chaos", "summary"]
