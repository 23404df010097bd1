"""SQLite key-value stores across OS processes: compare-and-set holds between separate connections and processes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core.errors import BrokerClosed

PROCESSES = 3
INCREMENTS = 40

RACER = f"""
import asyncio, sys
from choreograph.brokers.sqlite import SqliteBroker
from choreograph.testing.kv_scenarios import increment

async def main():
    broker = SqliteBroker(sys.argv[1])
    try:
        print(await increment(broker.key_value("race"), "counter", {INCREMENTS}))
    finally:
        await broker.close()

asyncio.run(main())
"""


async def test_processes_racing_compare_and_set_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    racers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", RACER, str(path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(PROCESSES)
    ]
    outputs = [await racer.communicate() for racer in racers]
    for racer, (_, err) in zip(racers, outputs, strict=True):
        assert racer.returncode == 0, err.decode()
    broker = SqliteBroker(path)
    try:
        entry = await broker.key_value("race").get("counter")
        assert entry is not None
        assert int(entry.value) == PROCESSES * INCREMENTS
        assert entry.revision == PROCESSES * INCREMENTS  # one revision per successful write, none for a lost one
    finally:
        await broker.close()


async def test_a_store_of_a_closed_broker_raises_broker_closed(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "kv.db")
    store = broker.key_value("notes")
    await store.put("k", b"v")
    await broker.close()
    for attempt in (store.get("k"), store.put("k", b"w"), store.delete("k"), store.keys()):
        with pytest.raises(BrokerClosed):
            await attempt


async def test_the_table_is_shared_by_namespaces_without_crosstalk(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "kv.db")
    try:
        a, b = broker.key_value("a"), broker.key_value("b")
        await a.put("k", b"in a")
        assert await b.get("k") is None
        assert await b.put("k", b"in b", expect=0) == 1
        assert (await a.get("k") or pytest.fail("lost")).value == b"in a"
        assert await a.keys() == await b.keys() == ["k"]
    finally:
        await broker.close()
