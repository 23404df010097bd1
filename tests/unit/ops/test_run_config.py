"""``choreograph run`` options from the command line, CHOREOGRAPH_* variables and a --config TOML file.

Precedence, highest first: command line, environment, config file, default.
Values are resolved by the real ``run`` command's parser (``make_context``
parses and converts every option, config file included, without starting
workers); errors go through the real command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from choreograph.ops.cli import cli

runner = CliRunner()

RUN_ENV = (
    "CHOREOGRAPH_APP",
    "CHOREOGRAPH_SERVICE",
    "CHOREOGRAPH_BROKER",
    "CHOREOGRAPH_STOP_TIMEOUT",
    "CHOREOGRAPH_STATS_FILE",
    "CHOREOGRAPH_METRICS_PORT",
    "CHOREOGRAPH_METRICS_HOST",
    "CHOREOGRAPH_LOG_JSON",
    "CHOREOGRAPH_LOG_LEVEL",
    "CHOREOGRAPH_FAIL_FAST",
    "CHOREOGRAPH_CONFIG",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in RUN_ENV:
        monkeypatch.delenv(name, raising=False)


def resolved(*args: str) -> dict[str, Any]:
    """Return the values ``run`` would run with, given ``args`` and the current environment."""
    command = typer.main.get_command(cli).commands["run"]  # type: ignore[attr-defined]
    with command.make_context("run", list(args)) as ctx:
        return dict(ctx.params)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "choreograph.toml"
    path.write_text(text)
    return path


def test_defaults_without_any_source() -> None:
    params = resolved("pkg.mod:app")
    assert params["stop_timeout"] == 30.0
    assert params["metrics_host"] == "127.0.0.1"
    assert params["log_level"] == "INFO"
    assert params["fail_fast"] is False
    assert params["service"] in (None, [], ())


def test_every_option_has_its_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = {
        "CHOREOGRAPH_APP": "pkg.mod:app",
        "CHOREOGRAPH_SERVICE": "orders payments",
        "CHOREOGRAPH_BROKER": f"sqlite:///{tmp_path}/env.db",
        "CHOREOGRAPH_STOP_TIMEOUT": "7.5",
        "CHOREOGRAPH_STATS_FILE": str(tmp_path / "stats.json"),
        "CHOREOGRAPH_METRICS_PORT": "9464",
        "CHOREOGRAPH_METRICS_HOST": "0.0.0.0",
        "CHOREOGRAPH_LOG_JSON": "1",
        "CHOREOGRAPH_LOG_LEVEL": "DEBUG",
        "CHOREOGRAPH_FAIL_FAST": "true",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    params = resolved()
    assert params == {
        "app_spec": "pkg.mod:app",
        "service": ["orders", "payments"],
        "broker": f"sqlite:///{tmp_path}/env.db",
        "stop_timeout": 7.5,
        "stats_file": tmp_path / "stats.json",
        "metrics_port": 9464,
        "metrics_host": "0.0.0.0",
        "log_json": True,
        "log_level": "DEBUG",
        "fail_fast": True,
        "config": None,
    }


def test_config_file_sets_options_by_name(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        'app = "pkg.mod:app"\nservice = "orders"\nstop_timeout = 12\n"metrics-port" = 9000\n'
        'log_json = true\nfail_fast = true\nbroker = "sqlite:///file.db"\n',
    )
    params = resolved("--config", str(config))
    assert params["app_spec"] == "pkg.mod:app"
    assert params["service"] == ["orders"]  # one name, not its letters
    assert params["stop_timeout"] == 12.0
    assert params["metrics_port"] == 9000
    assert params["log_json"] is True
    assert params["fail_fast"] is True
    assert params["broker"] == "sqlite:///file.db"


def test_command_line_beats_environment_beats_file_beats_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = write(tmp_path, 'stop_timeout = 1\nlog_level = "ERROR"\nmetrics_host = "10.0.0.1"\n')
    monkeypatch.setenv("CHOREOGRAPH_CONFIG", str(config))  # the file itself can come from the environment
    monkeypatch.setenv("CHOREOGRAPH_STOP_TIMEOUT", "2")
    monkeypatch.setenv("CHOREOGRAPH_LOG_LEVEL", "WARNING")
    params = resolved("pkg.mod:app", "--stop-timeout", "3")
    assert params["stop_timeout"] == 3.0  # command line over environment and file
    assert params["log_level"] == "WARNING"  # environment over file
    assert params["metrics_host"] == "10.0.0.1"  # file over default
    assert params["metrics_port"] is None  # default where nothing sets it


def test_unknown_key_is_an_error_naming_it(tmp_path: Path) -> None:
    config = write(tmp_path, "stop_timeout = 5\nstop_timout = 6\n")
    result = runner.invoke(cli, ["run", "pkg.mod:app", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "unknown key 'stop_timout'" in result.output
    assert "stop_timeout" in result.output.split("known keys:")[1]  # the known names help fix the typo


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stop_timeout = [", "not valid TOML"),
        ('stop_timeout = "soon"', "stop_timeout = 'soon': Input should be a valid number"),
    ],
)
def test_bad_file_or_value_is_a_usage_error(tmp_path: Path, text: str, message: str) -> None:
    result = runner.invoke(cli, ["run", "pkg.mod:app", "--config", str(write(tmp_path, text))])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(cli, ["run", "pkg.mod:app", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2, result.output
    assert "cannot read config file" in result.output


def test_the_app_from_the_config_file_is_the_one_loaded(tmp_path: Path) -> None:
    config = write(tmp_path, 'app = "no_such_module_from_config:app"\n')
    result = runner.invoke(cli, ["run", "--config", str(config), "--broker", f"sqlite:///{tmp_path}/a.db"])
    assert result.exit_code == 2, result.output
    assert "cannot import module 'no_such_module_from_config'" in result.output


def test_no_app_anywhere_says_where_to_name_it(tmp_path: Path) -> None:
    result = runner.invoke(cli, ["run", "--broker", f"sqlite:///{tmp_path}/a.db"])
    assert result.exit_code == 2, result.output
    assert "CHOREOGRAPH_APP" in result.output and "--config" in result.output
