"""Start a group at earliest through the CLI and read the count its audit record gives (for every backend's tests)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from choreograph.ops.cli import cli
from tests.unit.replay.test_replay_cli import Paid, fill


def audited_group_start(url: str) -> list[int]:
    """Publish 40 events (``fill``), start group ``audited`` at earliest; return the counts of the replay records."""
    fill(url)
    runner = CliRunner()
    started = runner.invoke(cli, ["replay", "group", "audited", Paid.topic(), "--from", "earliest", "-b", url])
    assert started.exit_code == 0, started.output
    trail = runner.invoke(cli, ["audit", "--json", "--action", "replay", "-b", url])
    assert trail.exit_code == 0, trail.output
    return [json.loads(line)["count"] for line in trail.output.splitlines()]
