"""Operator commands on hostile data: markup, escape sequences and newlines in names and fields.

Given a real SQLite log whose records, dead letters, topics and groups carry
Rich markup (``[/]``, ``[bold red]``), terminal escape sequences (CSI, OSC),
carriage returns, bidi overrides and newlines, every listing command exits 0,
prints no raw control character, shows the markup literally, and its
``--json`` form is one parseable document per line.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core import codec
from choreograph.core.broker import DeadLetter, Record, Settlement
from choreograph.core.envelope import Envelope

runner = CliRunner()

MARKUP = "[/][bold red]x[/bold red]"
ESCAPES = "\x1b[2J\x1b]0;owned\x07\r\b\u202eevil\x9b31m"
HOSTILE = f"h{MARKUP}{ESCAPES}\nforged line"
TOPIC, GROUP = "t.hostile", "svc.handler"
HOSTILE_TOPIC = f"t.{MARKUP}{ESCAPES}\nforged"
HOSTILE_GROUP = f"g.{MARKUP}{ESCAPES}\nforged"
CORRELATION = "0193a000-0000-7000-8000-000000000001"
RAW_CONTROLS = ("\x1b", "\x07", "\r", "\b", "\u202e", "\x9b")


def _envelope(n: int) -> Envelope:
    return Envelope(
        id=f"id-{n}-{HOSTILE}",
        source=f"src-{HOSTILE}",
        type=f"type-{HOSTILE}",
        data={"field": HOSTILE, "long": "x" * 3000},
        time="2026-12-06T00:00:00Z",
        correlationid=CORRELATION,
        partitionkey=f"key-{HOSTILE}",
    )


async def _fill(url: str) -> str:
    broker = SqliteBroker.from_url(url)
    try:
        records = [Record(codec.encode(_envelope(n)), f"key-{HOSTILE}") for n in range(3)]
        records.append(Record(b"\x1b[31mnot json[/]\n\xff\xfe", f"raw-{HOSTILE}"))
        await broker.publish(TOPIC, records)
        subscription = await broker.subscribe(TOPIC, GROUP)
        deliveries = list(await subscription.fetch(10, 5.0))
        assert len(deliveries) == 4
        first = deliveries[0]
        letter = DeadLetter(
            id=f"dl-{HOSTILE}",
            topic=TOPIC,
            group=GROUP,
            handler=f"handler-{HOSTILE}",
            partition=first.partition,
            offset=first.offset,
            key=first.key,
            value=first.value,
            headers={"h": HOSTILE},
            event_id=f"id-0-{HOSTILE}",
            event_type=f"type-{HOSTILE}",
            reason=f"error-{HOSTILE}",
            error_type=f"Error{MARKUP}",
            error_message=HOSTILE,
            stack=f"Traceback\n  {HOSTILE}",
            attempts=3,
            first_failure=1.0,
            last_failure=2.0,
        )
        await subscription.settle(Settlement(acks=deliveries[1:], dead_letters=[(first, letter)]))
        await subscription.close()
        return letter.id
    finally:
        await broker.close()


def _rename(path: str, table_columns: dict[str, tuple[str, ...]]) -> None:
    """Give the topic and group hostile names, as a foreign writer or an older version could have."""
    with sqlite3.connect(path) as db:
        for table, columns in table_columns.items():
            if "topic" in columns:
                db.execute(f"UPDATE {table} SET topic = ? WHERE topic = ?", (HOSTILE_TOPIC, TOPIC))
            if "grp" in columns:
                db.execute(f"UPDATE {table} SET grp = ? WHERE grp = ?", (HOSTILE_GROUP, GROUP))


@pytest.fixture(scope="module")
def hostile_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    path = tmp_path_factory.mktemp("hostile") / "log.db"
    url = f"sqlite:///{path}"
    letter_id = asyncio.run(_fill(url))
    with sqlite3.connect(path) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        columns = {t: tuple(row[1] for row in db.execute(f"PRAGMA table_info({t})")) for t in tables}
    _rename(str(path), columns)
    return url, letter_id


def invoke(*args: str) -> tuple[int, str]:
    from choreograph.ops.cli import cli

    result = runner.invoke(cli, list(args))
    return result.exit_code, result.output


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _assert_safe(output: str) -> None:
    for char in RAW_CONTROLS:
        assert char not in output, f"raw {char!r} in output:\n{output}"
    assert not any(line.startswith("forged") for line in output.splitlines()), output


COMMANDS = [
    ["tail", HOSTILE_TOPIC],
    ["tail", HOSTILE_TOPIC, "--raw"],
    ["topics"],
    ["lag"],
    ["lag", "--partitions"],
    ["dlq", "list"],
    ["dlq", "list", "--status", "all"],
    ["trace", CORRELATION],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c)[:20])
def test_listing_commands_exit_0_and_show_hostile_fields_as_text(
    hostile_log: tuple[str, str], command: list[str]
) -> None:
    url, _ = hostile_log
    code, output = invoke(*command, "--broker", url)
    assert code == 0, output
    _assert_safe(output)


@pytest.mark.parametrize("command", [c for c in COMMANDS if "--raw" not in c], ids=lambda c: " ".join(c)[:20])
def test_listing_commands_print_one_json_document_per_line(hostile_log: tuple[str, str], command: list[str]) -> None:
    url, _ = hostile_log
    code, output = invoke(*command, "--json", "--broker", url)
    assert code == 0, output
    _assert_safe(output)
    docs = [json.loads(line) for line in output.splitlines()]
    assert docs
    # The hostile text comes back intact from the JSON
    assert any(MARKUP + ESCAPES in text for text in _strings(docs))


def test_markup_in_fields_is_shown_literally(hostile_log: tuple[str, str]) -> None:
    url, letter_id = hostile_log
    for command in (["tail", HOSTILE_TOPIC], ["dlq", "show", letter_id], ["topics"]):
        code, output = invoke(*command, "--broker", url)
        assert code == 0, output
        assert "[/]" in output, output
        assert "\\x1b[2J" in output  # the escape sequence is visible as text


def test_dlq_show_prints_the_dead_letter_safely_and_as_json(hostile_log: tuple[str, str]) -> None:
    url, letter_id = hostile_log
    code, output = invoke("dlq", "show", letter_id, "--broker", url)
    assert code == 0, output
    _assert_safe(output)
    code, output = invoke("dlq", "show", letter_id, "--json", "--broker", url)
    assert code == 0, output
    (line,) = output.splitlines()
    doc = json.loads(line)
    assert doc["id"] == letter_id and doc["group"] == HOSTILE_GROUP and doc["error_message"] == HOSTILE
    assert doc["value"]["data"]["field"] == HOSTILE


def test_tail_json_gives_values_as_json_or_base64(hostile_log: tuple[str, str]) -> None:
    url, _ = hostile_log
    code, output = invoke("tail", HOSTILE_TOPIC, "--json", "--broker", url)
    assert code == 0, output
    docs = [json.loads(line) for line in output.splitlines()]
    assert [d["value"]["type"] for d in docs[:3]] == [f"type-{HOSTILE}"] * 3
    assert "value" not in docs[3] and docs[3]["value_base64"]
    assert docs[0]["topic"] == HOSTILE_TOPIC and docs[0]["key"] == f"key-{HOSTILE}"


def test_an_unknown_hostile_topic_is_an_error_shown_as_text(hostile_log: tuple[str, str]) -> None:
    url, _ = hostile_log
    code, output = invoke("tail", f"nope{MARKUP}{ESCAPES}", "--broker", url)
    assert code == 1
    _assert_safe(output)
    assert "unknown topic" in output and "[/]" in output


def test_tail_piped_into_a_program_is_valid_json_per_line(tmp_path: Path) -> None:
    # Given records far longer than any terminal is wide
    url = f"sqlite:///{tmp_path}/long.db"

    async def fill() -> None:
        broker = SqliteBroker.from_url(url)
        try:
            await broker.publish("t.long", [Record(codec.encode(_envelope(n)), "k") for n in range(5)])
        finally:
            await broker.close()

    asyncio.run(fill())

    # When tail --json and tail --raw write into a pipe, then every line is one JSON document
    for mode in ("--json", "--raw"):
        done = subprocess.run(
            [sys.executable, "-m", "choreograph", "tail", "t.long", mode, "--broker", url],
            capture_output=True,
            timeout=60,
            check=True,
        )
        lines = done.stdout.decode().splitlines()
        assert len(lines) == 5, done.stdout[:500]
        assert all(orjson.loads(line) for line in lines)


def test_flows_and_flow_show_draw_hostile_events_as_text(tmp_path: Path) -> None:
    # Given a shop log with an order placed by a hostile producer (source, id, correlation id)
    from choreograph.examples.shop.events import OrderPlaced

    url = f"sqlite:///{tmp_path}/flows.db"
    correlation = f"corr{MARKUP}{ESCAPES}\nforged"
    envelope = Envelope(
        id=f"id{MARKUP}{ESCAPES}\nforged",
        source=f"src{MARKUP}{ESCAPES}\nforged",
        type=OrderPlaced.event_type(),
        data={"order_id": "o1", "customer": "ada", "items": [{"sku": "s", "quantity": 1}], "total_cents": 9},
        time="2026-12-06T00:00:00Z",
        correlationid=correlation,
    )

    async def fill() -> None:
        broker = SqliteBroker.from_url(url)
        try:
            await broker.publish(OrderPlaced.topic(), [Record(codec.encode(envelope), "o1")])
        finally:
            await broker.close()

    asyncio.run(fill())
    app = "choreograph.examples.shop.app:app"

    def fresh_invoke(*args: str) -> tuple[int, str]:
        importlib.reload(importlib.import_module("choreograph.examples.shop.app"))  # an unused App per command
        return invoke(*args)

    # When the flows are shown, as tables and as JSON, then each exits 0 and shows the fields as text
    for command in (["flows", app], ["flow", "show", app, correlation]):
        code, output = fresh_invoke(*command, "--broker", url)
        assert code == 0, output
        _assert_safe(output)
        code, output = fresh_invoke(*command, "--json", "--broker", url)
        assert code == 0, output
        _assert_safe(output)
        (line,) = output.splitlines()
        json.loads(line)
    code, output = fresh_invoke("flow", "show", app, correlation, "--broker", url)
    assert f"instance corr{MARKUP}" in output and "src[/]" in output


def test_schema_list_json_is_one_document_per_type(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/schemas.db"
    code, output = invoke("schema", "register", "tests.unit.schema.shop:app", "--broker", url)
    assert code == 0, output
    code, output = invoke("schema", "list", "--json", "--broker", url)
    assert code == 0, output
    docs = [json.loads(line) for line in output.splitlines()]
    placed = next(doc for doc in docs if doc["type"] == "shop.order.placed")
    assert placed == {"type": "shop.order.placed", "versions": [1], "mode": "BACKWARD"}
