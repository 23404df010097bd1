"""The recovery drill of docs/operations.md, run on SQLite: back up under load, restore, resume.

Two workers (two Apps, each with its own broker on the file, as two processes
would) handle a backlog while a producer keeps publishing. A backup is taken
mid-run; the run goes on, then everything stops, as in a disaster. The backup
is restored to a new file and workers resume on it. The judge is a side-effect
ledger written by the handler (one line per invocation, like a payment or an
e-mail), compared with what the backup contained:

* nothing acknowledged before the backup is lost: every event the backup
  holds ends with exactly one output in the restored log;
* nothing acknowledged before the backup runs again after the restore, and
  the inbox still drops those events when a producer sends them again;
* events handled after the backup was taken run again on the restored log —
  the expected cost of restoring an older copy (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

from choreograph import App, ConsumerConfig, Context, Event
from choreograph.brokers.sqlite import SqliteBroker
from choreograph.brokers.sqlite.backup import backup, restore
from choreograph.core import codec
from choreograph.core.broker import Record
from tests.conftest import wait_until

BACKLOG = 800
LATE = 400


class Reserve(Event, type="t.drill.reserve"):
    order: int


class Reserved(Event, type="t.drill.reserved"):
    order: int


def worker(url: str, ledger: list[tuple[str, str]], phase: list[str]) -> App:
    app = App("drill", broker=url, consumer=ConsumerConfig(batch_size=25, fetch_timeout=0.05))

    @app.service("inventory").on(Reserve, concurrency=4)
    async def reserve(event: Reserve, ctx: Context) -> Reserved:
        ledger.append((phase[0], ctx.envelope.id))  # the side effect, outside the broker
        await asyncio.sleep(0.002)  # some work: the backlog drains over seconds, not at once
        return Reserved(order=event.order)

    return app


GROUP = "inventory.reserve"


def contents(path: Path) -> tuple[dict[str, bytes], set[str], set[str]]:
    """Read a log file: input events by id, ids acknowledged by the group, and the group's inbox ids."""
    conn = sqlite3.connect(path)
    try:
        inputs = {
            codec.decode(bytes(value)).id: bytes(value)
            for (value,) in conn.execute("SELECT value FROM records WHERE topic = ?", (Reserve.topic(),))
        }
        acknowledged = {
            codec.decode(bytes(value)).id
            for (value,) in conn.execute(
                "SELECT r.value FROM records r JOIN offsets o ON o.topic = r.topic AND o.partition = r.partition"
                " WHERE o.grp = ? AND r.topic = ? AND r.offset < o.committed",
                (GROUP, Reserve.topic()),
            )
        }
        inbox = {key.split("\x1f")[-1] for (key,) in conn.execute("SELECT key FROM inbox WHERE grp = ?", (GROUP,))}
    finally:
        conn.close()
    return inputs, acknowledged, inbox


def outputs_by_cause(path: Path) -> Counter[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT value FROM records WHERE topic = ?", (Reserved.topic(),)).fetchall()
    finally:
        conn.close()
    return Counter(str(codec.decode(bytes(value)).causationid) for (value,) in rows)


async def test_backup_under_load_restores_to_a_log_that_resumes_with_nothing_lost(tmp_path: Path) -> None:
    live, copy, restored = tmp_path / "live.db", tmp_path / "backup.db", tmp_path / "restored.db"
    ledger: list[tuple[str, str]] = []
    phase = ["before"]
    producer = App("shop", broker=f"sqlite:///{live}")
    await producer.publish_many((Reserve(order=i), f"o{i % 64}") for i in range(BACKLOG))
    workers = [worker(f"sqlite:///{live}", ledger, phase) for _ in range(2)]
    for app in workers:
        await app.start()

    # Given workers in the middle of a backlog while the producer keeps publishing
    await wait_until(lambda: len(ledger) >= BACKLOG // 4, timeout=60, what="a quarter of the backlog handled")

    published_late: list[int] = []

    async def keep_publishing() -> None:
        for i in range(BACKLOG, BACKLOG + LATE):
            await producer.publish(Reserve(order=i), key=f"o{i % 64}")
            published_late.append(i)

    late = asyncio.create_task(keep_publishing())
    await wait_until(lambda: len(published_late) >= LATE // 4, timeout=60, what="the producer publishing")
    # When a backup is taken under that load
    await asyncio.to_thread(backup, live, copy, step_pages=16)
    phase[0] = "after-backup"
    # And the run goes on for a while, then every process stops (the disaster)
    await late
    await wait_until(lambda: len(ledger) >= BACKLOG, timeout=60, what="more handled after the backup")
    for app in workers:
        await app.close()
    await producer.close()
    in_backup, acknowledged, inbox = contents(copy)
    handled_after_backup = {event for when, event in ledger if when == "after-backup"}
    # (the drill is only meaningful if the backup caught the group mid-way)
    assert 0 < len(acknowledged) < BACKLOG < len(in_backup) < BACKLOG + LATE
    assert acknowledged <= inbox

    # And the backup is restored to a new file, where workers resume
    await asyncio.to_thread(restore, copy, restored)
    phase[0] = "restored"
    resumed = [worker(f"sqlite:///{restored}", ledger, phase) for _ in range(2)]
    for app in resumed:
        await app.start()
    # And a producer retrying sends 50 events again that were acknowledged before the backup
    resent = sorted(acknowledged)[:50]
    again = SqliteBroker(restored)
    await again.publish(Reserve.topic(), [Record(in_backup[event], None) for event in resent])

    async def drained() -> bool:
        return sum(row.lag for row in await again.lag(GROUP)) == 0

    await wait_until(drained, timeout=60, what="the restored log drained")
    await again.close()
    duplicates = sum(app.stats()[GROUP].duplicates for app in resumed)
    for app in resumed:
        await app.close()

    # Then nothing acknowledged before the backup ran again, and the resent ones were dropped by the inbox
    rerun = {event for when, event in ledger if when == "restored"}
    assert rerun.isdisjoint(acknowledged)
    assert duplicates >= len(resent)
    # And every event the backup holds has exactly one output in the restored log: nothing lost, none doubled
    outputs = outputs_by_cause(restored)
    assert {event: outputs[event] for event in in_backup} == dict.fromkeys(in_backup, 1)
    # And what was handled after the backup (and is in it) ran again: the cost of an older copy
    assert rerun == set(in_backup) - acknowledged
    assert handled_after_backup & rerun, "the drill expects re-runs of work done after the backup"
