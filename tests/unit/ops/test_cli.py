"""The operator CLI against a real SQLite log: commands, output and exit codes."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from choreograph import App, Context, Event, RetryPolicy
from choreograph.ops.cli import cli
from tests.conftest import wait_until

runner = CliRunner()


class Ping(Event, type="t.cli.ping"):
    n: int


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cli.db"


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli, list(args))
    return result.exit_code, result.output


def test_every_command_has_help() -> None:
    for command in (["run"], ["publish"], ["tail"], ["topics"], ["lag"], ["dlq", "list"], ["dlq", "retry"], ["demo"]):
        code, output = invoke(*command, "--help")
        assert code == 0, output
        assert "--broker" in output


def test_publish_then_tail_and_topics(url: str) -> None:
    # stdout is the id alone (stderr warns that no schema is registered for the type)
    result = runner.invoke(cli, ["publish", "t.cli.ping", '{"n": 7}', "--key", "k1", "--broker", url])
    code, output = result.exit_code, result.stdout
    assert code == 0, output
    event_id = output.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", event_id)
    code, output = invoke("tail", "t.cli.ping", "--broker", url)
    assert code == 0
    assert event_id in output and '"n":7' in output
    code, output = invoke("topics", "--broker", url)
    assert code == 0 and "t.cli.ping" in output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["publish", "t.x", "{not json", "--broker", "sqlite:///{tmp}/a.db"], 2, "JSON is not valid"),
        (["publish", "t.x", "[1]", "--broker", "sqlite:///{tmp}/a.db"], 2, "must be an object"),
        (["tail", "nope", "--broker", "sqlite:///{tmp}/a.db"], 1, "unknown topic 'nope'"),
        (["run", "no_such_module:app", "--broker", "sqlite:///{tmp}/a.db"], 2, "cannot import module"),
        (["topics", "--broker", "kafkaa://x"], 2, "unknown broker scheme"),
        (["topics", "--broker", "sqlite:///{tmp}/missing/dir/a.db"], 3, "unavailable"),
        (["dlq", "show", "nope", "--broker", "sqlite:///{tmp}/a.db"], 1, "nope"),
    ],
)
def test_bad_input_gets_a_clear_error_and_exit_code(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    exit_code, output = invoke(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert exit_code == code, output
    assert message in output


def test_dlq_list_show_retry_purge(url: str) -> None:
    # Given an event dead-lettered by a broken handler
    app = App("cli", broker=url)
    broken = True
    handled: list[int] = []

    @app.service("svc").on(Ping, retry=RetryPolicy(immediate=0, delayed=0))
    async def handle(event: Ping, ctx: Context) -> None:
        if broken:
            raise RuntimeError("handler bug")
        handled.append(event.n)

    async def fail_once() -> None:
        await app.start()
        await app.publish(Ping(n=1))
        await wait_until(lambda: app.stats()["svc.handle"].dead_letters == 1)
        await app.stop()

    asyncio.run(fail_once())
    code, output = invoke("dlq", "list", "--broker", url)
    assert code == 0 and "svc.handle" in output and "RuntimeError" in output
    dead_id = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f-]+", output)
    assert dead_id
    code, output = invoke("dlq", "show", dead_id.group(0), "--broker", url)
    assert code == 0 and "handler bug" in output and "Traceback" in output
    # When it is retried twice with the handler fixed
    broken = False
    code, output = invoke("dlq", "retry", dead_id.group(0), "--broker", url)
    assert code == 0 and "resubmitted 1" in output
    code, output = invoke("dlq", "retry", dead_id.group(0), "--broker", url)
    assert code == 1 and "skipped 1" in output

    async def drain() -> None:
        await app.start()
        await wait_until(lambda: handled == [1])
        await app.close()

    asyncio.run(drain())
    assert handled == [1]
    code, output = invoke("dlq", "purge", "--all", "--yes", "--broker", url)
    assert code == 0 and "purged 0" in output


def test_lag_shows_published_minus_committed(url: str) -> None:
    app = App("cli", broker=url)
    gate_open = False

    @app.service("svc").on(Ping)
    async def handle(event: Ping, ctx: Context) -> None:
        assert gate_open

    async def publish() -> None:
        await app.publish_many((Ping(n=i), None) for i in range(5))
        sub = await app.broker.subscribe(Ping.topic(), "svc.handle")
        await sub.close()
        await app.close()

    asyncio.run(publish())
    code, output = invoke("lag", "--broker", url)
    assert code == 0, output
    assert re.search(r"svc\.handle\s+│\s+t\.cli\.ping\s+│\s+5\s+│\s+0\s+│\s+5", output), output
