"""The runbooks' commands exist as written: every ``choreograph ...`` line names real commands and options."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import typer

from choreograph.ops.cli import cli

RUNBOOKS = Path(__file__).parents[3] / "docs" / "runbooks"


def commands_in(text: str) -> list[str]:
    """Every line of a sh code block that runs choreograph (comments stripped)."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("choreograph "):
                found.append(line)
    return found


def test_every_runbook_command_names_real_commands_and_options() -> None:
    root = typer.main.get_command(cli)
    checked = 0
    for path in sorted(RUNBOOKS.glob("*.md")):
        for line in commands_in(path.read_text()):
            words = shlex.split(line.replace("$APP", "APP"))[1:]
            command: Any = root  # typer vendors its own click: groups are told apart by their commands
            while hasattr(command, "commands") and words and words[0] in command.commands:
                command = command.commands[words.pop(0)]
            assert not hasattr(command, "commands"), f"{path.name}: {line!r} names no command"
            options = {name for param in command.params for name in getattr(param, "opts", [])}
            for word in words:
                if word.startswith("-"):
                    assert word.split("=", 1)[0] in options, f"{path.name}: {line!r}: no option {word}"
            checked += 1
    assert checked >= 30
