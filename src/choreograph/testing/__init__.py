"""choreograph.testing: the broker conformance suite, its history checker, and fault injection.

Needs pytest (the ``dev`` extra).
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
    "FailurePlan",
    "History",
    "HistoryEvent",
    "InjectedFailure",
    "Recorder",
    "RecordingSubscription",
    "Report",
    "ScenarioInfo",
    "check",
    "failing_settle",
    "message_id",
    "not_applicable",
    "run_all",
    "scenario",
    "wait_for",
    "weaker",
]
