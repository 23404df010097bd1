"""Scenarios for the broker-kept stores (schema registry, observer state), run by every backend's tests.

:func:`schema_race` is the check of issue 20: two OS processes register, at
the same moment (after a shared barrier), two versions of one type that
cannot both stand — v2 adding ``note: str`` and v3 adding ``note: int``
(v3 after v2 changes the field's type; v2 after v3 is out of order). Exactly
one registration succeeds, the other is refused, and both processes then
read the same history. Each round uses a fresh type; the processes keep
their connection across rounds.
"""

from __future__ import annotations

import importlib
import multiprocessing
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import typer
from typer.testing import CliRunner

from choreograph.core.event import Event
from choreograph.runtime.schema_store import close_schema_store, open_schema_store
from choreograph.schema import SchemaRegistry, derive_schema
from choreograph.schema.derive import TYPE_KEY
from choreograph.schema.errors import IncompatibleSchema, SchemaConflict
from choreograph.schema.kv_store import KeyValueSchemaStore


class ItemV1(Event, type="race.item", version=1):
    item_id: str


class ItemV2(Event, type="race.item", version=2):
    item_id: str
    note: str = ""


class ItemV3(Event, type="race.item", version=3):
    item_id: str
    note: int = 0


def schema_for(event: type[Event], event_type: str) -> dict[str, Any]:
    """The derived schema of ``event`` under another type name (one per round)."""
    return {**derive_schema(event), TYPE_KEY: event_type}


@dataclass(frozen=True)
class RaceResult:
    """What the two processes reported: per round, each one's outcome and the history it read afterwards."""

    outcomes: list[tuple[str, str]]
    histories: list[tuple[list[tuple[int, str]], list[tuple[int, str]]]]
    conflicts: int
    """Compare-and-set writes lost to the other process, summed (0 when the store is not a key-value one)."""


def _contender(url: str, which: int, types: list[str], barrier: Any, results: Any) -> None:
    store = open_schema_store(url)
    try:
        registry = SchemaRegistry(store)
        report: list[tuple[str, list[tuple[int, str]]]] = []
        for event_type in types:
            registry.versions(event_type)  # connected and warm before the start line
            barrier.wait(60)
            try:
                registry.register(schema_for(ItemV2 if which == 0 else ItemV3, event_type))
                outcome = "registered"
            except (IncompatibleSchema, SchemaConflict) as exc:
                outcome = type(exc).__name__
            barrier.wait(60)  # both are done: read what they agreed on
            report.append((outcome, [(r.version, r.fingerprint) for r in store.subject(event_type).records]))
        conflicts = store.conflicts if isinstance(store, KeyValueSchemaStore) else 0
        results.put((which, report, conflicts))
    finally:
        close_schema_store(store)


def schema_race(url: str, rounds: int = 5) -> RaceResult:
    """Run :func:`_contender` in two spawned processes against ``url`` for ``rounds`` fresh types."""
    types = [f"race.item{uuid.uuid4().hex[:10]}" for _ in range(rounds)]
    setup = open_schema_store(url)
    try:
        for event_type in types:
            SchemaRegistry(setup).register(schema_for(ItemV1, event_type))
    finally:
        close_schema_store(setup)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_contender, args=(url, which, types, barrier, results)) for which in (0, 1)]
    for proc in procs:
        proc.start()
    try:
        reports = dict(
            (which, (report, conflicts)) for which, report, conflicts in (results.get(timeout=180) for _ in procs)
        )
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    (a, conflicts_a), (b, conflicts_b) = reports[0], reports[1]
    return RaceResult(
        outcomes=[(a[i][0], b[i][0]) for i in range(rounds)],
        histories=[(a[i][1], b[i][1]) for i in range(rounds)],
        conflicts=conflicts_a + conflicts_b,
    )


