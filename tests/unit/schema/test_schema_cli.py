"""``choreograph schema ...``, catalog and asyncapi commands, through Typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from choreograph.core.errors import ConfigurationError
from choreograph.ops.schema_cli import asyncapi_command, catalog_command, load_topology, schema_app
from tests.unit.schema import shop

SHOP = "tests.unit.schema.shop:app"
COMPATIBLE = "tests.unit.schema.apps:compatible"
INCOMPATIBLE = "tests.unit.schema.apps:incompatible"

runner = CliRunner()


@pytest.fixture
def broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("CHOREOGRAPH_BROKER", raising=False)
    return f"sqlite:///{tmp_path / 'choreograph.db'}"


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(schema_app, list(args))
    return result.exit_code, result.output


def test_register_then_list_and_show(broker: str) -> None:
    code, out = run("register", SHOP, "--broker", broker)
    assert code == 0, out
    assert "registered: shop.order.placed v1" in out
    code, out = run("list", "--broker", broker)
    assert code == 0
    assert "shop.order.placed" in out and "v1" in out and "BACKWARD" in out
    code, out = run("show", "shop.order.placed", "--broker", broker)
    assert code == 0
    assert json.loads(out)["x-choreograph-type"] == "shop.order.placed"


def test_register_again_is_unchanged(broker: str) -> None:
    run("register", SHOP, "--broker", broker)
    code, out = run("register", SHOP, "--broker", broker)
    assert code == 0
    assert "unchanged: shop.order.placed v1" in out


def test_check_passes_for_a_compatible_change(broker: str) -> None:
    run("register", SHOP, "--broker", broker)
    code, out = run("check", COMPATIBLE, "--broker", broker)
    assert code == 0, out
    assert "shop.order.placed v2: compatible with v1 under BACKWARD" in out
    assert "ok: 6 event schema(s) compatible" in out


def test_check_fails_with_a_diff_for_an_incompatible_change(broker: str) -> None:
    # Given the registry holds v1
    run("register", SHOP, "--broker", broker)
    # When the code renames a required field in v2
    code, out = run("check", INCOMPATIBLE, "--broker", broker)
    # Then the contract test fails and explains each finding as a diff
    assert code == 1
    assert "shop.order.placed v2: INCOMPATIBLE with v1 under BACKWARD" in out
    assert "@@ customer @@ required-field-added" in out
    assert "@@ customer_id @@ required-field-removed" in out
    assert "+ v2: required string" in out


def test_check_can_require_every_version_to_be_registered(broker: str) -> None:
    run("register", SHOP, "--broker", broker)
    assert run("check", SHOP, "--require-registered", "--broker", broker)[0] == 0
    code, out = run("check", COMPATIBLE, "--require-registered", "--broker", broker)
    assert code == 1
    assert "shop.order.placed v2: compatible with v1 under BACKWARD; NOT REGISTERED" in out


def test_register_refuses_incompatible_and_registers_nothing(broker: str) -> None:
    run("register", SHOP, "--broker", broker)
    code, out = run("register", INCOMPATIBLE, "--broker", broker)
    assert code == 1
    assert "nothing registered" in out
    code, out = run("show", "shop.order.placed", "--version", "2", "--broker", broker)
    assert code == 2
    assert "registered: v1" in out


def test_mode_then_check_uses_it(broker: str) -> None:
    run("register", SHOP, "--broker", broker)
    code, out = run("mode", "shop.order.placed", "full", "--broker", broker)
    assert (code, out.strip()) == (0, "shop.order.placed: FULL")
    code, out = run("check", COMPATIBLE, "--broker", broker)
    assert code == 1
    assert "@@ note @@ field-added (forward" in out


def test_diff_between_registered_versions_and_against_code(tmp_path: Path) -> None:
    directory = str(tmp_path / "schemas")
    run("register", SHOP, "--dir", directory)
    run("register", COMPATIBLE, "--dir", directory)
    code, out = run("diff", "shop.order.placed", "--dir", directory)
    assert code == 0
    assert "--- shop.order.placed v1" in out and "+++ shop.order.placed v2" in out
    assert "@@ note @@ field-added (breaks forward)" in out
    code, out = run("diff", "shop.order.placed", "1", "--app", INCOMPATIBLE, "--dir", directory)
    assert code == 0
    assert "@@ customer_id @@ required-field-removed (breaks backward and forward)" in out


def test_directory_store_and_sync(broker: str, tmp_path: Path) -> None:
    run("register", SHOP, "--broker", broker)
    code, out = run("sync", "--broker", broker, "--dir", str(tmp_path / "schemas"))
    assert code == 0, out
    assert (tmp_path / "schemas" / "shop.order.placed" / "v1.json").exists()
    code, out = run("check", INCOMPATIBLE, "--dir", str(tmp_path / "schemas"))
    assert code == 1


def test_broker_defaults_to_the_environment(broker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHOREOGRAPH_BROKER", broker)
    assert run("register", SHOP)[0] == 0
    assert "shop.order.placed" in run("list")[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "tests.unit.schema.nowhere:app"], "cannot import module"),
        (["check", "tests.unit.schema.shop:nope"], "has no attribute 'nope'"),
        (["check", "tests.unit.schema.apps:not_an_app"], "expected a choreograph App"),
        # Every server backend keeps a registry now (issue 20); memory:// has nothing to share between processes.
        (["check", SHOP, "--broker", "memory://"], "holds no schema registry"),
        (["show", "shop.nothing"], "no schema registered for shop.nothing"),
        (["mode", "shop.order.placed", "sideways"], "unknown compatibility mode"),
        (["check", SHOP, "--dir", "/nonexistent/schemas"], "does not exist"),
    ],
)
def test_usage_errors_exit_2(broker: str, args: list[str], message: str) -> None:
    run("register", SHOP, "--broker", broker)
    if not any(a.startswith("--") for a in args):
        args = [*args, "--broker", broker]
    code, out = run(*args)
    assert code == 2, out
    assert message in out


def test_read_commands_do_not_create_a_database(tmp_path: Path) -> None:
    code, out = run("list", "--broker", f"sqlite:///{tmp_path / 'missing.db'}")
    assert code == 2
    assert "no broker database" in out
    assert not (tmp_path / "missing.db").exists()


def test_load_topology_accepts_an_app_or_a_topology() -> None:
    assert load_topology(SHOP) == shop.topology()
    assert load_topology(COMPATIBLE).services[0].publishes[0].event_version() == 2
    with pytest.raises(ConfigurationError, match="not MODULE:APP"):
        load_topology(":app")


def _command(function: object) -> typer.Typer:
    app = typer.Typer()
    app.command()(function)  # type: ignore[arg-type]
    app.command("noop")(lambda: None)
    return app


def test_catalog_and_asyncapi_commands(tmp_path: Path, broker: str) -> None:
    run("register", SHOP, "--broker", broker)
    result = runner.invoke(_command(catalog_command), ["catalog-command", SHOP, "--broker", broker])
    assert result.exit_code == 0, result.output
    assert "# Event catalog: shop" in result.output
    assert "- **Registered versions:** v1" in result.output
    target = tmp_path / "docs" / "asyncapi.json"
    result = runner.invoke(_command(asyncapi_command), ["asyncapi-command", SHOP, "--output", str(target)])
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text())["asyncapi"] == "3.0.0"
