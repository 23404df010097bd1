"""The shape of an app as the schema tools see it: services, what they publish and consume.

``App.topology()`` returns a :class:`Topology`; AsyncAPI export, the event
catalog and ``schema check`` read only this, so they never depend on the
runtime. Tests build one by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from choreograph.core.event import Event


@dataclass(frozen=True, slots=True)
class HandlerInfo:
    """A handler: its name, the event class it consumes, and its consumer group."""

    name: str
    event: type[Event]
    group: str


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """A service: the handlers it runs and the event classes it publishes."""

    name: str
    consumes: tuple[HandlerInfo, ...] = ()
    publishes: tuple[type[Event], ...] = ()


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

    def consumers(self, event_type: str) -> list[tuple[str, HandlerInfo]]:
        """Return (service name, handler) for every handler of ``event_type``."""
        return [(s.name, h) for s in self.services for h in s.consumes if h.event.event_type() == event_type]
