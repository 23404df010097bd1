"""The envelope: CloudEvents 1.0 attributes plus choreograph's extensions.

Causality rules (enforced by :meth:`Envelope.caused_by` and the runtime):

- a fresh publish starts a new correlation: ``correlationid`` = its own id;
- an event published while handling another inherits the incoming
  ``correlationid`` (it cannot be overridden) and takes the incoming ``id`` as
  its ``causationid``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from choreograph.core import headers as h
from choreograph.core.event import Event
from choreograph.core.ids import new_id


def now_rfc3339() -> str:
    """Return the current UTC time in RFC 3339 with microseconds."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Envelope:
    """One event on the wire. Immutable; use :meth:`replace` to derive a copy.

    ``data`` holds the JSON-compatible payload (a dict for Event payloads).
    ``extensions`` keeps any CloudEvents extension this version does not know,
    so a round trip through choreograph never drops attributes.
    """

    id: str
    source: str
    type: str
    data: Any = None
    specversion: str = h.SPECVERSION
    time: str | None = None
    subject: str | None = None
    datacontenttype: str | None = h.CONTENT_TYPE_JSON
    dataschema: str | None = None
    correlationid: str | None = None
    causationid: str | None = None
    partitionkey: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    schemaversion: int | None = None
    extensions: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_event(
        cls,
        event: Event,
        *,
        source: str,
        key: str | None = None,
        subject: str | None = None,
        event_id: str | None = None,
        data: Any = None,
    ) -> Envelope:
        """Wrap ``event`` as the start of a new correlation (correlation id = own id).

        ``data`` is the event's JSON payload when the caller already has it.
        """
        eid = event_id or new_id()
        return cls(
            id=eid,
            source=source,
            type=event.event_type(),
            data=event.model_dump(mode="json") if data is None else data,
            time=now_rfc3339(),
            subject=subject,
            correlationid=eid,
            partitionkey=key,
            schemaversion=event.event_version(),
        )

    def caused_by(self, cause: Envelope) -> Envelope:
        """Return a copy that continues ``cause``'s correlation, caused by it."""
        return dataclasses.replace(
            self,
            correlationid=cause.correlationid or cause.id,
            causationid=cause.id,
        )

    def replace(self, **changes: Any) -> Envelope:
        """Return a copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    @property
    def key(self) -> str | None:
        """The partition key: events with the same key keep their order."""
        return self.partitionkey

    @property
    def dedupe_key(self) -> str:
        """The inbox key: ``source`` + ``id`` identify an event uniquely."""
        return f"{self.source}\x1f{self.id}"
