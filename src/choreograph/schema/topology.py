"""The shape of an app as the schema tools see it: services, what they publish and consume.

``App.topology()`` returns a :class:`Topology`; AsyncAPI export, the event
catalog and ``schema check`` read only this, so they never depend on the
runtime. Tests build one by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from choreograph.core.errors import ConfigurationError
from choreograph.core.event import Event


@dataclass(frozen=True, slots=True)
class Ownership:
    """Who runs a service: the owning team, its on-call contact and the escalation path.

    ``team`` names the team (it becomes the ``team`` label of the service's
    alerts and selects the Alertmanager receiver); ``oncall`` is where the
    on-call engineer is reached (a chat channel, a pager service, an address);
    ``escalation`` lists who to reach next, in order, when on-call does not
    answer. Text only: choreograph never contacts anyone itself.
    """

    team: str
    oncall: str | None = None
    escalation: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for what, value in (
            ("owner", self.team),
            ("oncall", self.oncall or "x"),
            *(("escalation", e) for e in self.escalation),
        ):
            if not value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
                raise ConfigurationError(f"{what} must be non-empty text without control characters, got {value!r}")

    @classmethod
    def of(cls, owner: str | None, oncall: str | None, escalation: str | Sequence[str] | None) -> Ownership | None:
        """Build from ``App.service`` keyword arguments; None when no owner is given (oncall needs an owner)."""
        if owner is None:
            if oncall is not None or escalation:
                raise ConfigurationError("oncall= and escalation= need owner= (the team that owns the service)")
            return None
        steps = (escalation,) if isinstance(escalation, str) else tuple(escalation or ())
        return cls(owner, oncall, steps)

    def labels(self) -> dict[str, str]:
        """The alert labels naming this owner: ``team``, and ``oncall`` / ``escalation`` when set."""
        out = {"team": self.team}
        if self.oncall:
            out["oncall"] = self.oncall
        if self.escalation:
            out["escalation"] = " -> ".join(self.escalation)
        return out


@dataclass(frozen=True, slots=True)
class HandlerInfo:
    """A handler: its name, the event class it consumes, and its consumer group."""

    name: str
    event: type[Event]
    group: str


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """A service: the handlers it runs, the event classes it publishes, and who owns it (if declared)."""

    name: str
    consumes: tuple[HandlerInfo, ...] = ()
    publishes: tuple[type[Event], ...] = ()
    ownership: Ownership | None = None


@dataclass(frozen=True, slots=True)
class Topology:
    """Every service of an app, in declaration order."""

    app_name: str
    services: tuple[ServiceInfo, ...] = ()

    def events(self) -> list[type[Event]]:
        """Return each distinct event class (by type and version), published ones first, in order."""
        seen: dict[tuple[str, int], type[Event]] = {}
        for service in self.services:
            for event in service.publishes:
                seen.setdefault((event.event_type(), event.event_version()), event)
        for service in self.services:
            for handler in service.consumes:
                seen.setdefault((handler.event.event_type(), handler.event.event_version()), handler.event)
        return list(seen.values())

    def publishers(self, event_type: str) -> list[str]:
        """Return the names of the services that publish ``event_type`` (its owners)."""
        return [s.name for s in self.services if any(e.event_type() == event_type for e in s.publishes)]

    def owners(self) -> dict[str, Ownership]:
        """Service name -> ownership, for the services that declare one."""
        return {s.name: s.ownership for s in self.services if s.ownership is not None}

    def consumers(self, event_type: str) -> list[tuple[str, HandlerInfo]]:
        """Return (service name, handler) for every handler of ``event_type``."""
        return [(s.name, h) for s in self.services for h in s.consumes if h.event.event_type() == event_type]
