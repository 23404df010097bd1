"""kill -9 of one of two worker processes on the SQLite log: nothing lost, nothing committed twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from choreograph import App, decode
from choreograph.brokers.sqlite import SqliteBroker
from tests.integration.crash_worker import Item

ROOT = Path(__file__).resolve().parents[2]
TOTAL = 2000
BATCH = 50


def lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.count(" ") == 2]


def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {what}")
        time.sleep(0.01)


def start_worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.crash_worker", url, str(log)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
async def test_kill_9_of_one_worker_loses_nothing_and_commits_each_event_once(tmp_path: Path) -> None:
    # Given 2,000 events on 8 partitions and two worker processes with 1 s leases
    url = f"sqlite:///{tmp_path}/log.db?partitions=8&lease_timeout=1"
    app = App("producer", broker=url)
    published = await app.publish_many((Item(n=i), f"k{i % 64}") for i in range(TOTAL))
    await app.close()
    victim_log, survivor_log = tmp_path / "victim.log", tmp_path / "survivor.log"
    victim = start_worker(url, victim_log)
    survivor = start_worker(url, survivor_log)
    try:
        # When the victim is killed -9 in the middle of the stream
        wait_for(lambda: len(lines(victim_log)) >= 300, 60, "the victim to handle 300 events")
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        broker = SqliteBroker.from_url(url)
        try:
            deadline = time.monotonic() + 90

            async def copied() -> int:
                infos = {info.name: info.records for info in await broker.topics()}
                return infos.get("t.crash.out", 0)

            while await copied() < TOTAL and time.monotonic() < deadline:
                assert survivor.poll() is None, survivor.stderr.read() if survivor.stderr else b""
                time.sleep(0.05)
            # Then every input was copied exactly once: the outputs commit with the offsets
            outputs = [decode(d.value) for d in await broker.read("t.crash.out", limit=10 * TOTAL)]
            lag = await broker.lag("copier.copy")
        finally:
            await broker.close()
    finally:
        for proc in (victim, survivor):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
            if proc.stderr:
                proc.stderr.close()

    assert len(outputs) == TOTAL, f"{len(outputs)} outputs for {TOTAL} inputs"
    assert sorted(o.causationid for o in outputs) == sorted(e.id for e in published)
    assert len({o.id for o in outputs}) == TOTAL
    assert sum(row.lag for row in lag) == 0
    # The survivor took over the victim's partitions
    victim_partitions = {p for _, _, p in lines(victim_log)}
    survivor_partitions = {p for _, _, p in lines(survivor_log)}
    assert victim_partitions <= survivor_partitions
    # Re-invocations happen only for events whose handling had not committed: at most one batch
    invocations = Counter(eid for eid, _, _ in lines(victim_log) + lines(survivor_log))
    assert set(invocations) == {e.id for e in published}
    reinvoked = sum(count - 1 for count in invocations.values())
    print(f"re-invocations after kill -9: {reinvoked} (in-flight window {BATCH})")
    assert reinvoked <= BATCH
