"""Dead-letter operations end to end on the memory and SQLite backends (Redis: tests/brokers/redis)."""

from __future__ import annotations

from pathlib import Path

from tests.unit.ops.dlq_scenario import dead_letter_operations


async def test_on_memory() -> None:
    await dead_letter_operations("memory://")


async def test_on_sqlite(tmp_path: Path) -> None:
    await dead_letter_operations(f"sqlite:///{tmp_path / 'dlq.db'}")
