"""The observer's settings, counters and default state store."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from choreograph.core.broker import Position
from choreograph.core.errors import ConfigurationError
from choreograph.core.kv import KeyValueProvider
from choreograph.core.local_log import LocalLogBackend
from choreograph.core.redaction import redact_url
from choreograph.observe.flows.kv_store import NAMESPACE as KV_NAMESPACE
from choreograph.observe.flows.kv_store import KeyValueFlowStore
from choreograph.observe.flows.store import FlowStore, MemoryFlowStore, SqliteFlowStore
from choreograph.runtime.app import App

logger = logging.getLogger("choreograph.observer")


@dataclass(frozen=True, slots=True)
class ObserverConfig:
    """Tuning of the observer loops (durations in seconds)."""

    batch_size: int = 1000
    fetch_timeout: float = 0.25
    check_interval: float = 0.5
    """How often deadlines and compensation timeouts are evaluated."""
    dead_letter_interval: float = 1.0
    """How often dead letters are scanned for failed compensations (when a flow declares any)."""
    dead_letter_limit: int = 10_000
    resubscribe_delay: float = 0.5
    start: Position = field(default_factory=Position.earliest)
    """Where a new observer group starts reading (default: the oldest retained record)."""
    max_open_instances: int = 100_000
    """Instances held in memory per flow, at most (plus those with unsaved changes or unsent notices).

    Past it the oldest stored instances leave memory and are loaded back from the store when an
    event, a dead letter or their deadline concerns them. Finished instances never stay."""
    finished_retention: float = 7 * 24 * 3600.0
    """Seconds a finished instance stays in the store after its final event (for ``flows --state``,
    ``flow show --state`` and late duplicates); then it is deleted. An event of it read later starts a new instance."""
    due_page: int = 1000
    """Instances loaded back from the store at a time when their deadlines come."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigurationError(f"ObserverConfig.batch_size must be >= 1, got {self.batch_size}")
        for name in ("max_open_instances", "due_page"):
            if not getattr(self, name) >= 1:
                raise ConfigurationError(f"ObserverConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "fetch_timeout",
            "check_interval",
            "dead_letter_interval",
            "resubscribe_delay",
            "finished_retention",
        ):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"ObserverConfig.{name} must be > 0 seconds")


def default_store(app: App) -> FlowStore:
    """Where the observer keeps state for ``app``'s broker, chosen by what the backend can do.

    A broker whose log is one local file (:class:`~choreograph.core.local_log.LocalLogBackend`,
    SQLite) keeps it in a table of that file (:class:`SqliteFlowStore`, as earlier versions did, so
    their state stays readable); a broker with key-value namespaces (NATS, Redis, Kafka, memory)
    in its ``flows`` namespace (:class:`~choreograph.observe.flows.kv_store.KeyValueFlowStore`);
    anything else in this process's memory. Not persistent (``memory://``): a warning says so.
    """
    broker = app.broker
    store: FlowStore
    if isinstance(broker, LocalLogBackend):
        return SqliteFlowStore(broker.path)
    if isinstance(broker, KeyValueProvider):
        store = KeyValueFlowStore(broker.key_value(KV_NAMESPACE), where=redact_url(app.broker_url))
    else:
        store = MemoryFlowStore()
    if not broker.capabilities.persistent or not isinstance(broker, KeyValueProvider):
        logger.warning("observer state is kept in memory for %s; it will not survive a restart", app.broker_url)
    return store


def stored_state(app: App) -> FlowStore:
    """The store ``flows --state`` reads: :func:`default_store`, refused when it would be this process's memory."""
    broker = app.broker
    if not isinstance(broker, LocalLogBackend | KeyValueProvider) or not broker.capabilities.cross_process:
        raise ConfigurationError(
            f"--state reads the state a running observer stored; {redact_url(app.broker_url)} keeps none "
            "that another process can read"
        )
    return default_store(app)


@dataclass(slots=True)
class ObserverStats:
    """Counters of this observer process (monotonic)."""

    events: int = 0
    """Deliveries read (all topics, all flows)."""
    applied: int = 0
    duplicates: int = 0
    undecodable: int = 0
    refused: int = 0
    """Events ignored because they failed the App's signature check (forged, tampered, unauthorized)."""
    notices_published: int = 0
    commits: int = 0
