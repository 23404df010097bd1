"""SQLite broker faults on real files: a close that fails leaves no zombie member; lost storage is detected."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from choreograph.brokers.sqlite import SqliteConfig
from choreograph.core.broker import Record
from choreograph.core.errors import BrokerError, BrokerUnavailable, StorageLost
from tests.conftest import wait_until

from .conftest import OpenBroker

FAST = SqliteConfig(
    partitions=4, lease_timeout=1.0, heartbeat_interval=0.2, rebalance_check_interval=0.02, busy_timeout=0.2
)


async def test_a_member_whose_close_fails_is_forgotten_and_its_partitions_taken_over(
    open_broker: OpenBroker, db_path: Path
) -> None:
    # Given two members of a group in two processes (brokers), each holding half the partitions
    first = await open_broker(FAST).subscribe("t", "g")
    second = await open_broker(FAST).subscribe("t", "g")
    await wait_until(lambda: len(first.held()) == 2 and len(second.held()) == 2, what="an even split")

    # When the first one's close fails: another connection holds the write lock past busy_timeout
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(BrokerError, match="locked"):
            await first.close()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    # Then the first member is forgotten (closed, holding nothing, renewing nothing)
    # and the second takes over its partitions once their leases lapse
    assert first.closed
    assert first.held() == set()
    await wait_until(lambda: second.held() == {0, 1, 2, 3}, timeout=10 * FAST.lease_timeout, what="a takeover")


async def test_a_publish_into_a_deleted_file_fails_naming_the_path(open_broker: OpenBroker, db_path: Path) -> None:
    # Given a broker that published into its file
    broker = open_broker(SqliteConfig(partitions=2))
    await broker.publish("t", [Record(b"kept")])

    # When the file is deleted under it
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)

    # Then a publish fails (it is not acknowledged into the unlinked file), and so does every later one
    for _ in range(2):
        with pytest.raises(StorageLost, match=rf"{db_path.name}.*no longer exists"):
            await broker.publish("t", [Record(b"lost")])
    with pytest.raises(BrokerUnavailable, match="no longer exists"):
        await broker.ping()


async def test_a_publish_into_a_replaced_file_fails(open_broker: OpenBroker, db_path: Path) -> None:
    # Given a broker on a file, and another file moved over its path (a restore gone wrong)
    broker = open_broker(SqliteConfig(partitions=2))
    await broker.publish("t", [Record(b"kept")])
    other = db_path.with_name("other.db")
    other.write_bytes(b"")
    os.replace(other, db_path)

    # When it publishes, then it fails saying the file was replaced
    with pytest.raises(StorageLost, match="replaced"):
        await broker.publish("t", [Record(b"lost")])


async def test_a_publish_into_a_truncated_file_fails(open_broker: OpenBroker, db_path: Path) -> None:
    # Given a broker whose file holds checkpointed pages
    broker = open_broker(SqliteConfig(partitions=2))
    await broker.publish("t", [Record(b"x" * 1000) for _ in range(200)])
    checkpointer = sqlite3.connect(db_path)
    checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    checkpointer.close()
    await broker.publish("t", [Record(b"after the checkpoint")])
    size = db_path.stat().st_size
    assert size > 8192

    # When the file is cut to its first page
    os.truncate(db_path, 4096)

    # Then a publish fails saying so
    with pytest.raises(StorageLost, match="truncated"):
        await broker.publish("t", [Record(b"lost")])


async def test_a_file_shrunk_by_vacuum_is_not_taken_for_lost(open_broker: OpenBroker, db_path: Path) -> None:
    # Given a broker whose file shrank legitimately (records deleted, then VACUUM by another connection)
    broker = open_broker(SqliteConfig(partitions=2))
    await broker.publish("t", [Record(b"x" * 1000) for _ in range(200)])
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    await broker.publish("t", [Record(b"grown")])
    before = db_path.stat().st_size
    other.execute("DELETE FROM records")
    other.execute("VACUUM")
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    other.close()
    assert db_path.stat().st_size < before

    # When it publishes, then the publish goes through
    await broker.publish("t", [Record(b"fine")])


async def test_a_file_moved_away_and_back_takes_writes_again(open_broker: OpenBroker, db_path: Path) -> None:
    # Given a broker whose file was moved away (an unmounted volume): publishes fail meanwhile
    broker = open_broker(SqliteConfig(partitions=2))
    await broker.publish("t", [Record(b"before")])
    away = db_path.with_suffix(".away")
    os.rename(db_path, away)
    with pytest.raises(StorageLost, match="no longer exists"):
        await broker.publish("t", [Record(b"refused")])

    # When the same file is back at its path
    os.rename(away, db_path)

    # Then publishes go through again, and only what was acknowledged is in the log
    await broker.publish("t", [Record(b"after")])
    assert [d.value for d in await broker.read("t", limit=10)] == [b"before", b"after"]
