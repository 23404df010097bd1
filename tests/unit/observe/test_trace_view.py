"""Trace view: one correlation rebuilt from the log, as a causation tree with dead letters."""

from __future__ import annotations

import pytest
from rich.console import Console

from choreograph import App, Context, Event, NotFound, RetryPolicy
from choreograph.brokers.memory import MemoryBroker
from choreograph.observe.trace_view import collect_trace, render_trace, steps_in_order, trace_rows
from tests.conftest import wait_until


class Started(Event, type="tv.started"):
    n: int


class Branched(Event, type="tv.branched"):
    n: int


class Doomed(Event, type="tv.doomed"):
    n: int


def build_app() -> App:
    app = App("origin", broker=MemoryBroker())

    @app.service("splitter").on(Started)
    async def split(event: Started, ctx: Context) -> list[Event]:
        return [Branched(n=event.n), Doomed(n=event.n)]

    @app.service("sink").on(Doomed, retry=RetryPolicy(immediate=2, delayed=0))
    async def fail(event: Doomed, ctx: Context) -> None:
        raise RuntimeError("sink is down")

    return app


def render(app_trace: object) -> str:
    console = Console(record=True, width=220)
    console.print(app_trace)
    return console.export_text()


async def test_a_correlation_becomes_a_causation_tree_with_its_dead_letters() -> None:
    # Given one event that fans out into two, one of which dead-letters after 3 attempts, and an unrelated event
    app = build_app()
    await app.start()
    try:
        first = await app.publish(Started(n=1))
        await app.publish(Started(n=2))
        await wait_until(lambda: app.stats()["sink.fail"].dead_letters == 2, 10, "both doomed events dead-lettered")
    finally:
        await app.stop()
    # When the first correlation's trace is collected
    trace = await collect_trace(app.broker, first.id)
    # Then it holds exactly its three events, the fan-out under the root
    steps = steps_in_order(trace)
    assert steps[0].envelope.type == "tv.started"
    assert sorted(s.envelope.type for s in steps[1:]) == ["tv.branched", "tv.doomed"]
    assert {s.envelope.correlationid for s in steps} == {first.id}
    (root,) = trace.roots
    assert len(root.children) == 2
    # and the dead letter hangs under the doomed event, with its attempts
    doomed = next(s for s in steps if s.envelope.type == "tv.doomed")
    (letter,) = doomed.dead_letters
    assert letter.attempts == 3
    assert letter.group == "sink.fail"
    # and the waterfall shows services, the dead letter and its attempts
    text = render(render_trace(trace))
    assert "splitter" in text and "origin" in text
    assert "dead letter (error)" in text
    assert "3 attempt(s)" in text
    assert "RuntimeError: sink is down" in text


async def test_an_unknown_correlation_is_not_found() -> None:
    app = build_app()
    await app.publish(Started(n=1))
    with pytest.raises(NotFound):
        await collect_trace(app.broker, "01900000-0000-7000-8000-000000000000")


HOSTILE = "[/][bold red]x\x1b[2J\x1b]0;t\x07\u202e\nforged"


async def test_hostile_fields_are_drawn_as_text_and_listed_as_json_rows() -> None:
    # Given a correlation whose event source and type, and whose dead letter's error, are hostile
    app = App(f"origin{HOSTILE}", broker=MemoryBroker())

    @app.service("sink").on(Started, retry=RetryPolicy(immediate=0, delayed=0))
    async def fail(event: Started, ctx: Context) -> None:
        raise RuntimeError(HOSTILE)

    await app.start()
    try:
        first = await app.publish(Started(n=1))
        await wait_until(lambda: app.stats()["sink.fail"].dead_letters == 1, 10, "the event dead-lettered")
    finally:
        await app.stop()
    trace = await collect_trace(app.broker, first.id)

    # When it is drawn, then markup shows literally and no control character reaches the terminal
    console = Console(record=True, width=400)
    console.print(render_trace(trace))
    text = console.export_text(styles=False)
    assert "[/][bold red]x" in text
    assert "\\x1b[2J" in text and "\\u202e" in text
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
    assert not any(line.lstrip("│ ").startswith("forged") for line in text.splitlines())

    # And its rows keep the fields intact for JSON
    rows = trace_rows(trace)
    assert [row["kind"] for row in rows] == ["event", "dead_letter"]
    assert rows[0]["source"] == f"origin{HOSTILE}"
    assert HOSTILE in rows[1]["error_message"]
