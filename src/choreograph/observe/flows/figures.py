"""Figures of a flow: counts, completion rate, time to finality and per-step latency."""

from __future__ import annotations

import contextlib
import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from choreograph.observe.flows.flow import Flow
from choreograph.observe.flows.instance import (
    COMP_DONE,
    COMP_FAILED,
    COMP_MISSING,
    COMPLETED,
    FAILED,
    Instance,
)


@dataclass(frozen=True, slots=True)
class Quantiles:
    """Percentiles of a set of durations, in seconds (None when there is no sample)."""

    count: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None

    @classmethod
    def of(cls, samples: Sequence[float]) -> Quantiles:
        """Return the nearest-rank 50th, 95th and 99th percentiles of ``samples``."""
        if not samples:
            return cls()
        ordered = sorted(samples)

        def rank(q: float) -> float:
            return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

        return cls(len(ordered), rank(0.50), rank(0.95), rank(0.99))


@dataclass(frozen=True, slots=True)
class FlowFigures:
    """How the instances of one flow are doing at one moment.

    ``completed`` and ``failed`` count instances that reached a success or a
    failure event; ``compensated`` counts instances whose every required
    compensation happened; ``compensation_missing`` / ``compensation_failed``
    count instances with an undo overdue / dead-lettered. ``in_flight``
    includes the ``stuck`` ones (past the deadline, not final).
    ``completion_rate`` is completed / (completed + failed + stuck), None
    before any instance settles.
    """

    flow: str
    started: int = 0
    completed: int = 0
    failed: int = 0
    compensated: int = 0
    compensation_missing: int = 0
    compensation_failed: int = 0
    in_flight: int = 0
    stuck: int = 0
    awaiting_start: int = 0
    """Instances seen only through later events so far (their start event was not observed)."""
    completion_rate: float | None = None
    time_to_finality: Quantiles = field(default_factory=Quantiles)
    step_latency: dict[str, Quantiles] = field(default_factory=dict)
    """Per event type: seconds from its cause to it."""

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-compatible dict."""
        return {
            "flow": self.flow,
            "started": self.started,
            "completed": self.completed,
            "failed": self.failed,
            "compensated": self.compensated,
            "compensation_missing": self.compensation_missing,
            "compensation_failed": self.compensation_failed,
            "in_flight": self.in_flight,
            "stuck": self.stuck,
            "awaiting_start": self.awaiting_start,
            "completion_rate": self.completion_rate,
            "time_to_finality": _q(self.time_to_finality),
            "step_latency": {name: _q(q) for name, q in self.step_latency.items()},
        }


def _q(q: Quantiles) -> dict[str, Any]:
    return {"count": q.count, "p50": q.p50, "p95": q.p95, "p99": q.p99}


_COUNTS: tuple[str, ...] = (
    "started",
    "completed",
    "failed",
    "compensated",
    "compensation_missing",
    "compensation_failed",
    "in_flight",
    "stuck",
    "awaiting_start",
)


class FiguresTally:
    """The figures' raw material — counts and duration samples — of instances no longer held as objects.

    The observer folds an instance in when it leaves memory (finished) and
    takes it out again if it is loaded back, so figures stay exact while each
    finished instance costs a few floats (8 bytes per sample) instead of its
    event timeline.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(_COUNTS, 0)
        self.durations: array[float] = array("d")
        self.steps: dict[str, array[float]] = {}

    def add(self, flow: Flow, instance: Instance, now: float, sign: int = 1) -> None:
        """Fold ``instance`` in (``sign`` -1: take it out again, exactly as it was folded in)."""
        if not instance.events:
            return
        counts = self.counts
        counts["awaiting_start" if instance.start(flow) is None else "started"] += sign
        status = instance.status(flow)
        if status == COMPLETED:
            counts["completed"] += sign
        elif status == FAILED:
            counts["failed"] += sign
        else:
            counts["in_flight"] += sign
            if instance.is_stuck(flow, now):
                counts["stuck"] += sign
        states = {c.state for c in instance.compensations(flow, now)}
        if states and states == {COMP_DONE}:
            counts["compensated"] += sign
        if COMP_MISSING in states:
            counts["compensation_missing"] += sign
        if COMP_FAILED in states:
            counts["compensation_failed"] += sign
        samples = [(None, instance.duration(flow)), *instance.step_latencies(flow)]
        for event_type, value in samples:
            if value is None:
                continue
            target = self.durations if event_type is None else self.steps.setdefault(event_type, array("d"))
            if sign > 0:
                target.append(value)
            else:
                with contextlib.suppress(ValueError):
                    target.remove(value)

    def figures(self, flow: Flow) -> FlowFigures:
        """Return the figures of what was folded in."""
        counts = self.counts
        settled = counts["completed"] + counts["failed"] + counts["stuck"]
        order = {ref.type: i for i, ref in enumerate(flow.refs)}
        return FlowFigures(
            flow=flow.name,
            completion_rate=counts["completed"] / settled if settled else None,
            time_to_finality=Quantiles.of(self.durations),
            step_latency={
                name: Quantiles.of(samples)
                for name, samples in sorted(self.steps.items(), key=lambda item: order.get(item[0], len(order)))
                if samples
            },
            **counts,
        )

    def copy(self) -> FiguresTally:
        """Return an independent copy."""
        other = FiguresTally()
        other.counts = dict(self.counts)
        other.durations = array("d", self.durations)
        other.steps = {name: array("d", samples) for name, samples in self.steps.items()}
        return other


def compute(
    flow: Flow, instances: Iterable[Instance], now: float, *, retired: FiguresTally | None = None
) -> FlowFigures:
    """Compute the figures of ``flow`` over ``instances`` (plus the ``retired`` ones' tally) at time ``now``. Pure."""
    tally = retired.copy() if retired is not None else FiguresTally()
    for instance in instances:
        tally.add(flow, instance, now)
    return tally.figures(flow)
