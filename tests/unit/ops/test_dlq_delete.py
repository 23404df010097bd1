"""``choreograph dlq purge --delete``: dead letters erased for good, after a confirmation."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core.broker import DeadLetter
from choreograph.ops.cli import cli
from tests.brokers.dead_letter_deletion import dead_letter_records

runner = CliRunner()


def _dead_letters(path: Path, payloads: list[bytes]) -> list[DeadLetter]:
    async def make() -> list[DeadLetter]:
        broker = SqliteBroker(path)
        try:
            return await dead_letter_records(broker, payloads)
        finally:
            await broker.close()

    return asyncio.run(make())


def _remaining(path: Path) -> set[str]:
    async def ids() -> set[str]:
        broker = SqliteBroker(path)
        try:
            return {d.id for d in await broker.dead_letters(status=None)}
        finally:
            await broker.close()

    return asyncio.run(ids())


def test_delete_by_id_asks_then_removes_only_that_entry(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    first, second = _dead_letters(path, [b"a", b"b"])
    url = f"sqlite:///{path}"
    # When the operator declines, nothing is deleted
    declined = runner.invoke(cli, ["dlq", "purge", first.id, "--delete", "--broker", url], input="n\n")
    assert declined.exit_code != 0 and "Delete 1 dead letter(s) for good?" in declined.output
    assert _remaining(path) == {first.id, second.id}
    # When they confirm, that entry goes and the other stays
    confirmed = runner.invoke(cli, ["dlq", "purge", first.id, "--delete", "--broker", url], input="y\n")
    assert confirmed.exit_code == 0 and "deleted 1" in confirmed.output
    assert _remaining(path) == {second.id}
    shown = runner.invoke(cli, ["dlq", "show", first.id, "--broker", url])
    assert shown.exit_code != 0


def test_delete_all_with_yes_removes_purged_entries_too(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    first, _ = _dead_letters(path, [b"a", b"b"])
    url = f"sqlite:///{path}"
    assert runner.invoke(cli, ["dlq", "purge", first.id, "--broker", url]).exit_code == 0  # marked only
    assert len(_remaining(path)) == 2
    result = runner.invoke(cli, ["dlq", "purge", "--all", "--delete", "--yes", "--broker", url])
    assert result.exit_code == 0 and "deleted 2" in result.output
    assert _remaining(path) == set()
