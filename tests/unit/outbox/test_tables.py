"""Lanes, shipped SQL splitting and configuration checks of the outbox."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from choreograph import ConfigurationError
from choreograph.outbox import LANES, RelayConfig, lane_of, migration_sql
from choreograph.outbox.tables import statements


@given(st.text(), st.text())
def test_a_keys_events_share_one_lane_whatever_their_ids(key: str, event_id: str) -> None:
    assert lane_of(key, event_id) == lane_of(key, "another id")
    assert 0 <= lane_of(None, event_id) < LANES


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_the_shipped_sql_splits_into_whole_statements(dialect: str) -> None:
    parts = statements(migration_sql(dialect))
    assert any(part.startswith("CREATE TABLE IF NOT EXISTS choreograph_inbox") for part in parts)
    assert all(not part.rstrip().endswith(";") for part in parts)
    if dialect == "postgresql":  # the trigger function's body stays one statement
        body = next(part for part in parts if "FUNCTION choreograph_outbox_notify" in part)
        assert "pg_notify" in body and body.rstrip().endswith("$$")


@pytest.mark.parametrize("field", ["batch_size", "lanes_per_round", "poll_interval", "lease_timeout", "retention"])
def test_a_relay_config_refuses_a_non_positive_value(field: str) -> None:
    with pytest.raises(ConfigurationError, match=field):
        RelayConfig(**{field: 0})
