"""The SQLite broker refuses a database directory that every user may write to (unless it is sticky)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core.broker import Record
from choreograph.core.errors import ConfigurationError


async def _publish(path: Path) -> None:
    broker = SqliteBroker.from_url(f"sqlite:///{path}")
    try:
        await broker.publish("orders", [Record(b"x", key="k")])
    finally:
        await broker.close()


async def test_a_world_writable_directory_is_refused_with_the_fix(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(ConfigurationError) as caught:
        await _publish(shared / "broker.db")
    message = str(caught.value)
    assert repr(str(shared)) in message
    assert "writable by every user (mode 0777, no sticky bit)" in message
    assert f"chmod o-w {shared}" in message
    assert not (shared / "broker.db").exists()  # refused before anything was created


async def test_a_sticky_world_writable_directory_is_accepted(tmp_path: Path) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)  # as /tmp: others may not replace our files there
    await _publish(sticky / "broker.db")
    assert (sticky / "broker.db").exists()


async def test_a_group_writable_directory_is_accepted(tmp_path: Path) -> None:
    team = tmp_path / "team"
    team.mkdir()
    os.chmod(team, 0o770)
    await _publish(team / "broker.db")
    assert (team / "broker.db").exists()
