"""``choreograph replay``: the dry run counts what the real run moves; JSON reports; filters; reset and group."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from choreograph import App, Event
from choreograph.brokers.memory import MemoryBroker
from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core.broker import Position, Record, Settlement
from choreograph.ops.cli import cli
from choreograph.ops.replay_cli import follow_group
from choreograph.ops.replay_progress import ReplayProgress
from choreograph.runtime.replay_range import resolve

runner = CliRunner()


class Paid(Event, type="replay.paid", topic="replay.payments"):
    n: int


class Refunded(Event, type="replay.refunded", topic="replay.payments"):
    n: int


def fill(url: str) -> dict[str, str]:
    """Publish 30 Paid and 10 Refunded events (on one topic) over keys a-e; return n -> correlation id of Paid."""

    async def main() -> dict[str, str]:
        app = App("filler", broker=url)
        correlations = {}
        try:
            for n in range(30):
                sent = await app.publish(Paid(n=n), key="abcde"[n % 5])
                correlations[str(n)] = sent.correlationid or ""
            for n in range(10):
                await app.publish(Refunded(n=n), key="a")
        finally:
            await app.close()
        return correlations

    return asyncio.run(main())


def invoke(*args: str) -> Any:
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/source.db"


def test_copy_dry_run_counts_what_the_copy_copies(url: str, tmp_path: Path) -> None:
    fill(url)
    target = f"sqlite:///{tmp_path}/target.db"
    args = ["replay", "copy", Paid.topic(), "--to-broker", target, "--key", "a", "--key", "b", "-b", url]
    planned = invoke(*args, "--dry-run", "--type", "replay.paid")
    assert planned["dry_run"] is True and planned["total"] == 12
    assert sum(p["count"] for p in planned["partitions"]) == 12
    done = invoke(*args, "--type", "replay.paid", "--rate", "500")
    assert done["copied"] == done["planned"] == 12 and done["resumed"] is False
    assert "key-value namespace" in str(done["checkpoints"])  # SQLite keeps key-value namespaces

    async def read_target() -> list[tuple[str | None, int]]:
        broker = SqliteBroker.from_url(target)
        try:
            records = await broker.read(Paid.topic(), Position.earliest(), limit=100)
            return [(d.key, json.loads(d.value)["data"]["n"]) for d in records]
        finally:
            await broker.close()

    copied = asyncio.run(read_target())
    assert sorted(n for _, n in copied) == [n for n in range(30) if n % 5 in (0, 1)]
    for key in "ab":
        per_key = [n for k, n in copied if k == key]
        assert per_key == sorted(per_key)


def test_copy_plain_progress_lines_and_correlation_filter(url: str) -> None:
    correlations = fill(url)
    args = ["replay", "copy", Paid.topic(), "--to-topic", "replay.copy", "-b", url]
    result = runner.invoke(cli, [*args, "--correlation-id", correlations["7"]])
    assert result.exit_code == 0, result.output
    assert "1/1 records" in result.output  # not a terminal: plain progress lines
    assert "copied 1 of 1 records" in result.output


def test_copy_onto_itself_is_refused(url: str) -> None:
    fill(url)
    result = runner.invoke(cli, ["replay", "copy", Paid.topic(), "-b", url])
    assert result.exit_code == 2
    assert "onto itself" in result.output


def test_reset_dry_run_moves_nothing_and_reset_moves(url: str) -> None:
    fill(url)

    async def consume_all() -> None:
        broker = SqliteBroker.from_url(url)
        try:
            sub = await broker.subscribe(Paid.topic(), "billing")
            while batch := await sub.fetch(100, 0.2):
                await sub.settle(Settlement(acks=list(batch)))
            await sub.close()
        finally:
            await broker.close()

    asyncio.run(consume_all())
    planned = invoke("replay", "reset", "billing", Paid.topic(), "--to", "earliest", "--dry-run", "-b", url)
    assert planned["total"] == 40
    assert sum(p["before"] for p in planned["partitions"]) == 40
    still = invoke("replay", "reset", "billing", Paid.topic(), "--to", "latest", "--dry-run", "-b", url)
    assert still["total"] == 0
    moved = invoke("replay", "reset", "billing", Paid.topic(), "--to", "earliest", "-b", url)
    assert {p["after"] for p in moved["partitions"]} == {0}
    assert sum(p["before"] for p in moved["partitions"]) == 40


def test_group_starts_a_new_group_and_refuses_an_existing_one(url: str) -> None:
    fill(url)
    started = invoke("replay", "group", "audit-replay", Paid.topic(), "--from", "earliest", "-b", url)
    assert all(p["before"] is None for p in started["partitions"])
    again = runner.invoke(cli, ["replay", "group", "audit-replay", Paid.topic(), "--from", "earliest", "-b", url])
    assert again.exit_code == 2 and "replay reset" in again.output


def test_follow_without_workers_times_out_and_says_why(url: str) -> None:
    fill(url)
    args = ["replay", "group", "idle", Paid.topic(), "--from", "earliest", "--follow", "--timeout", "0.3", "-b", url]
    result = runner.invoke(cli, args)
    assert result.exit_code == 1
    assert "read 0 of 40 records" in result.output and "workers running" in result.output


async def test_follow_reports_a_group_catching_up_with_its_metrics() -> None:
    broker = MemoryBroker()
    try:
        await broker.publish("t", [Record(b"x", key=f"k{i % 4}") for i in range(50)])
        bounds = await resolve(broker, "t", Position.earliest(), None)
        await broker.reset_group("t", "g", Position.earliest())
        member = await broker.subscribe("t", "g")

        async def work() -> None:
            while batch := await member.fetch(7, 0.1):
                await member.settle(Settlement(acks=list(batch)))

        async with ReplayProgress("g-t", group="g", as_json=True) as progress:
            read, _ = await asyncio.gather(follow_group(broker, "t", "g", bounds, progress, 5.0), work())
            sample = progress.registry.get_sample_value
            assert sample("choreograph_replay_running", {"replay": "g-t", "group": "g"}) == 1
        assert read == 50
        assert sample("choreograph_replay_processed_records", {"replay": "g-t"}) == 50
        assert sample("choreograph_replay_progress_ratio", {"replay": "g-t"}) == 1.0
        assert sample("choreograph_replay_running", {"replay": "g-t", "group": "g"}) == 0  # set when it ended
    finally:
        await broker.close()


def test_reset_and_copy_are_in_the_audit_trail(url: str) -> None:
    fill(url)
    invoke("replay", "group", "audited", Paid.topic(), "--from", "earliest", "--actor", "oncall-ann", "-b", url)
    invoke(
        "replay", "copy", Paid.topic(), "--to-topic", "replay.audit", "--key", "c", "--actor", "oncall-bob", "-b", url
    )
    result = runner.invoke(cli, ["audit", "--json", "-b", url])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.strip().splitlines()]
    done = {(r["action"], r["actor"], r["count"]) for r in records}
    assert ("replay", "oncall-ann", 40) in done
    assert ("copy", "oncall-bob", 6) in done


def test_copy_refuses_an_unsafe_name_and_an_unknown_topic(url: str) -> None:
    fill(url)
    unsafe = runner.invoke(cli, ["replay", "copy", Paid.topic(), "--to-topic", "x", "--name", "../../etc", "-b", url])
    assert unsafe.exit_code == 2 and "--name" in unsafe.output
    unknown = runner.invoke(cli, ["replay", "copy", "no.such.topic", "--to-topic", "x", "-b", url])
    assert unknown.exit_code == 1 and "unknown topic" in unknown.output


def test_run_replays_a_range_through_a_handler_as_a_new_group(url: str) -> None:
    from tests.unit.replay.handler_app import Billed, Shipped

    async def publish() -> None:
        app = App("shop", broker=url)
        try:
            for n in range(12):
                await app.publish(Shipped(n=n), key=f"k{n % 4}")
        finally:
            await app.close()

    asyncio.run(publish())
    spec = "tests.unit.replay.handler_app:app"
    args = ["replay", "run", spec, "billing.bill", "--group", "billing.rebuild", "--from", "earliest", "-b", url]
    assert invoke(*args, "--dry-run")["total"] == 12
    assert invoke(*args)["replayed"] == 12

    async def outputs() -> int:
        broker = SqliteBroker.from_url(url)
        try:
            return len(await broker.read(Billed.topic(), Position.earliest(), limit=100))
        finally:
            await broker.close()

    assert asyncio.run(outputs()) == 12
    again = runner.invoke(cli, args)
    assert again.exit_code == 2 and "has positions" in again.output
