"""The App: composition root of services, handlers, middleware and the broker.

There is no global app or broker: everything hangs off an :class:`App` value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from choreograph.brokers import open_broker, resolve_url
from choreograph.core import codec
from choreograph.core.broker import Broker, Record
from choreograph.core.clock import Clock, SystemClock
from choreograph.core.envelope import Envelope
from choreograph.core.errors import ConfigurationError
from choreograph.core.event import Event
from choreograph.runtime.consumer import Consumer, ConsumerConfig, HandlerStats, SettleListener
from choreograph.runtime.context import Context
from choreograph.runtime.loop_monitor import LoopMonitor
from choreograph.runtime.middleware import (
    Handler,
    Middleware,
    OptionsMiddleware,
    Publisher,
    PublisherMiddleware,
    chain,
    failure_policy,
    for_handler,
    inbox_dedupe,
    owned_options,
    with_timeout,
)
from choreograph.runtime.options import CONSUMER_OPTIONS, check_owned
from choreograph.runtime.publishing import Publishing, PublishPolicy
from choreograph.runtime.schema_store import close_schema_store, default_schema_store
from choreograph.runtime.service import HandlerSpec, Service
from choreograph.schema.errors import SchemaError
from choreograph.schema.registry import SchemaRegistry
from choreograph.schema.topology import HandlerInfo, Ownership, ServiceInfo, Topology
from choreograph.schema.upcast import Upcasters
from choreograph.schema.validation import SchemaGuard

if TYPE_CHECKING:
    from choreograph.security.guard import Security

logger = logging.getLogger("choreograph.app")


class App:
    """A set of services sharing one broker.

    ``broker`` is a URL or a Broker; default: ``$CHOREOGRAPH_BROKER`` or
    ``sqlite:///./choreograph.db``. The broker is created on first use.

    Schemas: every event class the app publishes or consumes is checked
    against ``schemas`` (default: the registry the broker keeps — the SQLite
    log's own file, the NATS, Redis or Kafka key-value store — or an in-memory
    one for ``memory://`` and a broker passed as an instance) under its type's compatibility
    mode before its first use; an incompatible version raises
    ``IncompatibleSchema`` and nothing is published. With ``register_schemas``
    a compatible new version is registered; without it, registration is left
    to CI (``choreograph schema register``). Payloads are validated on publish
    and on consume; a consumed event of an older version is upcast through
    ``app.upcasters``, one that fails validation is dead-lettered ("schema").

    Publishing: ``publishing`` bounds every publish call (default: a 30 s
    deadline, no throttle); past it the call raises ``PublishTimeout`` naming
    the broker. See :mod:`choreograph.runtime.publishing`.
    """

    def __init__(
        self,
        name: str = "app",
        *,
        broker: str | Broker | None = None,
        consumer: ConsumerConfig | None = None,
        clock: Clock | None = None,
        schemas: SchemaRegistry | None = None,
        register_schemas: bool = True,
        security: Security | None = None,
        publishing: PublishPolicy | None = None,
    ) -> None:
        self.name = name
        self._broker_arg = broker
        self._broker: Broker | None = broker if not isinstance(broker, str | None) else None
        self._services: dict[str, Service] = {}
        self._middleware: list[Middleware | OptionsMiddleware] = []
        self._consumer_config = consumer or ConsumerConfig()
        self._clock = clock or SystemClock()
        self.loop_monitor: LoopMonitor | None = None
        """Watches the event loop while :meth:`run` runs (stalls, blocked seconds, the longest)."""
        self._consumers: list[Consumer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._publisher_middleware: list[PublisherMiddleware] = []
        self._listeners: list[SettleListener] = []
        self._schemas = schemas
        self._register_schemas = register_schemas
        self.security = security
        """Signing, access policy and encryption (``choreograph.security``); None: all off."""
        self.publishing = Publishing(publishing or PublishPolicy(), self._broker_name)
        """The publish deadline and throttle (``choreograph.runtime.publishing``)."""
        self._guard: SchemaGuard | None = None
        self._admitted: set[type[Event]] = set()
        self.upcasters = Upcasters()
        """Upcast functions from old event versions to new ones (``app.upcasters.register``)."""
        self.declarations: list[object] = []
        """Flows, SLOs and other declarations that higher layers read (see :meth:`declare`)."""

    # -- composition -----------------------------------------------------

    def service(
        self,
        name: str,
        *,
        owner: str | None = None,
        oncall: str | None = None,
        escalation: str | Sequence[str] | None = None,
    ) -> Service:
        """Return the service called ``name``, creating it on first use.

        ``owner`` (the team), ``oncall`` (where its on-call is reached) and
        ``escalation`` (who next, in order) declare who runs the service: they
        appear in the catalog, the AsyncAPI document (``x-owner``) and as labels
        on every alert about it. Given once; a different declaration later raises
        ConfigurationError.
        """
        ownership = Ownership.of(owner, oncall, escalation)
        if name not in self._services:
            self._services[name] = Service(name, ownership=ownership)
        service = self._services[name]
        if ownership is not None and service.ownership != ownership:
            if service.ownership is not None:
                raise ConfigurationError(f"service {name!r} is already owned by {service.ownership.team!r}")
            service.ownership = ownership
        return service

    @property
    def services(self) -> dict[str, Service]:
        """Services by name, in declaration order."""
        return dict(self._services)

    @property
    def handlers(self) -> list[HandlerSpec]:
        """Every registered handler, in declaration order."""
        return [spec for service in self._services.values() for spec in service.handlers]

    def topology(self) -> Topology:
        """Describe the app for schema tools, AsyncAPI and the catalog: who publishes and consumes what."""
        return Topology(
            app_name=self.name,
            services=tuple(
                ServiceInfo(
                    name=service.name,
                    consumes=tuple(HandlerInfo(spec.name, spec.event, spec.group) for spec in service.handlers),
                    publishes=tuple(service.published_events()),
                    ownership=service.ownership,
                )
                for service in self._services.values()
            ),
        )

    def use(self, middleware: Middleware | OptionsMiddleware) -> None:
        """Add ``middleware`` around every handler (first added runs outermost).

        App middleware runs outside inbox dedupe and the failure policy, so it
        sees every delivery's outcome on the context (success, duplicate,
        retry, dead letter) without catching anything. An
        :class:`~choreograph.runtime.middleware.OptionsMiddleware` owns
        per-handler options: it is built once per handler, from its spec, and
        may stay out of handlers that declare none of its options.
        """
        if self._consumers:
            raise ConfigurationError("add middleware before the app starts")
        self._middleware.append(middleware)

    def use_publisher(self, middleware: PublisherMiddleware) -> None:
        """Add ``middleware`` around :meth:`publish` (tracing, metrics, signing)."""
        self._publisher_middleware.append(middleware)

    def add_listener(self, listener: SettleListener) -> None:
        """Call ``listener`` after each batch a handler settled (metrics, audits)."""
        self._listeners.append(listener)

    def declare(self, *items: object) -> None:
        """Attach declarations (flows, SLOs) for the observer, metrics and CLI to find."""
        self.declarations.extend(items)

    @property
    def broker_url(self) -> str:
        """The URL the broker is opened from (or ``<instance>`` when one was passed)."""
        return (
            self._broker_arg
            if isinstance(self._broker_arg, str)
            else ("<instance>" if self._broker_arg is not None else resolve_url(None))
        )

    def _broker_name(self) -> str:
        """The broker as an error message names it: its URL, or the class of an instance passed in."""
        return type(self._broker_arg).__name__ if self.broker_url == "<instance>" else self.broker_url

    def configure_broker(self, broker: str | Broker) -> None:
        """Replace the broker (a URL or instance) before first use, e.g. from ``--broker``."""
        if self._broker is not None and self._broker is not broker:
            raise ConfigurationError("the broker is already in use; configure it before publishing or starting")
        self._broker_arg = broker
        self._broker = None if isinstance(broker, str) else broker
        if self._schemas is None:  # the default registry lives with the broker: rebuild it
            self._close_schema_store()
            self._guard = None
            self._admitted.clear()

    @property
    def broker(self) -> Broker:
        """The broker, created on first access."""
        if self._broker is None:
            self._broker = open_broker(self._broker_arg if isinstance(self._broker_arg, str) else None)
        return self._broker

    @property
    def schema_guard(self) -> SchemaGuard:
        """The schema registry check used on publish and consume, created on first use."""
        if self._guard is None:
            registry = self._schemas
            if registry is None:
                # A broker instance gives no URL to open the store's own connection from: schemas stay in memory.
                arg = self._broker_arg
                store = default_schema_store(arg) if isinstance(arg, str) or arg is None else None
                registry = SchemaRegistry(store, clock=self._clock)
            self._guard = SchemaGuard(registry, register=self._register_schemas, upcasters=self.upcasters)
        return self._guard

    def check_options(self) -> None:
        """Raise ConfigurationError for a handler option that neither the consumer nor installed middleware owns.

        :meth:`start` calls it before anything runs; call it in a test or CI
        to find a missing ``app.use(...)`` without starting the app.
        """
        owned = (*CONSUMER_OPTIONS, *owned_options(self._middleware))
        for spec in self.handlers:
            check_owned(spec.options, owned, spec.group)

    async def check_schemas(self) -> None:
        """Check every event class of the app against the registry now (raises IncompatibleSchema)."""
        await asyncio.to_thread(self.schema_guard.admit_topology, self.topology())

    @property
    def clock(self) -> Clock:
        """The clock used for dead-letter timestamps and retry due times."""
        return self._clock

    # -- publishing --------------------------------------------------------

    async def publish(
        self, event: Event, *, key: str | None = None, source: str | None = None, subject: str | None = None
    ) -> Envelope:
        """Publish ``event`` as the start of a new correlation; return its envelope.

        Durable (per the broker's setting) when it returns. ``key`` is the
        partition key: events with the same key are handled in order.
        """
        async with self.publishing.bound(event.topic()):
            envelope = await self._envelope(event, source=source or self.name, key=key, subject=subject)
            return (await self._publish_chain()(event.topic(), [envelope]))[0]

    async def _envelope(self, event: Event, *, source: str, key: str | None, subject: str | None = None) -> Envelope:
        guard = self.schema_guard
        if type(event) not in self._admitted:
            await asyncio.to_thread(guard.admit, type(event))  # blocks on the registry once per class
            self._admitted.add(type(event))
        return Envelope.for_event(event, source=source, key=key, subject=subject, data=guard.outgoing(event))

    async def publish_envelope(self, topic: str, envelope: Envelope) -> Envelope:
        """Publish a ready-made envelope (its ids and causality are kept); return it as sent."""
        async with self.publishing.bound(topic):
            return (await self._publish_chain()(topic, [envelope]))[0]

    async def _send(self, topic: str, envelopes: list[Envelope]) -> list[Envelope]:
        if self.security is not None:  # encrypt, then sign: innermost, after every publisher middleware
            envelopes = await self.security.seal(envelopes)
        await self.publishing.send(
            self.broker, topic, [Record(codec.encode(env), env.partitionkey) for env in envelopes]
        )
        return envelopes

    def _publish_chain(self) -> Publisher:
        publisher: Publisher = self._send
        for middleware in reversed(self._publisher_middleware):
            publisher = middleware(publisher)
        return publisher

    async def publish_many(self, events: Iterable[tuple[Event, str | None]]) -> list[Envelope]:
        """Publish (event, key) pairs in order, batched per topic, each starting a new correlation."""
        by_topic: dict[str, list[Envelope]] = {}
        for event, key in events:
            envelope = await self._envelope(event, source=self.name, key=key)
            by_topic.setdefault(event.topic(), []).append(envelope)
        publish = self._publish_chain()
        sent: list[Envelope] = []
        for topic, envelopes in by_topic.items():  # each topic's batch has a deadline of its own
            async with self.publishing.bound(topic):
                sent.extend(await publish(topic, envelopes))
        return sent

    # -- running -----------------------------------------------------------

    def pipeline_for(self, spec: HandlerSpec) -> Consumer:
        """Build the consumer (and its middleware pipeline) for one handler."""
        check_owned(spec.options, (*CONSUMER_OPTIONS, *owned_options(self._middleware)), spec.group)
        middlewares = [*for_handler(self._middleware, spec), inbox_dedupe, failure_policy, with_timeout]
        guard = self.schema_guard
        if self.security is not None:
            self.security.check_service(spec.service, [spec.topic])
        return Consumer(
            self.broker,
            spec,
            chain(middlewares, self._invoker(spec, guard)),
            config=self._consumer_config,
            clock=self._clock,
            listeners=self._listeners,
            admit=guard.outgoing,
            security=self.security,
        )

    @staticmethod
    def _invoker(spec: HandlerSpec, guard: SchemaGuard) -> Handler:
        """The innermost handler: validate (upcasting old versions), call, queue outputs."""
        model = spec.event
        own_version = model.event_version()

        async def invoke(envelope: Envelope, ctx: Context) -> None:
            data = envelope.data
            version = envelope.schemaversion
            # A newer producer's extra fields are read as the event class says (its ``extra``: "forbid" refuses
            # them, "ignore" drops them), the same rule ``schema diff`` applies: see choreograph.schema.tolerance.
            try:
                ctx.event = guard.incoming(model, data, version=version)
            except SchemaError:
                raise
            except Exception as exc:  # an upcaster or validator bug: the data cannot be read, retrying won't help
                raise SchemaError(
                    f"{envelope.type} v{version} could not be read as v{own_version}: {type(exc).__name__}: {exc}"
                ) from exc
            result = await spec.func(ctx.event, ctx)
            if result is not None:
                spec.collect(result, ctx)

        return invoke

    def _select(self, services: Sequence[str] | None) -> list[HandlerSpec]:
        if not services:
            return self.handlers
        unknown = [name for name in services if name not in self._services]
        if unknown:
            raise ConfigurationError(
                f"unknown service(s) {', '.join(unknown)}; this app has: {', '.join(self._services) or 'none'}"
            )
        return [spec for name in services for spec in self._services[name].handlers]

    async def start(self, services: Sequence[str] | None = None, *, fail_fast: bool = False) -> None:
        """Start a consumer per handler of ``services`` (all by default). Returns at once.

        Raises IncompatibleSchema (before consuming anything) if an event class
        breaks its type's compatibility mode in the registry. A consumer that
        crashes (a runtime or middleware failure, not a handler's) is logged,
        counted in its stats' ``crashes`` and restarted with backoff, so the
        other handlers go on; with ``fail_fast`` its task ends with the error
        instead (:meth:`run` then stops everything and raises it).
        """
        if self._tasks:
            raise ConfigurationError("app already started")
        self.check_options()
        await self.check_schemas()
        for spec in self._select(services):
            consumer = self.pipeline_for(spec)
            self._consumers.append(consumer)
            self._tasks.append(
                asyncio.create_task(consumer.run_supervised(fail_fast=fail_fast), name=f"consumer:{spec.group}")
            )

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop consumers: each finishes and settles the batch in hand, then leaves its group.

        Handlers still running after ``timeout`` seconds are cancelled; their
        deliveries stay unsettled and are delivered again later (cancellation
        is not a failure and counts no attempt).
        """
        for consumer in self._consumers:
            consumer.stop()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def run(
        self,
        services: Sequence[str] | None = None,
        *,
        stop_timeout: float = 30.0,
        fail_fast: bool = False,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        """Run until SIGINT or SIGTERM, then stop gracefully and close the broker.

        A consumer that crashes restarts with backoff (see :meth:`start`); with
        ``fail_fast`` the first crash stops every consumer and is raised.
        A consumer that finds the broker's storage gone (StorageLost) stops
        everything and raises it, whatever ``fail_fast`` says. While running,
        :attr:`loop_monitor` reports a handler that blocks the event loop.
        ``on_ready`` is called once SIGINT/SIGTERM stop the app gracefully and
        its consumers have started: announce readiness there, so a signal sent
        by whoever read the announcement is never a hard kill.
        """
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await self.start(services, fail_fast=fail_fast)
        monitor = self.loop_monitor = LoopMonitor()
        monitor.start()
        try:
            if on_ready is not None:
                on_ready()
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait([waiter, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            for task in self._tasks:
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            monitor.stop()
            await self.stop(stop_timeout)
            await self.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    def stats(self) -> dict[str, HandlerStats]:
        """Counters per consumer group for the handlers running in this process."""
        return {consumer.spec.group: consumer.stats for consumer in self._consumers}

    async def close(self) -> None:
        """Stop consumers if running and close the broker. Idempotent."""
        if self._tasks:
            await self.stop()
        if self._broker is not None:
            await self._broker.close()
        self._close_schema_store()

    def _close_schema_store(self) -> None:
        # Only the store this app opened itself; a registry passed in belongs to the caller.
        if self._guard is not None and self._schemas is None:
            close_schema_store(self._guard.registry.store)

    async def __aenter__(self) -> App:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
