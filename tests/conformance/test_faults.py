"""Fault injection helpers: child processes killed with SIGKILL, stalled and resumed; failure plans."""

import pytest

from choreograph.core.broker import Delivery
from choreograph.testing import ChildBroker, ChildProcess, FailurePlan, History, InjectedFailure


@pytest.mark.slow
async def test_a_child_publisher_is_killed_dead_and_its_acknowledged_events_are_kept() -> None:
    # Given a child process publishing to its own broker
    history = History()
    child = await ChildProcess.publisher(ChildBroker("memory://"), history, topic="t", after=5, prefix="p")
    # When it reached its point, is stalled, resumed, and killed with SIGKILL
    await child.wait_ready(20.0)
    child.stall()
    child.resume()
    status = await child.kill()
    # Then it died by signal 9 and every event it wrote before dying is in the history
    assert status == -9
    published = [e.message for e in history.of("publish", topic="t")]
    assert published[:5] == [f"p-{i}" for i in range(5)]


@pytest.mark.slow
async def test_a_child_that_cannot_start_reports_its_error() -> None:
    child = await ChildProcess.publisher(
        ChildBroker("memory://", opener="no.such.module:open"), History(), topic="t", after=1, prefix="p"
    )
    with pytest.raises(RuntimeError, match="No module named"):
        await child.wait_ready(20.0)


async def test_an_unknown_kill_point_is_refused() -> None:
    with pytest.raises(ValueError, match="kill point"):
        await ChildProcess.consumer(ChildBroker("memory://"), History(), topic="t", group="g", after=1, point="x")


def test_a_failure_plan_fails_exactly_the_chosen_attempts() -> None:
    plan = FailurePlan(attempts=frozenset({1, 3}), messages=frozenset({"a"}), delay=0.5)
    assert [plan.fails("a", n) for n in (1, 2, 3)] == [True, False, True]
    assert not plan.fails("b", 1)
    with pytest.raises(InjectedFailure):
        plan.check("a", 1)
    d = Delivery("t", 0, 0, b"a", attempt=1)
    assert plan.decide(d) is None  # no id header: its identity is its bytes, "bytes:a"
    assert FailurePlan().decide(d) == 0.0
