"""Hypothesis profiles of the fuzz tests: ``ci`` (the default, bounded) and ``fuzz`` (``make fuzz``, >= 1e6 inputs).

Select with ``HYPOTHESIS_PROFILE=fuzz``. The profiles are registered here and
applied per test through :func:`tests.fuzz.budget.fuzz_settings`, not loaded
globally, so other hypothesis tests in the same run keep their own settings.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.fuzz.budget import INPUTS, PROFILE, register_profiles

register_profiles()


@pytest.fixture(autouse=True)
def _quiet_dead_letters() -> Iterator[None]:
    """Keep the consumer's per-dead-letter warnings out of the log (millions under ``make fuzz``); errors still show."""
    logger = logging.getLogger("choreograph")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report how many inputs the fuzz tests fed (for the fuzzing note)."""
    if INPUTS:
        terminalreporter.section(f"fuzz inputs (profile {PROFILE})")
        for test, count in sorted(INPUTS.items()):
            terminalreporter.write_line(f"{count:>12,}  {test}")
        terminalreporter.write_line(f"{sum(INPUTS.values()):>12,}  in all")
