"""The per-delivery context a handler receives, and the outcome it records."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from choreograph.core.broker import Delivery
from choreograph.core.envelope import Envelope, now_rfc3339
from choreograph.core.event import Event
from choreograph.core.ids import derived_id

if TYPE_CHECKING:
    from choreograph.runtime.service import HandlerSpec


class Outcome(enum.Enum):
    """What became of one delivery. Exactly one per delivery."""

    SUCCESS = "success"
    DUPLICATE = "duplicate"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


@dataclass(slots=True)
class Context:
    """What a handler knows about the event it handles, and how it publishes.

    Events published through :meth:`publish` (or returned by the handler) are
    sent only if the handling succeeds, atomically with the acknowledgement
    where the broker supports it. They continue the incoming correlation, name
    the incoming event as their cause, and get ids derived from (incoming id,
    group, position), so a re-run after a crash emits the very same ids.
    """

    envelope: Envelope
    delivery: Delivery
    handler: HandlerSpec
    event: Event | None = None
    outputs: list[tuple[str, Envelope]] = field(default_factory=list)
    outcome: Outcome = Outcome.SUCCESS
    retry_delay: float = 0.0
    error: BaseException | None = None
    reason: str = ""
    stack: str = ""
    """The formatted traceback of ``error`` (set with it by the failure policy), kept in the dead letter."""
    seen: set[str] = field(default_factory=set)
    """Inbox keys of the batch that this handler's group already processed: the consumer looks the batch up
    once, and ``inbox_dedupe`` reads it and adds each key it handles (one set shared by the batch)."""
    traceparent: str | None = None
    """Trace context for outgoing events; a tracing middleware sets it to its span."""
    admit: Callable[[Event], dict[str, Any]] | None = None
    """Checks an outgoing event against the schema registry and returns its payload."""
    tracestate: str | None = None
    derive_id: Callable[[str], str] | None = None
    """Maps each output's public derived id to the id sent (keyed when signing is on; set by the consumer)."""

    @property
    def attempt(self) -> int:
        """Which delivery of this event to this handler this is (1-based, durable)."""
        return self.delivery.attempt

    @property
    def correlation_id(self) -> str:
        """The business process this event belongs to."""
        return self.envelope.correlationid or self.envelope.id

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose lines carry this event's correlation, causation, id, type and handler."""
        return logging.LoggerAdapter(
            logging.getLogger(f"choreograph.handler.{self.handler.group}"), dict(self.log_fields)
        )

    @property
    def log_fields(self) -> Mapping[str, Any]:
        """Fields every log line written while handling carries."""
        return {
            "correlation_id": self.correlation_id,
            "causation_id": self.envelope.causationid,
            "event_id": self.envelope.id,
            "event_type": self.envelope.type,
            "service": self.handler.service,
            "handler": self.handler.name,
        }

    def publish(self, event: Event, *, key: str | None = None, subject: str | None = None) -> Envelope:
        """Queue ``event`` for publishing when this handling succeeds; return its envelope.

        ``key`` defaults to the incoming event's partition key, so a process
        keeps its per-key order from hop to hop.
        """
        position = len(self.outputs)
        eid = derived_id(self.envelope.id, self.handler.group, position)
        if self.derive_id is not None:  # the id returned here is the id sent (keyed: not predictable)
            eid = self.derive_id(eid)
        envelope = Envelope(
            id=eid,
            source=self.handler.service,
            type=event.event_type(),
            data=self.admit(event) if self.admit else event.model_dump(mode="json"),
            time=now_rfc3339(),
            subject=subject,
            partitionkey=key if key is not None else self.envelope.partitionkey,
            schemaversion=event.event_version(),
            traceparent=self.traceparent or self.envelope.traceparent,
            tracestate=self.tracestate or self.envelope.tracestate,
        ).caused_by(self.envelope)
        self.outputs.append((event.topic(), envelope))
        return envelope
