"""``choreograph audit`` and ``dlq history``: the same trail, shown the same way (limits, credentials hidden)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from choreograph.brokers.sqlite import SqliteBroker
from choreograph.ops.cli import cli
from choreograph.runtime.audit import AuditLog

runner = CliRunner()


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite broker whose trail holds three retries, the last one recorded with credentials by a tool."""
    path = tmp_path / "a.db"

    async def record() -> None:
        broker = SqliteBroker(path)
        try:
            audit = AuditLog.of(broker)
            for n in range(2):
                await audit.record("retry", target=f"{n + 1} id(s)", count=1, actor="ops")
            await audit.record(
                "retry",
                target="group 0123456789abcdef to redis://admin:hunter2@prod:6379/0",
                count=3,
                actor="ops",
                details={"password": "hunter2", "to": "nats://u:hunter2@n:4222", "fingerprint": "0123456789abcdef"},
            )
        finally:
            await broker.close()

    asyncio.run(record())
    return f"sqlite:///{path}"


def test_records_with_a_limit_of_zero_are_none(url: str) -> None:
    async def read() -> int:
        broker = SqliteBroker(url.removeprefix("sqlite:///"))
        try:
            return len(await AuditLog.of(broker).records(limit=0))
        finally:
            await broker.close()

    assert asyncio.run(read()) == 0


@pytest.mark.parametrize("command", [["audit"], ["dlq", "history"]])
@pytest.mark.parametrize("limit", ["0", "-1"])
def test_a_limit_below_one_is_a_usage_error(url: str, command: list[str], limit: str) -> None:
    result = runner.invoke(cli, [*command, "--limit", limit, "--json", "--broker", url])
    assert result.exit_code == 2, result.output


@pytest.mark.parametrize("command", [["audit"], ["dlq", "history"]])
def test_a_limit_shows_the_most_recent_records(url: str, command: list[str]) -> None:
    result = runner.invoke(cli, [*command, "--limit", "2", "--json", "--broker", url])
    assert result.exit_code == 0, result.output
    docs = [json.loads(line) for line in result.output.splitlines()]
    assert [d["count"] for d in docs] == [1, 3]


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_history_hides_credentials_like_audit(url: str, json_flag: list[str]) -> None:
    result = runner.invoke(cli, ["dlq", "history", *json_flag, "--broker", url])
    assert result.exit_code == 0 and "retry" in result.output, result.output
    assert "hunter2" not in result.output, result.output


def test_history_refuses_a_group_that_is_not_a_fingerprint(url: str) -> None:
    # A typo would otherwise match no record and show an empty history
    result = runner.invoke(cli, ["dlq", "history", "--group", "0123456789abcdeg", "--broker", url])
    assert result.exit_code == 2 and "fingerprint" in result.output, result.output
    result = runner.invoke(cli, ["dlq", "history", "--group", "0123456789abcdef", "--json", "--broker", url])
    assert result.exit_code == 0 and [json.loads(line)["count"] for line in result.output.splitlines()] == [3]
