"""The workflow observer: follow declared flows by correlation id, without controlling them.

Declare a :class:`Flow`, then run an :class:`Observer` next to the services
(or call :func:`summarize` after a run to compute the same figures from the
log). See ``docs/flows.md``.
"""

from choreograph.observe.flows.events import FlowCompensationMissing, FlowCompleted, FlowStuck
from choreograph.observe.flows.figures import FlowFigures, Quantiles
from choreograph.observe.flows.flow import Compensation, EventRef, Flow
from choreograph.observe.flows.instance import CompensationState, Instance, Seen
from choreograph.observe.flows.observer import Observer
from choreograph.observe.flows.replay import replay, summarize
from choreograph.observe.flows.settings import ObserverConfig, ObserverStats, default_store
from choreograph.observe.flows.store import FlowStore, FlowStoreError, MemoryFlowStore, SqliteFlowStore
from choreograph.observe.flows.tracker import FlowTracker

__all__ = [
    "Compensation",
    "CompensationState",
    "EventRef",
    "Flow",
    "FlowCompensationMissing",
    "FlowCompleted",
    "FlowFigures",
    "FlowStore",
    "FlowStoreError",
    "FlowStuck",
    "FlowTracker",
    "Instance",
    "MemoryFlowStore",
    "Observer",
    "ObserverConfig",
    "ObserverStats",
    "Quantiles",
    "Seen",
    "SqliteFlowStore",
    "default_store",
    "replay",
    "summarize",
]
