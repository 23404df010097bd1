"""``ReplayProgress``: with ``--json`` stdout holds only the JSON documents, whatever goes wrong with the metrics."""

from __future__ import annotations

import pytest

from choreograph.ops.replay_progress import ReplayProgress


async def test_an_unreachable_pushgateway_is_reported_on_stderr_not_in_the_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a replay shown as JSON whose Pushgateway refuses connections (port 1, user credentials in its URL)
    async with ReplayProgress("orders-copy", as_json=True, pushgateway="http://ops:hunter2@127.0.0.1:1") as progress:
        progress.tick(5, 10)
    captured = capsys.readouterr()
    # Then stdout stays empty for the JSON report, and stderr says the push failed, without the password
    assert captured.out == ""
    assert "could not push the replay metrics" in captured.err
    assert "hunter2" not in captured.err
