"""``choreograph publish`` without ``--app``: the data is checked against the schema registered for its type."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from choreograph import App, Context, Event
from choreograph.ops.cli import cli

runner = CliRunner()
SHOP = "tests.unit.schema.shop:app"
VALID = {"order_id": "o1", "customer_id": "c1", "lines": [{"sku": "s1", "quantity": 1}], "total": "9.90"}


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("CHOREOGRAPH_BROKER", raising=False)
    url = f"sqlite:///{tmp_path}/publish.db"
    result = runner.invoke(cli, ["schema", "register", SHOP, "--broker", url])
    assert result.exit_code == 0, result.output
    return url


def publish(url: str, event_type: str, data: object, *extra: str) -> tuple[int, str, str]:
    result = runner.invoke(cli, ["publish", event_type, json.dumps(data), "--broker", url, *extra])
    return result.exit_code, result.stdout, result.stderr


def records(url: str, topic: str) -> int:
    result = runner.invoke(cli, ["topics", "--json", "--broker", url])
    assert result.exit_code == 0, result.output
    return sum(doc["records"] for doc in map(json.loads, result.stdout.splitlines()) if doc["topic"] == topic)


def test_a_valid_payload_is_published_without_a_warning(url: str) -> None:
    code, out, err = publish(url, "shop.order.placed", VALID)
    assert code == 0, err
    assert len(out.strip()) == 36
    assert err == ""
    assert records(url, "shop.order.placed") == 1


def test_an_invalid_payload_is_refused_naming_the_field(url: str) -> None:
    code, out, err = publish(
        url, "shop.order.placed", {**VALID, "customer_id": 42, "lines": [{"sku": "s", "quantity": 0}]}
    )
    assert code == 2, err
    assert out == ""
    assert "registered schema of shop.order.placed v1" in err
    assert "customer_id" in err and "lines[0].quantity" in err
    assert records(url, "shop.order.placed") == 0


def test_a_missing_required_field_is_named(url: str) -> None:
    data = {k: v for k, v in VALID.items() if k != "customer_id"}
    code, _, err = publish(url, "shop.order.placed", data)
    assert code == 2
    assert "'customer_id' is a required property" in err


def test_an_unregistered_version_of_a_registered_type_is_refused(url: str) -> None:
    code, _, err = publish(url, "shop.order.placed", VALID, "--version", "3")
    assert code == 2
    assert "no registered version 3 (registered: v1)" in err


def test_a_type_without_a_schema_is_published_with_a_warning(url: str) -> None:
    code, out, err = publish(url, "t.unregistered", {"anything": True})
    assert code == 0, err
    assert len(out.strip()) == 36
    assert "warning" in err and "no schema registered for t.unregistered" in err
    assert records(url, "t.unregistered") == 1


def test_a_broker_without_a_registry_warns_and_publishes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    code, _, err = publish(url, "shop.order.placed", {"not": "checked"})
    assert code == 0, err
    assert "no schema registry" in err
    assert records(url, "shop.order.placed") == 1


class Ping(Event, type="t.publish.ping"):
    n: int


app = App("publish-test", broker="memory://")


@app.service("svc").on(Ping)
async def handle(event: Ping, ctx: Context) -> None:
    """Never runs: the App only lends its event model to --app."""


def test_with_app_the_apps_model_validates(url: str) -> None:
    spec = f"{__name__}:app"
    code, _, err = publish(url, "t.publish.ping", {"n": "many"}, "--app", spec)
    assert code == 2
    assert "data does not match t.publish.ping" in err
    code, _, err = publish(url, "t.publish.ping", {"n": 3}, "--app", spec)
    assert code == 0, err
    assert err == ""  # the App's model validated it: no registry lookup, no warning
