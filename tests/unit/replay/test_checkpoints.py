"""Replay checkpoints that cannot be read: a usage error naming the fix (--restart), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core.errors import ConfigurationError
from choreograph.runtime.replay import CHECKPOINT_NAMESPACE, FileCheckpoints, KeyValueCheckpoints


async def test_a_file_checkpoint_that_is_not_json_is_refused_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "orders-copy.json").write_text('{"fingerprint": "ab')
    with pytest.raises(ConfigurationError, match="--restart"):
        await FileCheckpoints(tmp_path).load("orders-copy")


async def test_a_key_value_checkpoint_that_is_not_an_object_is_refused_with_the_fix(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "log.db")
    try:
        store = broker.key_value(CHECKPOINT_NAMESPACE)
        await store.put("orders-copy", b"[1, 2]")
        with pytest.raises(ConfigurationError, match="--restart"):
            await KeyValueCheckpoints(store).load("orders-copy")
    finally:
        await broker.close()
