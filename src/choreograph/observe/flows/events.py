"""Events the observer publishes so other services and alerting can react.

Each carries the observed instance's correlation id in its envelope (so it
shows up in that instance's timeline) and an id derived from (correlation id,
flow, notice), so publishing it again after a crash yields the same id and
consumers' inboxes drop the duplicate.
"""

from __future__ import annotations

from choreograph.core.event import Event

OBSERVER_SOURCE = "choreograph.observer"
"""The CloudEvents ``source`` of every event the observer publishes."""


class FlowStuck(Event, type="choreograph.flow.stuck", version=1):
    """An instance was not final within its flow's timeout. Published once per instance."""

    flow: str
    correlation_id: str
    started_at: float
    due_at: float
    waiting_for: list[str]
    last_event_type: str | None = None


class FlowCompleted(Event, type="choreograph.flow.completed", version=1):
    """An instance reached a final event: ``outcome`` is ``completed`` or ``failed``."""

    flow: str
    correlation_id: str
    outcome: str
    final_event_type: str
    duration: float | None = None
    """Seconds from the start event to the final event, if both were seen."""


class FlowCompensationMissing(Event, type="choreograph.flow.compensation_missing", version=1):
    """A saga step was not undone: ``problem`` is ``missing`` (timed out) or ``failed`` (dead-lettered)."""

    flow: str
    correlation_id: str
    compensation: str
    problem: str
    detail: str = ""
