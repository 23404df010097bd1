"""``DeadLetterDesk.retry(rate=...)``: a rate that cannot pace is refused, as ``replay copy --rate`` refuses it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core.errors import ConfigurationError
from choreograph.runtime.dead_letters import DeadLetterDesk


@pytest.mark.parametrize("rate", [0.0, -1.0, math.nan, math.inf])
async def test_a_rate_that_is_not_a_positive_finite_number_is_refused(tmp_path: Path, rate: float) -> None:
    broker = SqliteBroker(tmp_path / "log.db")
    try:
        with pytest.raises(ConfigurationError, match="--rate"):
            await DeadLetterDesk(broker).retry([], rate=rate, target="nothing")
    finally:
        await broker.close()
