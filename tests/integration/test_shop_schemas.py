"""The shop example as a schema contract: register, then check next versions like CI would."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from typer.testing import CliRunner

from choreograph.ops.cli import cli

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_shop_schemas_register_and_next_versions_are_checked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shop.db"
    result = runner.invoke(cli, ["schema", "register", "choreograph.examples.shop.app:app", "--broker", url])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(cli, ["schema", "list", "--broker", url])
    assert "shop.order.placed" in listed.output and "shop.payment.declined" in listed.output

    ok = runner.invoke(cli, ["schema", "check", "tests.integration.shop_variants:compatible", "--broker", url])
    assert ok.exit_code == 0, ok.output

    bad = runner.invoke(cli, ["schema", "check", "tests.integration.shop_variants:incompatible", "--broker", url])
    assert bad.exit_code == 1, bad.output
    assert "shop.order.placed" in bad.output
    assert "total_cents" in bad.output


def test_shop_asyncapi_document_validates(tmp_path: Path) -> None:
    target = tmp_path / "asyncapi.json"
    result = runner.invoke(cli, ["asyncapi", "choreograph.examples.shop.app:app", "-o", str(target)])
    assert result.exit_code == 0, result.output
    document = json.loads(target.read_text())
    schema = json.loads((ROOT / "tests/data/asyncapi-3.0.0.schema.json").read_text())
    jsonschema.Draft7Validator(schema).validate(document)
    assert len(document["channels"]) == 10  # one per event topic of the shop
    assert "shop.order.placed.v1" in document["components"]["messages"]
    assert "inventory.receive.reserve-stock" in document["operations"]
