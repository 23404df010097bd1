"""Dead letters can be erased: ``purge(delete=True)`` and ``dead_letter_retention`` (memory and SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from choreograph.brokers.memory import MemoryBroker
from choreograph.brokers.sqlite import SqliteBroker, SqliteConfig
from choreograph.core.clock import FakeClock
from choreograph.core.errors import ConfigurationError, NotFound
from tests.brokers.dead_letter_deletion import check_dead_letter_deletion, dead_letter_records


async def test_memory_deletes_dead_letters() -> None:
    broker = MemoryBroker(partitions=2)
    await check_dead_letter_deletion(broker)
    await broker.close()


async def test_sqlite_deletes_dead_letters(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "b.db", SqliteConfig(partitions=2))
    try:
        await check_dead_letter_deletion(broker)
    finally:
        await broker.close()


def _on_disk(path: Path) -> bytes:
    """Everything SQLite keeps for ``path``: the database, its write-ahead log and its index."""
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


@pytest.mark.parametrize("size", [300, 20_000])  # in a b-tree page, and spread over overflow pages
async def test_sqlite_deleted_dead_letter_bytes_are_gone_from_the_files(tmp_path: Path, size: int) -> None:
    # Given a dead letter whose record the log has trimmed already (retention keeps the newest record only)
    path = tmp_path / "b.db"
    secret = (b"PERSONAL-DATA:jane.doe@example.com;" * (size // 35 + 1))[:size]
    broker = SqliteBroker(path, SqliteConfig(partitions=1, retention_max_records=1))
    try:
        [letter, _] = await dead_letter_records(broker, [secret, b"filler"])
        await broker.purge([_.id], delete=True)
        assert await broker.trim() == 1
        await broker.purge(["none"], delete=True)  # no-op
        assert (await broker.dead_letter(letter.id)).value == secret
        await broker.close()
        assert secret[:200] in _on_disk(path)  # the control: the dead letter's bytes are in the files
        broker = SqliteBroker(path, SqliteConfig(partitions=1, retention_max_records=1))
        # When it is deleted
        assert await broker.purge([letter.id], delete=True) == 1
        with pytest.raises(NotFound):
            await broker.dead_letter(letter.id)
    finally:
        await broker.close()
    # Then no copy of its bytes is left in the database, its write-ahead log or its index
    assert b"PERSONAL-DATA" not in _on_disk(path)


async def test_memory_dead_letter_retention_deletes_old_entries_whatever_their_status() -> None:
    clock = FakeClock()
    broker = MemoryBroker.from_url("memory://?partitions=1&dead_letter_retention=60", clock=clock)
    [old] = await dead_letter_records(broker, [b"old"])
    await broker.purge([old.id])  # marked purged: retention deletes it all the same
    clock.advance(30)
    [young] = await dead_letter_records(broker, [b"young"])
    clock.advance(31)  # old is 61 s old, young 31 s
    assert [d.id for d in await broker.dead_letters(status=None)] == [young.id]
    with pytest.raises(NotFound):
        await broker.dead_letter(old.id)
    clock.advance(30)
    assert await broker.dead_letters(status=None) == []
    await broker.close()


async def test_sqlite_dead_letter_retention_deletes_old_entries_when_trimming(tmp_path: Path) -> None:
    clock = FakeClock()
    broker = SqliteBroker(tmp_path / "b.db", SqliteConfig(partitions=1, dead_letter_retention=60), clock=clock)
    try:
        [old] = await dead_letter_records(broker, [b"old"])
        clock.advance(30)
        [young] = await dead_letter_records(broker, [b"young"])
        clock.advance(31)
        await broker.trim()
        assert [d.id for d in await broker.dead_letters(status=None)] == [young.id]
        with pytest.raises(NotFound):
            await broker.dead_letter(old.id)
    finally:
        await broker.close()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "x"])
def test_dead_letter_retention_must_be_a_positive_duration(value: str) -> None:
    with pytest.raises(ConfigurationError, match="dead_letter_retention"):
        MemoryBroker.from_url(f"memory://?dead_letter_retention={value}")
    with pytest.raises(ConfigurationError, match="dead_letter_retention"):
        SqliteBroker.from_url(f"sqlite:///./never-created.db?dead_letter_retention={value}")
