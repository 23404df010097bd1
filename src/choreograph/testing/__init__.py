"""choreograph.testing: a harness for your app, the broker conformance suite, its history checker, fault injection.

:class:`TestApp` runs an App on the in-memory broker and drains it without
polling (see :mod:`choreograph.testing.harness`). Needs pytest (the ``dev`` extra).
"""

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
from choreograph.testing.harness import DrainTimeout, TestApp, UnexpectedDeadLetter
from choreograph.testing.history import (
    MESSAGE_ID_HEADER,
    History,
    HistoryEvent,
    Recorder,
    RecordingSubscription,
    message_id,
)
from choreograph.testing.scenario import Degrade, ScenarioInfo, not_applicable, scenario, weaker

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
