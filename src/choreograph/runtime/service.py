"""Services and their handlers.

A :class:`Service` is a named unit of deployment. Each handler registered with
``@service.on(EventType)`` is its own consumer group (``service.handler``), with
its own offsets, retries and dead letters: a slow or failing handler never holds
back another.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args

from choreograph.core.broker import Position
from choreograph.core.errors import ConfigurationError, ContractError
from choreograph.core.event import Event
from choreograph.core.names import check_group, check_service
from choreograph.runtime.breaker import CircuitBreaker
from choreograph.runtime.context import Context
from choreograph.runtime.options import HandlerOption, OptionT, check_declared, find
from choreograph.runtime.retry import RetryPolicy
from choreograph.schema.topology import Ownership

E = TypeVar("E", bound=Event)
HandlerResult = Event | Sequence[Event] | None
HandlerFunc = Callable[[Any, Context], Awaitable[HandlerResult]]
UnknownTypes = Literal["skip", "dead_letter"]
"""What a handler does with an event of another type on its topic: acknowledge it unhandled, or dead-letter it."""


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A registered handler and the options that govern its delivery."""

    service: str
    name: str
    event: type[Event]
    func: HandlerFunc
    retry: RetryPolicy
    timeout: float | None
    concurrency: int
    dedupe: bool
    start: Position
    publishes: tuple[type[Event], ...] = field(default=())
    breaker: CircuitBreaker | None = None
    unknown_types: UnknownTypes = "skip"
    options: tuple[HandlerOption, ...] = ()
    """Options declared with ``options=[...]``, each read by the middleware that owns its type."""

    def option(self, kind: type[OptionT]) -> OptionT | None:
        """Return this handler's option of type ``kind`` (or a subclass), or None if it declares none.

        Scans the declared options: call it once per handler (when a consumer
        or a middleware is built), not per event.
        """
        return find(self.options, kind)

    @property
    def group(self) -> str:
        """The consumer group: one per handler."""
        return f"{self.service}.{self.name}"

    @property
    def topic(self) -> str:
        """The topic this handler consumes."""
        return self.event.topic()

    def collect(self, result: HandlerResult, ctx: Context) -> None:
        """Queue what the handler returned (an event, a list of events, or None) for publishing."""
        if result is None:
            return
        for produced in (result,) if isinstance(result, Event) else result:
            if not isinstance(produced, Event):
                raise ContractError(
                    f"handler {self.group} returned {type(produced).__name__}; "
                    "return an Event, a list of Events, or None"
                )
            ctx.publish(produced)


class Service:
    """A named group of handlers deployed together. Create with ``App.service(name)``."""

    def __init__(self, name: str, *, ownership: Ownership | None = None) -> None:
        check_service(name)
        self.name = name
        self.ownership = ownership
        """Who owns the service (team, on-call, escalation), if declared; shown in the catalog and alerts."""
        self.handlers: list[HandlerSpec] = []
        self.declared_publishes: list[type[Event]] = []

    def publishes(self, *events: type[Event]) -> None:
        """Declare event types this service publishes outside handlers (e.g. from an API).

        Handlers' outputs are found from their return annotations and
        ``publishes=``; this is for the rest, so the catalog knows every owner.
        """
        for event in events:
            event.event_type()
            if event not in self.declared_publishes:
                self.declared_publishes.append(event)

    def published_events(self) -> list[type[Event]]:
        """Every event type this service publishes: declared, and from its handlers."""
        found = list(self.declared_publishes)
        for spec in self.handlers:
            for event in (*spec.publishes, *_returned_events(spec.func)):
                if event not in found:
                    found.append(event)
        return found

    def on(
        self,
        event: type[E],
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = 30.0,
        concurrency: int = 16,
        dedupe: bool = True,
        start: Position | None = None,
        publishes: Sequence[type[Event]] = (),
        breaker: CircuitBreaker | None = None,
        unknown_types: UnknownTypes = "skip",
        options: Sequence[HandlerOption] = (),
    ) -> Callable[[Callable[[E, Context], Awaitable[HandlerResult]]], Callable[[E, Context], Awaitable[HandlerResult]]]:
        """Register an async handler for ``event``.

        The handler receives the validated event and a :class:`Context`; it may
        return an event or a list of events to publish. Events with the same
        partition key are handled one at a time, in order; up to
        ``concurrency`` keys are handled at once. ``timeout`` (seconds) bounds
        one attempt. ``start`` is where a new group begins (default: earliest).
        ``publishes`` declares the event types it emits, for the catalog.
        ``breaker`` pauses this handler after consecutive failures (see
        :class:`~choreograph.runtime.breaker.CircuitBreaker`).

        The handler handles only events of ``event``'s type (any version:
        older ones are upcast, newer ones read tolerantly). Other types on a
        shared topic are acknowledged and counted as skipped; with
        ``unknown_types="dead_letter"`` (a topic meant for this type alone)
        they are dead-lettered with reason ``type`` instead.

        ``options`` are typed per-handler options, such as
        ``RateLimit(per_second=50)``; each is read by the consumer or by the
        installed middleware that owns its type, and the App refuses to start
        with an option nothing installed owns (see :mod:`choreograph.runtime.options`).
        """
        if not (isinstance(event, type) and issubclass(event, Event)):
            raise ContractError(f"@on() takes an Event subclass, got {event!r}")
        event.event_type()
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be >= 1, got {concurrency}")
        if unknown_types not in get_args(UnknownTypes):
            raise ConfigurationError(f"unknown_types must be 'skip' or 'dead_letter', got {unknown_types!r}")
        if timeout is not None and timeout <= 0:
            raise ConfigurationError(f"timeout must be > 0 seconds or None, got {timeout}")

        def register(
            func: Callable[[E, Context], Awaitable[HandlerResult]],
        ) -> Callable[[E, Context], Awaitable[HandlerResult]]:
            if not inspect.iscoroutinefunction(func):
                raise ContractError(f"handler {func.__qualname__} must be declared with 'async def'")
            handler_name = (name or func.__name__).replace("_", "-")
            check_group(f"{self.name}.{handler_name}")  # the consumer group it will join: refuse it now
            declared = check_declared(options, f"{self.name}.{handler_name}")
            if any(h.name == handler_name for h in self.handlers):
                raise ConfigurationError(
                    f"service {self.name!r} already has a handler named {handler_name!r}; pass name=..."
                )
            self.handlers.append(
                HandlerSpec(
                    service=self.name,
                    name=handler_name,
                    event=event,
                    func=func,
                    retry=retry or RetryPolicy(),
                    timeout=timeout,
                    concurrency=concurrency,
                    dedupe=dedupe,
                    start=start or Position.earliest(),
                    publishes=tuple(publishes),
                    breaker=breaker,
                    unknown_types=unknown_types,
                    options=declared,
                )
            )
            return func

        return register


def _returned_events(func: Callable[..., Any]) -> list[type[Event]]:
    """Event classes named in ``func``'s return annotation (``A | B``, ``list[A]``, ``A | None``)."""
    try:
        hint = typing.get_type_hints(func).get("return")
    except (NameError, TypeError):  # unresolvable forward references: nothing to infer
        return []
    found: list[type[Event]] = []
    pending = [hint]
    while pending:
        item = pending.pop(0)
        if isinstance(item, type) and issubclass(item, Event) and item.__event_type__:
            found.append(item)
        else:
            pending.extend(typing.get_args(item))
    return found
