"""One instance of a flow: the events seen for a correlation id, and what they imply.

The state is a set of events keyed by event id, so applying the same event
twice changes nothing and the order of arrival does not matter: every figure
(status, start, finality, compensations) is derived from the event times and
causation links, not from the order the observer happened to see them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from choreograph.observe.flows.flow import Compensation, Flow

IN_FLIGHT = "in_flight"
COMPLETED = "completed"
FAILED = "failed"

COMP_DONE = "done"
COMP_PENDING = "pending"
COMP_MISSING = "missing"
COMP_FAILED = "failed"


def parse_time(text: str | None) -> float | None:
    """Return epoch seconds of an RFC 3339 time, or None if absent or malformed."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Seen:
    """One event of an instance's timeline."""

    id: str
    type: str
    time: float
    """When it happened: the envelope's ``time``, else the log timestamp."""
    source: str
    cause: str | None
    """The causation id: the event this one reacted to."""
    observed_at: float
    """When the observer first saw it (observer clock)."""


@dataclass(frozen=True, slots=True)
class CompensationState:
    """Where one saga rule of an instance stands."""

    rule: Compensation
    index: int
    state: str
    """``pending``, ``done``, ``missing`` or ``failed``."""
    trigger_time: float
    detail: str = ""


@dataclass(slots=True)
class Instance:
    """What the observer knows about one (flow, correlation id)."""

    flow: str
    correlation_id: str
    events: dict[str, Seen] = field(default_factory=dict)
    failed_compensations: dict[int, str] = field(default_factory=dict)
    """Rule index -> why its compensation failed (the dead letter found)."""
    notices: dict[str, bool] = field(default_factory=dict)
    """Notice key (``final``, ``stuck``, ``compensation.<rule>.<problem>``) -> published yet.

    A key is added once per instance, ever: that is what makes each notice exactly-once."""
    wake_at: float | None = field(default=None, compare=False)
    """When time alone may next change what is owed (a deadline, a compensation timeout; -inf: a notice
    is unsent), None if never. Set by the tracker before a save; the store indexes it, it is not in the snapshot."""
    finished_at: float | None = field(default=None, compare=False)
    """The final event's time once nothing more is owed or awaited (None before). Set like ``wake_at``;
    finished instances leave the observer's memory and are deleted after the retention."""

    # -- applying ---------------------------------------------------------

    def add(self, seen: Seen) -> bool:
        """Record ``seen``; return False (changing nothing) if its id was already recorded."""
        if seen.id in self.events:
            return False
        self.events[seen.id] = seen
        return True

    # -- derived state ---------------------------------------------------

    def timeline(self) -> list[Seen]:
        """Events in time order (ties broken by when they were observed)."""
        return sorted(self.events.values(), key=lambda s: (s.time, s.observed_at, s.id))

    def _first(self, flow: Flow, kinds: tuple[str, ...]) -> Seen | None:
        best: Seen | None = None
        for seen in self.events.values():
            if flow.kind_of(seen.type) in kinds and (best is None or (seen.time, seen.id) < (best.time, best.id)):
                best = seen
        return best

    def start(self, flow: Flow) -> Seen | None:
        """The earliest start event, if seen."""
        return self._first(flow, ("start",))

    def final(self, flow: Flow) -> Seen | None:
        """The earliest success or failure event, if seen."""
        return self._first(flow, ("success", "failure"))

    def status(self, flow: Flow) -> str:
        """``completed``, ``failed`` or ``in_flight``."""
        final = self.final(flow)
        if final is None:
            return IN_FLIGHT
        return COMPLETED if flow.kind_of(final.type) == "success" else FAILED

    def started_at(self, flow: Flow) -> float:
        """When the instance started: its start event, else its earliest event seen."""
        start = self.start(flow)
        if start is not None:
            return start.time
        return min(seen.time for seen in self.events.values())

    def due_at(self, flow: Flow) -> float:
        """When the instance becomes stuck unless final."""
        return self.started_at(flow) + flow.timeout

    def is_stuck(self, flow: Flow, now: float) -> bool:
        """True if not final and past its deadline."""
        return self.final(flow) is None and now > self.due_at(flow)

    def duration(self, flow: Flow) -> float | None:
        """Seconds from start to final event, when both were seen."""
        start, final = self.start(flow), self.final(flow)
        if start is None or final is None:
            return None
        return max(0.0, final.time - start.time)

    def types_seen(self) -> set[str]:
        """The event types recorded."""
        return {seen.type for seen in self.events.values()}

    def compensations(self, flow: Flow, now: float) -> list[CompensationState]:
        """The saga rules this instance requires, each with its state at ``now``."""
        if not flow.compensations:
            return []
        first_by_type: dict[str, float] = {}
        for seen in self.events.values():
            if seen.type not in first_by_type or seen.time < first_by_type[seen.type]:
                first_by_type[seen.type] = seen.time
        result = []
        for index, rule in enumerate(flow.compensations):
            if rule.step.type not in first_by_type:
                continue
            if rule.when:
                triggers = [first_by_type[ref.type] for ref in rule.when if ref.type in first_by_type]
                if not triggers:
                    continue
                trigger_time = min(triggers)
            else:
                final = self.final(flow)
                if final is None or flow.kind_of(final.type) != "failure":
                    continue
                trigger_time = final.time
            if rule.undo.type in first_by_type:
                state, detail = COMP_DONE, ""
            elif index in self.failed_compensations:
                state, detail = COMP_FAILED, self.failed_compensations[index]
            elif now > trigger_time + rule.timeout:
                state, detail = COMP_MISSING, f"no {rule.undo.type} within {rule.timeout:g}s"
            else:
                state, detail = COMP_PENDING, ""
            result.append(CompensationState(rule, index, state, trigger_time, detail))
        return result

    def waiting_for(self, flow: Flow, now: float) -> list[str]:
        """Event types the instance still expects, most immediate first; empty once final."""
        if self.final(flow) is not None:
            return [f"{c.rule.undo.type} (compensation)" for c in self.compensations(flow, now) if c.state != COMP_DONE]
        seen = self.types_seen()
        waiting: list[str] = []
        if self.start(flow) is None:
            waiting += [ref.type for ref in flow.start]
        pending = [c for c in self.compensations(flow, now) if c.state != COMP_DONE]
        if pending:
            waiting += [f"{c.rule.undo.type} (compensation)" for c in pending]
            return waiting + [ref.type for ref in flow.failure]
        reached = max((i for i, ref in enumerate(flow.steps) if ref.type in seen), default=-1)
        upcoming = [ref.type for ref in flow.steps[reached + 1 :]]
        if upcoming:
            return waiting + upcoming[:1]
        return waiting + [ref.type for ref in (*flow.success, *flow.failure)]

    def step_latencies(self, flow: Flow) -> list[tuple[str, float]]:
        """(event type, seconds since its cause) for every non-start event.

        The cause is the event named by the causation id when it was seen,
        else the latest earlier event of the instance.
        """
        ordered = self.timeline()
        result = []
        for position, seen in enumerate(ordered):
            if flow.kind_of(seen.type) == "start":
                continue
            cause = self.events.get(seen.cause) if seen.cause else None
            if cause is None and position > 0:
                cause = ordered[position - 1]
            if cause is not None:
                result.append((seen.type, max(0.0, seen.time - cause.time)))
        return result

    # -- persistence -----------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-compatible snapshot."""
        return {
            "flow": self.flow,
            "correlation_id": self.correlation_id,
            "events": [
                [s.id, s.type, s.time, s.source, s.cause, s.observed_at]
                for s in sorted(self.events.values(), key=lambda s: (s.time, s.id))
            ],
            "failed_compensations": {str(k): v for k, v in self.failed_compensations.items()},
            "notices": self.notices,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Instance:
        """Rebuild an instance from :meth:`to_dict` output."""
        events = {}
        for event_id, event_type, when, source, cause, observed_at in doc["events"]:
            events[event_id] = Seen(event_id, event_type, when, source, cause, observed_at)
        return cls(
            flow=doc["flow"],
            correlation_id=doc["correlation_id"],
            events=events,
            failed_compensations={int(k): v for k, v in doc.get("failed_compensations", {}).items()},
            notices=dict(doc.get("notices", {})),
        )
