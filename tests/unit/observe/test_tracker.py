"""The tracker: order- and duplicate-independent state, deadlines and compensations."""

from __future__ import annotations

import random

from choreograph.observe.flows import FlowCompleted, FlowStuck, FlowTracker
from choreograph.observe.flows.instance import COMP_DONE, COMP_FAILED, COMP_MISSING, COMP_PENDING
from tests.unit.observe.conftest import FLOW, T0, Placed, declined_path, envelope, happy_path


def test_happy_path_completes_with_its_time_to_finality() -> None:
    tracker = FlowTracker(FLOW)
    for env in happy_path():
        tracker.apply(env, now=T0 + 10)

    figures = tracker.figures(T0 + 10)

    assert (figures.started, figures.completed, figures.failed, figures.in_flight) == (1, 1, 0, 0)
    assert figures.time_to_finality.p50 == 3.0
    assert figures.completion_rate == 1.0
    assert set(figures.step_latency) == {"test.flow.reserved", "test.flow.charged", "test.flow.done"}
    assert figures.step_latency["test.flow.charged"].p99 == 1.0


def test_out_of_order_and_duplicated_events_yield_the_same_final_state() -> None:
    # Given every event of two instances, shuffled, each delivered twice
    events = happy_path("a") + declined_path("b")
    shuffled = events * 2
    random.Random(7).shuffle(shuffled)
    tracker = FlowTracker(FLOW)

    # When they are applied in that order
    new = sum(tracker.apply(env, now=T0 + 10) for env in shuffled)

    # Then each event counts once and the figures match the ordered run
    assert new == len(events)
    assert tracker.duplicates == len(events)
    figures = tracker.figures(T0 + 10)
    assert (figures.started, figures.completed, figures.failed, figures.compensated) == (1 + 1, 1, 1, 1)
    assert figures.time_to_finality.count == 2


def test_terminal_event_before_the_start_is_final_and_awaits_its_start() -> None:
    placed, reserved, charged, done = happy_path()
    tracker = FlowTracker(FLOW)
    tracker.apply(done, now=T0 + 10)

    figures = tracker.figures(T0 + 100)
    assert (figures.awaiting_start, figures.completed, figures.stuck) == (1, 1, 0)

    for env in (charged, placed, reserved):
        tracker.apply(env, now=T0 + 10)
    figures = tracker.figures(T0 + 100)
    assert (figures.started, figures.awaiting_start, figures.completed) == (1, 0, 1)
    assert figures.time_to_finality.p50 == 3.0


def test_instance_past_its_deadline_is_reported_stuck_once() -> None:
    placed, reserved, *_ = happy_path()
    tracker = FlowTracker(FLOW)
    tracker.apply(placed, now=T0 + 1)
    tracker.apply(reserved, now=T0 + 1)

    tracker.check(T0 + 29)
    assert tracker.pending_notices() == []

    tracker.check(T0 + 31)
    tracker.check(T0 + 60)
    notices = tracker.pending_notices()
    assert [key for _, key in notices] == ["stuck"]
    instance, key = notices[0]
    stuck = tracker.notice(instance, key, T0 + 60)
    assert isinstance(stuck, FlowStuck)
    assert stuck.waiting_for == ["test.flow.charged"]
    assert tracker.figures(T0 + 31).stuck == 1

    tracker.mark_sent(instance, key)
    tracker.check(T0 + 90)
    assert tracker.pending_notices() == []


def test_completion_is_noticed_once_even_when_duplicated() -> None:
    tracker = FlowTracker(FLOW)
    path = happy_path()
    for env in [*path, path[-1]]:
        tracker.apply(env, now=T0 + 10)

    notices = tracker.pending_notices()

    assert [key for _, key in notices] == ["final"]
    completed = tracker.notice(*notices[0], T0 + 10)
    assert isinstance(completed, FlowCompleted)
    assert (completed.outcome, completed.duration) == ("completed", 3.0)


def test_declined_order_with_release_is_compensated() -> None:
    tracker = FlowTracker(FLOW)
    for env in declined_path():
        tracker.apply(env, now=T0 + 10)

    instance = next(iter(tracker.instances.values()))

    assert [c.state for c in instance.compensations(FLOW, T0 + 100)] == [COMP_DONE]
    assert tracker.figures(T0 + 100).compensated == 1


def test_missing_release_is_flagged_after_the_compensation_timeout() -> None:
    tracker = FlowTracker(FLOW)
    for env in declined_path(released=False):
        tracker.apply(env, now=T0 + 3)
    instance = next(iter(tracker.instances.values()))
    assert [c.state for c in instance.compensations(FLOW, T0 + 4)] == [COMP_PENDING]
    assert instance.waiting_for(FLOW, T0 + 4) == ["test.flow.released (compensation)", "test.flow.cancelled"]

    tracker.check(T0 + 8)

    assert [c.state for c in instance.compensations(FLOW, T0 + 8)] == [COMP_MISSING]
    problems = [key for _, key in tracker.pending_notices()]
    assert problems == ["compensation.0.missing"]
    assert tracker.figures(T0 + 8).compensation_missing == 1


def test_dead_lettered_trigger_flags_compensation_failed() -> None:
    events = declined_path(released=False)
    tracker = FlowTracker(FLOW)
    for env in events:
        tracker.apply(env, now=T0 + 3)
    declined = events[-1]

    changed = tracker.on_dead_letter(declined.correlationid or "", declined.type, "inv.release", "boom", T0 + 3)
    again = tracker.on_dead_letter(declined.correlationid or "", declined.type, "inv.release", "boom", T0 + 3)

    assert (changed, again) == (True, False)
    instance = tracker.instances[declined.correlationid or ""]
    assert [c.state for c in instance.compensations(FLOW, T0 + 3)] == [COMP_FAILED]
    assert tracker.figures(T0 + 3).compensation_failed == 1


def test_a_successful_order_needs_no_compensation() -> None:
    tracker = FlowTracker(FLOW)
    for env in happy_path():
        tracker.apply(env, now=T0)
    instance = next(iter(tracker.instances.values()))
    assert instance.compensations(FLOW, T0 + 1000) == []


def test_events_of_other_types_are_ignored() -> None:
    tracker = FlowTracker(FLOW)
    other = envelope(Placed(order_id="x"), 0).replace(type="other.type")
    assert tracker.apply(other, now=T0) is False
    assert tracker.instances == {}


def test_state_round_trips_through_its_snapshot() -> None:
    tracker = FlowTracker(FLOW)
    for env in declined_path(released=False):
        tracker.apply(env, now=T0 + 3)
    tracker.check(T0 + 100)
    instance = next(iter(tracker.instances.values()))

    from choreograph.observe.flows import Instance

    copy = Instance.from_dict(instance.to_dict())

    assert copy == instance
    restored = FlowTracker(FLOW, [copy])
    assert len(restored.pending_notices()) == len(tracker.pending_notices())