def assert_one_history(result: RaceResult) -> None:
    """Each round: exactly one registration won, the other was refused, both read the same 2-version history."""
    for (first, second), (seen_a, seen_b) in zip(result.outcomes, result.histories, strict=True):
        assert sorted([first, second]) in (
            ["IncompatibleSchema", "registered"],
            ["SchemaConflict", "registered"],
        ), (first, second)
        assert seen_a == seen_b
        assert len(seen_a) == 2 and seen_a[0][0] == 1
        winner = ItemV2 if first == "registered" else ItemV3
        assert seen_a[1][0] == winner.event_version()


APP = "choreograph.examples.shop.app:app"


def schema_and_flows_commands(url: str, orders: int = 6) -> dict[str, Any]:
    """Run the shop with an observer on ``url`` (state in the broker), then ``schema list`` and ``flows --state``."""
    import asyncio

    from choreograph.ops.flows_cli import register as register_flows
    from choreograph.ops.schema_cli import schema_app
    from tests.unit.observe.test_flows_cli import run_shop

    ids = asyncio.run(run_shop(url, orders))
    importlib.reload(importlib.import_module("choreograph.examples.shop.app"))  # a fresh, unused App for the CLI
    runner = CliRunner()
    listed = runner.invoke(schema_app, ["list", "--broker", url])
    checked = runner.invoke(schema_app, ["check", APP, "--broker", url])
    cli = typer.Typer()
    register_flows(cli)
    stored = runner.invoke(cli, ["flows", APP, "--broker", url, "--json", "--state"])
    importlib.reload(importlib.import_module("choreograph.examples.shop.app"))
    shown = runner.invoke(cli, ["flow", "show", APP, ids[0], "--broker", url, "--json", "--state"])
    for result in (listed, checked, stored, shown):
        assert result.exit_code == 0, result.output
    return {
        "list": listed.output,
        "flows": orjson.loads(stored.output),
        "show": orjson.loads(shown.output),
        "orders": orders,
    }


def assert_commands_read_the_broker(answers: dict[str, Any]) -> None:
    """``schema list`` names the shop's types; the stored flow state counts every order, final."""
    assert "shop.order.placed" in answers["list"]
    order = answers["flows"]["order"]
    assert order["started"] == answers["orders"]
    assert order["completed"] + order["failed"] == answers["orders"]
    (instance,) = answers["show"]["instances"]
    assert instance["status"] in {"completed", "failed"}


def _sample_instances() -> list[Any]:
    import math

    from choreograph.observe.flows import Instance

    found = []
    for n, (cid, wake, done) in enumerate(
        [
            ("0190a1b2-0000-7000-8000-000000000001", None, 10.0),
            ("0190a1b2-0000-7000-8000-000000000002", -math.inf, None),
            ("id with spaces/and é", 5.0, None),  # stored under a hash
            ("k" * 250, 50.0, None),  # too long for a key: hashed
            ("plain-id", 5.0, 40.0),
        ]
    ):
        instance = Instance("order", cid, notices={"final": n % 2 == 0})
        instance.wake_at, instance.finished_at = wake, done
        found.append(instance)
    return found


def flow_store_agrees_with_reference(url: str) -> None:
    """The broker's KeyValueFlowStore answers load/fetch/due/forget as MemoryFlowStore does, on a fresh namespace."""
    import asyncio

    from choreograph.brokers import open_broker
    from choreograph.core.kv import KeyValueProvider
    from choreograph.observe.flows import MemoryFlowStore
    from choreograph.observe.flows.kv_store import KeyValueFlowStore
    from tests.unit.observe.test_kv_flow_store import _answers

    async def on_broker() -> list[object]:
        broker = open_broker(url)
        assert isinstance(broker, KeyValueProvider)
        store = KeyValueFlowStore(broker.key_value(f"flows_{uuid.uuid4().hex[:8]}"), on_close=broker.close)
        return await _answers(store, _sample_instances(), ("order", 20.0, "0", 2))

    expected = asyncio.run(_answers(MemoryFlowStore(), _sample_instances(), ("order", 20.0, "0", 2)))
    assert asyncio.run(on_broker()) == expected
