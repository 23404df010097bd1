"""The broker conformance suite: one pytest class every backend runs unchanged.

A backend proves itself in a few lines::

    from choreograph.core.broker import Broker
    from choreograph.core.clock import Clock
    from choreograph.testing import BrokerConformance

    class TestMyBrokerConformance(BrokerConformance):
        capabilities = MyBroker.capabilities
        accepts_clock = True                      # if make_broker honours ``clock``

        async def make_broker(self, clock: Clock | None = None) -> Broker:
            return MyBroker(clock=clock)

Persistent backends also define ``reopen_broker``; cross-process ones
``child_broker`` (and ``lease_timeout`` if members hold leases); backends whose
storage can hold records no publish could produce, ``inject_raw`` (see
:mod:`~choreograph.testing.hostile_scenarios`). Scenarios are
plain async test methods grouped by CONFORMANCE.md section, one mixin per
section; a new section is a new mixin added to :class:`BrokerConformance`.
Each scenario uses a fresh topic and group, records a history, and fails on
the anomalies the declared capabilities forbid. A missing capability selects
a weaker assertion; ``docs/conformance.md`` lists them
(``python -m choreograph.testing.matrix``).

Stress: the ``stress``-marked tests run chosen scenarios repeatedly and
concurrently; they are deselected unless ``-m stress`` is given (see
:mod:`choreograph.testing.pytest_plugin`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import ClassVar

import pytest

from choreograph.testing.fault_scenarios import FaultScenarios
from choreograph.testing.hostile_scenarios import HostileScenarios
from choreograph.testing.kv_scenarios import KeyValueScenarios
from choreograph.testing.recovery_scenarios import RecoveryScenarios
from choreograph.testing.replay_scenarios import ReplayScenarios
from choreograph.testing.transport_scenarios import TransportScenarios

STRESSED: tuple[str, ...] = (
    "test_a03_many_topics",
    "test_a04_nack_redelivery",
    "test_a05_per_key_order_across_rebalance",
    "test_a06_consumer_groups",
    "test_a08_members_come_and_go",
    "test_a12_failure_inside_batch",
    "test_b19_failed_settle_redelivers",
    "test_b21_resubmit_twice_processed_once",
)
"""Scenarios the stress test repeats; each must be safe to run concurrently with itself."""


class BrokerConformance(
    TransportScenarios, HostileScenarios, RecoveryScenarios, KeyValueScenarios, ReplayScenarios, FaultScenarios
):
    """Subclass with ``capabilities`` and ``make_broker``; name the subclass ``Test...``."""

    stress_rounds: ClassVar[int] = int(os.environ.get("CHOREOGRAPH_STRESS_ROUNDS", "3"))
    """How many times the stress test repeats each round of scenarios."""
    stress_parallel: ClassVar[int] = int(os.environ.get("CHOREOGRAPH_STRESS_PARALLEL", "4"))
    """How many copies of each scenario run at once in a stress round."""

    @pytest.mark.stress
    async def test_stress_scenarios_repeated_in_parallel(self) -> None:
        """Run the stressed scenarios ``stress_rounds`` times, ``stress_parallel`` copies at once."""
        for _ in range(self.stress_rounds):
            runs: list[Awaitable[None]] = []
            for name in STRESSED:
                method: Callable[[], Awaitable[None]] = getattr(self, name)
                if _skipped(method):
                    continue  # the backend's suite skips it (a known gap): stressing it proves nothing more
                runs += [method() for _ in range(self.stress_parallel)]
            await asyncio.gather(*runs)

    @pytest.mark.stress
    async def test_stress_thousands_in_parallel(self) -> None:
        """Run the many-publishers scenario ``stress_parallel`` times at once, ``stress_rounds`` times."""
        for _ in range(self.stress_rounds):
            copies = [self.test_a02_many_publishers_and_subscribers() for _ in range(self.stress_parallel)]
            await asyncio.gather(*copies)


def _skipped(method: Callable[[], Awaitable[None]]) -> bool:
    """Whether a backend's subclass marked this scenario ``pytest.mark.skip``."""
    return any(mark.name == "skip" for mark in getattr(method, "pytestmark", []))
