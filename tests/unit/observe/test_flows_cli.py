"""``choreograph flows`` and ``choreograph flow show`` on a SQLite log written by the shop."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from choreograph.examples.shop.events import LineItem, OrderPlaced
from choreograph.examples.shop.flows import flows
from choreograph.observe.flows import Observer, ObserverConfig
from choreograph.ops.flows_cli import register
from tests.conftest import wait_until

cli = typer.Typer()
register(cli)
runner = CliRunner()
APP = "choreograph.examples.shop.app:app"


async def run_shop(url: str, orders: int) -> list[str]:
    """Run the shop and an observer until every order is final; return the correlation ids."""
    app = importlib.reload(importlib.import_module("choreograph.examples.shop.app")).app
    app.configure_broker(url)
    observer = Observer(app, flows, config=ObserverConfig(fetch_timeout=0.02, check_interval=0.02))
    await app.start()
    await observer.start()
    envelopes = await app.publish_many(
        (OrderPlaced(order_id=f"o{i}", customer="ada", items=[LineItem(sku="s", quantity=1)], total_cents=9), None)
        for i in range(orders)
    )
    await wait_until(lambda: (f := observer.figures()["order"]).completed + f.failed == orders, 20, "the orders")
    await observer.close()
    await app.close()
    return [env.id for env in envelopes]


@pytest.fixture
def shop_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str]]:
    monkeypatch.setenv("SHOP_DECLINE_RATE", "0.3")
    monkeypatch.setenv("SHOP_STOCKOUT_RATE", "0")
    monkeypatch.setenv("SHOP_FAIL_RATE", "0")
    url = f"sqlite:///{tmp_path}/shop.db"
    ids = asyncio.run(run_shop(url, 20))
    importlib.reload(importlib.import_module("choreograph.examples.shop.app"))  # a fresh, unused App for the CLI
    return url, ids


def test_flows_prints_a_table_per_flow(shop_log: tuple[str, list[str]]) -> None:
    url, _ = shop_log
    result = runner.invoke(cli, ["flows", APP, "--broker", url])
    assert result.exit_code == 0, result.output
    assert "Flow order" in result.output
    assert "time to finality" in result.output


def test_flows_json_replayed_from_the_log_matches_the_observer_state(shop_log: tuple[str, list[str]]) -> None:
    url, _ = shop_log
    replayed = runner.invoke(cli, ["flows", APP, "--broker", url, "--json"])
    importlib.reload(importlib.import_module("choreograph.examples.shop.app"))
    stored = runner.invoke(cli, ["flows", APP, "--broker", url, "--json", "--state"])
    assert replayed.exit_code == 0 and stored.exit_code == 0, replayed.output + stored.output
    a, b = orjson.loads(replayed.output)["order"], orjson.loads(stored.output)["order"]
    assert a["started"] == b["started"] == 20
    assert a["completed"] + a["failed"] == 20
    assert (a["completed"], a["failed"], a["compensated"]) == (b["completed"], b["failed"], b["compensated"])


def test_flow_show_prints_the_timeline_and_state(shop_log: tuple[str, list[str]]) -> None:
    url, ids = shop_log
    result = runner.invoke(cli, ["flow", "show", APP, ids[0], "--broker", url, "--json"])
    assert result.exit_code == 0, result.output
    (doc,) = orjson.loads(result.output)["instances"]
    assert doc["timeline"][0]["type"] == "shop.order.placed"
    assert doc["status"] in {"completed", "failed"}
    assert doc["waiting_for"] == []
    assert all(row["cause"] for row in doc["timeline"][1:])


def test_flow_show_of_an_unknown_instance_exits_1(shop_log: tuple[str, list[str]]) -> None:
    url, _ = shop_log
    result = runner.invoke(cli, ["flow", "show", APP, "nope", "--broker", url])
    assert result.exit_code == 1


def test_missing_flows_declaration_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(
        cli, ["flows", APP, "--broker", f"sqlite:///{tmp_path}/x.db", "--flows", "choreograph.examples.shop.events"]
    )
    assert result.exit_code == 2


def test_flow_show_state_answers_for_a_finished_instance_from_the_store(shop_log: tuple[str, list[str]]) -> None:
    # Given an observer that ran the orders to the end (its finished instances left its memory)
    url, ids = shop_log
    # When one instance is shown from the stored state and from the log
    stored = runner.invoke(cli, ["flow", "show", APP, ids[3], "--broker", url, "--json", "--state"])
    importlib.reload(importlib.import_module("choreograph.examples.shop.app"))
    replayed = runner.invoke(cli, ["flow", "show", APP, ids[3], "--broker", url, "--json"])
    # Then the store has it, as the log tells it
    assert stored.exit_code == 0 and replayed.exit_code == 0, stored.output + replayed.output
    (from_store,) = orjson.loads(stored.output)["instances"]
    (from_log,) = orjson.loads(replayed.output)["instances"]
    assert from_store["status"] == from_log["status"] in {"completed", "failed"}
    assert [row["id"] for row in from_store["timeline"]] == [row["id"] for row in from_log["timeline"]]
