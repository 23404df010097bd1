"""Every command's ``--help`` as a user reads it: plain metavars, no RST markup, every broker scheme named."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import typer
from typer.testing import CliRunner

from choreograph.ops.cli import cli
from choreograph.ops.terminal import broker_schemes

runner = CliRunner()

# What typer 0.29 prints beside each parameter unless told otherwise.
PLACEHOLDER = re.compile(r"<(bool|str|int|float|path|list\[[a-z]+\])>")


def command_paths() -> Iterator[list[str]]:
    """Yield the path of every command and group below the root (``["dlq", "list"]``, ...)."""

    def walk(command: object, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(cli), [])


def help_of(path: list[str]) -> str:
    result = runner.invoke(cli, [*path, "--help"], env={"COLUMNS": "300", "TERMINAL_WIDTH": "300"})
    assert result.exit_code == 0, result.output
    return result.output


def test_the_tree_has_every_group() -> None:
    paths = [" ".join(p) for p in command_paths()]
    for expected in ("run", "publish", "demo", "tail", "dlq list", "schema check", "flow show", "observe", "backup"):
        assert expected in paths
    assert len(paths) > 30


def test_no_help_shows_type_placeholders_or_rst_backticks() -> None:
    for path in command_paths():
        text = help_of(path)
        assert not PLACEHOLDER.search(text), (path, PLACEHOLDER.search(text))
        assert "``" not in text, path
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert "{" not in usage, usage  # arguments as click writes them: TOPIC, [ID]...


def test_every_broker_option_names_every_backend_scheme() -> None:
    schemes = broker_schemes()
    assert {"memory://", "sqlite://", "nats://", "redis://", "kafka://"} <= set(schemes)
    with_broker = 0
    for path in command_paths():
        text = help_of(path)
        if "--broker" not in text:
            continue
        with_broker += 1
        flat = " ".join(text.split())  # rich wraps long help over several lines
        for scheme in ("nats://", "redis://", "kafka://"):
            assert scheme in flat, (path, scheme)
    assert with_broker > 15


def test_flags_take_no_value_and_options_show_what_they_take() -> None:
    text = " ".join(help_of(["run"]).split())
    assert "--stop-timeout SECONDS" in text
    assert "--metrics-port PORT" in text
    assert re.search(r"--fail-fast Stop every handler", text)
    assert "Usage: choreograph tail [OPTIONS] TOPIC" in help_of(["tail"])
    assert "Usage: choreograph dlq retry [OPTIONS] [ID]..." in help_of(["dlq", "retry"])
    text = " ".join(help_of(["dlq", "list"]).split())
    assert "--limit INTEGER" in text
    assert re.search(r"--json Print one JSON", text)


def test_the_cli_reference_names_every_command() -> None:
    reference = (Path(__file__).parents[3] / "docs" / "cli.md").read_text()
    for path in command_paths():
        if path:
            assert re.search(rf"`[^`\n]*\b{re.escape(path[-1])}\b[^`\n]*`", reference), path
