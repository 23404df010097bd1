"""SQLite broker faults on real files: a close that fails leaves no zombie member; lost storage is detected."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from choreograph.brokers.sqlite import SqliteConfig
from choreograph.core.errors import BrokerError
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
