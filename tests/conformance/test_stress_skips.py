"""The stress runner leaves out scenarios a backend's suite skips (its known gaps)."""

from __future__ import annotations

import pytest

from choreograph.testing.conformance import _skipped


async def _plain() -> None:
    return None


@pytest.mark.skip(reason="a known gap")
async def _gap() -> None:
    return None


@pytest.mark.slow
async def _slow() -> None:
    return None


def test_only_skip_marked_scenarios_are_left_out() -> None:
    assert _skipped(_gap)
    assert not _skipped(_plain)
    assert not _skipped(_slow)
