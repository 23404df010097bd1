"""Online backup and restore of the SQLite log: consistent under writes, refusals, the CLI commands."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from choreograph.brokers.sqlite import SqliteBroker, SqliteConfig
from choreograph.brokers.sqlite.backup import BackupError, backup, inspect, live_members, restore
from choreograph.core.broker import Record, Settlement
from choreograph.core.errors import BrokerUnavailable
from choreograph.ops.cli import cli

from .conftest import OpenBroker

runner = CliRunner()


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_backup_holds_records_offsets_and_inbox(open_broker: OpenBroker, db_path: Path, tmp_path: Path) -> None:
    # Given a log with 100 records, a group that acknowledged 40 of them, and inbox keys
    broker = open_broker()
    await broker.publish("t", [Record(f"{i}".encode(), key=f"k{i % 7}") for i in range(100)])
    sub = await broker.subscribe("t", "g")
    acked = 0
    while acked < 40:
        batch = await sub.fetch(40 - acked, 0.5)
        await sub.settle(Settlement(acks=list(batch), inbox=[f"src\x1f{d.offset}:{d.partition}" for d in batch]))
        acked += len(batch)
    await sub.close()
    # When it is backed up, with progress reported
    seen: list[tuple[int, int]] = []
    summary = await asyncio.to_thread(backup, db_path, tmp_path / "b.db", progress=lambda c, t: seen.append((c, t)))
    # Then the backup holds all of it, and progress ended at the total
    assert (summary.records, summary.committed_groups, summary.inbox_keys) == (100, 1, 40)
    assert seen and seen[-1][0] == seen[-1][1] == summary.pages
    assert [copied for copied, _ in seen] == sorted(copied for copied, _ in seen)
    # And the backup is one self-contained file (no WAL beside it)
    assert not Path(f"{tmp_path / 'b.db'}-wal").exists()
    # And a broker on the restored copy resumes after the 40 acknowledged records
    await asyncio.to_thread(restore, tmp_path / "b.db", tmp_path / "restored.db")
    again = open_broker(path=tmp_path / "restored.db")
    resumed = await again.subscribe("t", "g")
    rest: list[int] = []
    while len(rest) < 60:
        batch = await resumed.fetch(100, 0.5)
        rest.extend(int(d.value) for d in batch)
        await resumed.settle(Settlement(acks=list(batch)))
    assert len(set(rest)) == 60
    assert set(rest).isdisjoint(_acked_values(db_path))


def _acked_values(path: Path) -> set[int]:
    rows = _rows(
        path,
        "SELECT r.value FROM records r JOIN offsets o ON o.topic = r.topic AND o.partition = r.partition"
        " WHERE o.grp = 'g' AND r.offset < o.committed",
    )
    return {int(bytes(value)) for (value,) in rows}  # type: ignore[call-overload]


async def test_backup_is_one_snapshot_while_a_writer_publishes(
    open_broker: OpenBroker, db_path: Path, tmp_path: Path
) -> None:
    # Given a log big enough for a backup in many steps
    broker = open_broker()
    payload = b"x" * 2000
    for chunk in range(10):
        await broker.publish("t", [Record(payload + f"{chunk}-{i}".encode(), key=f"k{i}") for i in range(500)])
    before = inspect(db_path).records
    # When batches keep being published while the backup copies 8 pages per step
    stop = asyncio.Event()

    async def publish_forever() -> int:
        n = 0
        while not stop.is_set():
            await broker.publish("t", [Record(payload, key=f"w{n}-{i}") for i in range(50)])
            n += 1
        return n

    writer = asyncio.create_task(publish_forever())
    summary = await asyncio.to_thread(backup, db_path, tmp_path / "b.db", step_pages=8)
    stop.set()
    batches = await writer
    # Then the copy finished, holds whole batches only, and every partition is gapless
    assert batches > 0
    assert summary.records >= before and (summary.records - before) % 50 == 0
    for topic, partition, first, last, count, next_offset in _rows(
        tmp_path / "b.db",
        "SELECT r.topic, r.partition, MIN(r.offset), MAX(r.offset), COUNT(*), p.next_offset FROM records r"
        " JOIN partitions p USING (topic, partition) GROUP BY r.topic, r.partition",
    ):
        assert (first, last + 1, count) == (0, next_offset, next_offset), (topic, partition)


async def test_backup_refuses_an_existing_target_and_a_missing_log(
    broker: SqliteBroker, db_path: Path, tmp_path: Path
) -> None:
    await broker.publish("t", [Record(b"1")])
    (tmp_path / "taken.db").write_bytes(b"keep me")
    with pytest.raises(BackupError, match="already exists"):
        backup(db_path, tmp_path / "taken.db")
    assert (tmp_path / "taken.db").read_bytes() == b"keep me"
    with pytest.raises(BackupError, match="over the log it copies"):
        backup(db_path, db_path, overwrite=True)
    with pytest.raises(BrokerUnavailable, match="does not exist"):
        backup(tmp_path / "missing.db", tmp_path / "out.db")
    assert not (tmp_path / "out.db").exists()


async def test_restore_refuses_a_log_that_workers_use(open_broker: OpenBroker, db_path: Path, tmp_path: Path) -> None:
    # Given a backup, and a worker subscribed on the live log
    broker = open_broker()
    await broker.publish("t", [Record(b"1")])
    backup(db_path, tmp_path / "b.db")
    sub = await broker.subscribe("t", "billing")
    assert live_members(db_path, within=10.0)
    # When it is restored over the live log, even with force
    with pytest.raises(BackupError, match=r"in use: 1 consumer\(s\).*billing"):
        restore(tmp_path / "b.db", db_path, force=True)
    # Then after the worker leaves, the restore needs force and then succeeds
    await sub.close()
    await broker.close()
    assert live_members(db_path, within=10.0) == []
    with pytest.raises(BackupError, match=r"already exists.*--force"):
        restore(tmp_path / "b.db", db_path)
    assert restore(tmp_path / "b.db", db_path, force=True).records == 1


async def test_restored_log_forgets_the_members_of_the_backups_time(
    open_broker: OpenBroker, db_path: Path, tmp_path: Path
) -> None:
    # Given a backup taken while a member of a group held every partition
    broker = open_broker(SqliteConfig(partitions=4, lease_timeout=30.0))
    await broker.publish("t", [Record(b"1")])
    held = await broker.subscribe("t", "g")
    assert held.held() == {0, 1, 2, 3}
    backup(db_path, tmp_path / "b.db")
    assert live_members(tmp_path / "b.db", within=30.0)
    # When it is restored
    restore(tmp_path / "b.db", tmp_path / "r.db")
    # Then no member is left, and a new member takes every partition at once (no 30 s lease wait)
    assert live_members(tmp_path / "r.db", within=30.0) == []
    resumed = await open_broker(SqliteConfig(partitions=4, lease_timeout=30.0), path=tmp_path / "r.db").subscribe(
        "t", "g"
    )
    assert resumed.held() == {0, 1, 2, 3}


def test_restore_refuses_a_file_that_is_not_a_log(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE x (y)")
    other.close()
    with pytest.raises(BackupError, match="not a choreograph log"):
        restore(tmp_path / "junk.db", tmp_path / "new.db")
    with pytest.raises(BackupError, match="not a choreograph log"):
        restore(tmp_path / "other.db", tmp_path / "new.db")
    with pytest.raises(BackupError, match="does not exist"):
        restore(tmp_path / "nothing.db", tmp_path / "new.db")
    assert not (tmp_path / "new.db").exists()


async def test_restore_drops_a_stale_wal_of_the_replaced_log(
    open_broker: OpenBroker, db_path: Path, tmp_path: Path
) -> None:
    # Given a backup of one record, and a log that later got 99 more, whose WAL a crash left behind
    broker = open_broker(SqliteConfig(partitions=1))
    await broker.publish("t", [Record(b"first")])
    backup(db_path, tmp_path / "b.db")
    await broker.publish("t", [Record(b"later")] * 99)
    await broker.close()
    stale = _wal_of_a_crashed_writer(db_path, tmp_path)
    # When the backup is restored
    restore(tmp_path / "b.db", db_path, force=True)
    # Then the stale WAL is gone, and a broker reopening the log (in WAL mode) sees what the backup held
    assert not stale.exists()
    reopened = open_broker(SqliteConfig(partitions=1))
    await reopened.ping()
    await reopened.close()
    assert inspect(db_path).records == 1
    assert _rows(db_path, "SELECT value FROM meta WHERE name = 'crashed'") == []


def _wal_of_a_crashed_writer(db_path: Path, tmp_path: Path) -> Path:
    """Leave a WAL with committed frames beside ``db_path``, as a killed process would."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("INSERT INTO meta (name, value) VALUES ('crashed', 'yes')")
    wal = Path(f"{db_path}-wal")
    kept = wal.read_bytes()
    conn.close()  # checkpoints and deletes the WAL: put the copy back
    wal.write_bytes(kept)
    return wal


