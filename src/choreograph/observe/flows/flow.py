"""Flow declarations: which events start, advance, end and compensate a business process.

A :class:`Flow` names the event types of one choreographed process. The
observer follows each instance of it by correlation id; it never sends a
command, so declaring a flow changes nothing in how services behave::

    order_flow = Flow(
        "order",
        start=[OrderPlaced],
        success=[OrderCompleted],
        failure=[OrderCancelled],
        steps=[InventoryReserved, PaymentCaptured, OrderShipped],
        compensations=[Compensation(InventoryReserved, undo=InventoryReleased, when=[PaymentDeclined])],
        timeout=30.0,
    )

Event types are given as Event classes (their stable type name and topic are
used, never the import path) or as :class:`EventRef` for types published by
services written elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from choreograph.core.errors import ConfigurationError
from choreograph.core.event import Event

_FLOW_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


@dataclass(frozen=True, slots=True)
class EventRef:
    """An event type by name, with the topic it is published to (default: the type name)."""

    type: str
    topic: str = ""

    def __post_init__(self) -> None:
        if not self.type:
            raise ConfigurationError("EventRef needs a non-empty event type")
        if not self.topic:
            object.__setattr__(self, "topic", self.type)


EventSpec = type[Event] | EventRef | str
"""How a declaration names an event type: an Event class, an EventRef, or a type name (topic = name)."""


def event_ref(spec: EventSpec) -> EventRef:
    """Return the :class:`EventRef` for an Event class, a type name or an EventRef."""
    if isinstance(spec, EventRef):
        return spec
    if isinstance(spec, str):
        return EventRef(spec)
    if isinstance(spec, type) and issubclass(spec, Event):
        return EventRef(spec.event_type(), spec.topic())
    raise ConfigurationError(f"expected an Event subclass, an EventRef or a type name, got {spec!r}")


def _refs(specs: Iterable[EventSpec]) -> tuple[EventRef, ...]:
    return tuple(event_ref(spec) for spec in specs)


@dataclass(frozen=True, slots=True, init=False)
class Compensation:
    """A saga rule: once ``step`` happened and a ``when`` event follows, ``undo`` must follow.

    ``when`` lists the failure events that require the undo (for example
    PaymentDeclined); empty means "the flow ended in failure". The undo is
    expected within ``timeout`` seconds of the trigger; otherwise the observer
    flags *compensation missing*. A trigger event that the compensating handler
    dead-lettered flags *compensation failed* at once. ``handler`` optionally
    names the compensating consumer group (``service.handler``) so only its
    dead letters count; by default any dead letter of the trigger event in the
    same correlation does.
    """

    step: EventRef
    undo: EventRef
    when: tuple[EventRef, ...]
    timeout: float
    handler: str | None

    def __init__(
        self,
        step: EventSpec,
        *,
        undo: EventSpec,
        when: Sequence[EventSpec] = (),
        timeout: float = 30.0,
        handler: str | None = None,
    ) -> None:
        if not timeout > 0:
            raise ConfigurationError(f"Compensation timeout must be > 0 seconds, got {timeout!r}")
        object.__setattr__(self, "step", event_ref(step))
        object.__setattr__(self, "undo", event_ref(undo))
        object.__setattr__(self, "when", _refs(when))
        object.__setattr__(self, "timeout", float(timeout))
        object.__setattr__(self, "handler", handler)

    @property
    def name(self) -> str:
        """A label such as ``shop.inventory.reserved -> shop.inventory.released``."""
        return f"{self.step.type} -> {self.undo.type}"


@dataclass(frozen=True, slots=True, init=False)
class Flow:
    """A declared business process, followed by correlation id.

    An instance starts with a ``start`` event and is final at its first
    ``success`` or ``failure`` event. ``steps`` are the expected intermediate
    events, in happy-path order (used for per-step latency and for saying what
    an instance waits for). An instance not final ``timeout`` seconds after its
    start is *stuck*.
    """

    name: str
    start: tuple[EventRef, ...]
    success: tuple[EventRef, ...]
    failure: tuple[EventRef, ...]
    steps: tuple[EventRef, ...]
    compensations: tuple[Compensation, ...]
    timeout: float
    types: frozenset[str] = field(repr=False)
    kinds: dict[str, str] = field(repr=False, compare=False)
    """Event type -> ``start``, ``success``, ``failure`` or ``step``."""

    def __init__(
        self,
        name: str,
        *,
        start: Sequence[EventSpec],
        success: Sequence[EventSpec],
        failure: Sequence[EventSpec] = (),
        steps: Sequence[EventSpec] = (),
        compensations: Sequence[Compensation] = (),
        timeout: float = 60.0,
    ) -> None:
        if not _FLOW_NAME.match(name):
            raise ConfigurationError(
                f"flow name {name!r} must be lowercase letters, digits, '-' or '_', starting with a letter"
            )
        if not start:
            raise ConfigurationError(f"flow {name!r} needs at least one start event")
        if not success:
            raise ConfigurationError(f"flow {name!r} needs at least one success event")
        if not timeout > 0:
            raise ConfigurationError(f"flow {name!r}: timeout must be > 0 seconds, got {timeout!r}")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "start", _refs(start))
        object.__setattr__(self, "success", _refs(success))
        object.__setattr__(self, "failure", _refs(failure))
        object.__setattr__(self, "steps", _refs(steps))
        object.__setattr__(self, "compensations", tuple(compensations))
        object.__setattr__(self, "timeout", float(timeout))
        terminal = {ref.type for ref in (*self.success, *self.failure)}
        overlap = terminal & {ref.type for ref in self.start}
        if overlap:
            raise ConfigurationError(f"flow {name!r}: {', '.join(sorted(overlap))} cannot both start and end it")
        both = {ref.type for ref in self.success} & {ref.type for ref in self.failure}
        if both:
            raise ConfigurationError(f"flow {name!r}: {', '.join(sorted(both))} is both success and failure")
        object.__setattr__(self, "types", frozenset(ref.type for ref in self.refs))
        kinds = dict.fromkeys(self.types, "step")
        for kind, refs in (("failure", self.failure), ("success", self.success), ("start", self.start)):
            kinds.update(dict.fromkeys((ref.type for ref in refs), kind))
        object.__setattr__(self, "kinds", kinds)

    @property
    def refs(self) -> tuple[EventRef, ...]:
        """Every event type the flow mentions, each once, in declaration order."""
        seen: dict[str, EventRef] = {}
        for ref in (*self.start, *self.steps, *self.success, *self.failure):
            seen.setdefault(ref.type, ref)
        for rule in self.compensations:
            for ref in (rule.step, rule.undo, *rule.when):
                seen.setdefault(ref.type, ref)
        return tuple(seen.values())

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics the observer subscribes to for this flow, sorted."""
        return tuple(sorted({ref.topic for ref in self.refs}))

    @property
    def group(self) -> str:
        """The observer's consumer group for this flow: ``observer.<name>``."""
        return f"observer.{self.name}"

    def kind_of(self, event_type: str) -> str | None:
        """Return ``start``, ``success``, ``failure``, ``step`` or None if the flow ignores the type."""
        return self.kinds.get(event_type)


def check_flows(flows: Sequence[Flow]) -> None:
    """Raise ConfigurationError if ``flows`` is empty or two flows share a name."""
    if not flows:
        raise ConfigurationError("declare at least one Flow to observe")
    names = [flow.name for flow in flows]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigurationError(f"flow names must be unique; repeated: {', '.join(duplicates)}")
