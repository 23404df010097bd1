"""choreograph.testing: a harness for your app, the broker conformance suite, its history checker, fault injection.

:class:`TestApp` runs an App on the in-memory broker and drains it without
polling (see :mod:`choreograph.testing.harness`); it does not need pytest. The
conformance suite, checker and fault injection do (the ``dev`` extra): they are
imported on first use, so importing the harness neither needs pytest nor
declares the suite's pytest marks in your test run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from choreograph.testing.harness import DrainTimeout, TestApp, UnexpectedDeadLetter

if TYPE_CHECKING:
    from choreograph.testing.checker import (
        ANOMALIES,
        DELIVERED_AFTER_ACK,
        DUPLICATE,
        LOST,
        REORDERED,
        UNSEEN,
        Anomaly,
        AnomalyError,
        Report,
        check,
    )
    from choreograph.testing.conformance import BrokerConformance
    from choreograph.testing.consumer import Consumer, run_all, wait_for
    from choreograph.testing.faults import (
        AFTER_DELIVERIES,
        BEFORE_ACK,
        KILL_POINTS,
        MID_BATCH,
        ChildBroker,
        ChildProcess,
        FailurePlan,
        InjectedFailure,
        failing_settle,
    )
    from choreograph.testing.history import (
        MESSAGE_ID_HEADER,
        History,
        HistoryEvent,
        Recorder,
        RecordingSubscription,
        message_id,
    )
    from choreograph.testing.scenario import Degrade, ScenarioInfo, not_applicable, scenario, weaker

_LAZY_MODULES: dict[str, tuple[str, ...]] = {
    "checker": ("ANOMALIES", "DELIVERED_AFTER_ACK", "DUPLICATE", "LOST", "REORDERED", "UNSEEN", "Anomaly",
                "AnomalyError", "Report", "check"),
    "conformance": ("BrokerConformance",),
    "consumer": ("Consumer", "run_all", "wait_for"),
    "faults": ("AFTER_DELIVERIES", "BEFORE_ACK", "KILL_POINTS", "MID_BATCH", "ChildBroker", "ChildProcess",
               "FailurePlan", "InjectedFailure", "failing_settle"),
    "history": ("MESSAGE_ID_HEADER", "History", "HistoryEvent", "Recorder", "RecordingSubscription", "message_id"),
    "scenario": ("Degrade", "ScenarioInfo", "not_applicable", "scenario", "weaker"),
}  # fmt: skip
"""Public names by the submodule they are imported from on first access (most of these need pytest)."""
_LAZY = {name: f"{__name__}.{module}" for module, names in _LAZY_MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this hook
    return value


__all__ = [
    "AFTER_DELIVERIES",
    "ANOMALIES",
    "BEFORE_ACK",
    "DELIVERED_AFTER_ACK",
    "DUPLICATE",
    "KILL_POINTS",
    "LOST",
    "MESSAGE_ID_HEADER",
    "MID_BATCH",
    "REORDERED",
    "UNSEEN",
    "Anomaly",
    "AnomalyError",
    "BrokerConformance",
    "ChildBroker",
    "ChildProcess",
    "Consumer",
    "Degrade",
    "DrainTimeout",
    "FailurePlan",
    "History",
    "HistoryEvent",
    "InjectedFailure",
    "Recorder",
    "RecordingSubscription",
    "Report",
    "ScenarioInfo",
    "TestApp",
    "UnexpectedDeadLetter",
    "check",
    "failing_settle",
    "message_id",
    "not_applicable",
    "run_all",
    "scenario",
    "wait_for",
    "weaker",
]