# -- the CLI ------------------------------------------------------------------------


async def test_cli_backup_then_restore(broker: SqliteBroker, db_path: Path, tmp_path: Path) -> None:
    await broker.publish("t", [Record(b"1"), Record(b"2")])
    await broker.close()
    url = f"sqlite:///{db_path}"
    out = tmp_path / "nightly.db"
    first = await asyncio.to_thread(runner.invoke, cli, ["backup", str(out), "--broker", url])
    assert first.exit_code == 0, first.output
    assert "2 records" in first.output
    again = await asyncio.to_thread(runner.invoke, cli, ["backup", str(out), "--broker", url])
    assert again.exit_code == 1 and "already exists" in again.output
    refused = await asyncio.to_thread(runner.invoke, cli, ["restore", str(out), "--broker", url])
    assert refused.exit_code == 1 and "--force" in refused.output
    fresh = await asyncio.to_thread(runner.invoke, cli, ["restore", str(out), "--broker", f"sqlite:///{tmp_path}/n.db"])
    assert fresh.exit_code == 0, fresh.output
    assert inspect(tmp_path / "n.db").records == 2


@pytest.mark.parametrize(
    ("url", "tool"),
    [
        ("nats://user:hunter2@127.0.0.1:4222", "nats stream backup"),
        ("redis://:hunter2@127.0.0.1:6379", "RDB"),
        ("kafka://127.0.0.1:9092", "MirrorMaker"),
    ],
)
@pytest.mark.parametrize("command", ["backup", "restore"])
def test_cli_points_server_backends_to_their_own_tools(url: str, tool: str, command: str, tmp_path: Path) -> None:
    result = runner.invoke(cli, [command, str(tmp_path / "x.db"), "--broker", url])
    assert result.exit_code == 2
    assert tool in result.output and "docs/operations.md" in result.output
    assert "hunter2" not in result.output


async def test_paths_with_uri_characters_back_up_and_restore(open_broker: OpenBroker, tmp_path: Path) -> None:
    # SQLite URIs give '?', '#' and '%' a meaning: the paths must still name the files
    odd = tmp_path / "shop ?#%20 log.db"
    broker = open_broker(path=odd)
    await broker.publish("t", [Record(b"1"), Record(b"2")])
    await broker.close()
    assert backup(odd, tmp_path / "b ?#.db").records == 2
    assert restore(tmp_path / "b ?#.db", tmp_path / "r %41.db").records == 2
    assert live_members(odd, within=10.0) == []
