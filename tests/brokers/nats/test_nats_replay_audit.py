"""The audit trail counts the records a group reset puts back, not stream-sequence spans (NATS shares them)."""

from __future__ import annotations

import json
import uuid

from typer.testing import CliRunner

from choreograph.ops.cli import cli
from tests.unit.replay.test_replay_cli import Paid, fill

from .server import NatsServer


def test_a_group_started_at_earliest_is_audited_with_the_records_it_will_read(nats_server: NatsServer) -> None:
    # Given 40 events over 8 partitions of one stream (their offsets are stream sequences, not dense per partition)
    url = f"{nats_server.url}?prefix=r{uuid.uuid4().hex[:8]}&partitions=8"
    fill(url)
    runner = CliRunner()
    # When a new group is started at the beginning of the topic
    started = runner.invoke(cli, ["replay", "group", "audited", Paid.topic(), "--from", "earliest", "-b", url])
    assert started.exit_code == 0, started.output
    # Then the audit record counts the 40 records the group will read
    trail = runner.invoke(cli, ["audit", "--json", "--action", "replay", "-b", url])
    assert trail.exit_code == 0, trail.output
    assert [json.loads(line)["count"] for line in trail.output.splitlines()] == [40]
