"""The audit trail counts the records a group reset puts back, not stream-sequence spans (NATS shares them)."""

from __future__ import annotations

import uuid

from tests.unit.replay.replay_audit import audited_group_start

from .server import NatsServer


def test_a_group_started_at_earliest_is_audited_with_the_records_it_will_read(nats_server: NatsServer) -> None:
    # Given 40 events over 8 partitions of one stream (their offsets are stream sequences, not dense per partition)
    url = f"{nats_server.url}?prefix=r{uuid.uuid4().hex[:8]}&partitions=8"
    # Then starting a group at the beginning is audited with the 40 records it will read
    assert audited_group_start(url) == [40]
