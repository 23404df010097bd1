"""Tracing with OpenTelemetry: a span per publish and per handling attempt.

Install on an App with :func:`install_tracing`; it adds

- a publisher middleware: a PRODUCER span per envelope sent by
  :meth:`App.publish` (``send <topic>``), whose context is written into the
  envelope's ``traceparent`` / ``tracestate`` (W3C Trace Context);
- a handler middleware: a CONSUMER span per handling attempt
  (``process <topic>``), child of the producer span found in the incoming
  envelope, current while the handler runs. When the attempt succeeds, each
  event it emits gets its own PRODUCER span, child of the CONSUMER span, and
  the outgoing envelope carries that span's context — so one correlation is
  one connected trace across services, and a retried step shows one CONSUMER
  span per attempt (``choreograph.attempt``, ``choreograph.outcome``);
- a settle listener: a ``settle <topic>`` span per settled batch, linked to
  the producer span of every message in the batch.

Attributes follow the OpenTelemetry messaging semantic conventions
(``messaging.system="choreograph"``, ``messaging.destination.name``,
``messaging.operation.type``, ``messaging.message.id``,
``messaging.consumer.group.name``, ``messaging.message.conversation_id`` =
correlation id). Only the OpenTelemetry *API* is needed; spans are recorded
once an SDK tracer provider is configured (``pip install 'choreograph[otel]'``).
Without one, each handling costs one check of the global tracer provider
(see ``bench/tracing_bench.py``); incoming trace context is passed through
unchanged, so a later hop that does trace still joins the caller's trace.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from choreograph.core import codec
from choreograph.core import headers as h
from choreograph.core.broker import Settlement
from choreograph.core.enums import DeadLetterReason
from choreograph.core.envelope import Envelope
from choreograph.core.errors import DecodeError
from choreograph.runtime.app import App
from choreograph.runtime.context import Context, Outcome
from choreograph.runtime.middleware import Handler, Publisher
from choreograph.runtime.service import HandlerSpec

INSTRUMENTATION_NAME: Final = "choreograph"
SYSTEM: Final = "choreograph"

# OpenTelemetry messaging semantic conventions (attribute names, defined once).
MESSAGING_SYSTEM: Final = "messaging.system"
DESTINATION_NAME: Final = "messaging.destination.name"
DESTINATION_PARTITION: Final = "messaging.destination.partition.id"
OPERATION_TYPE: Final = "messaging.operation.type"
OPERATION_NAME: Final = "messaging.operation.name"
MESSAGE_ID: Final = "messaging.message.id"
CONVERSATION_ID: Final = "messaging.message.conversation_id"
CONSUMER_GROUP: Final = "messaging.consumer.group.name"
BATCH_COUNT: Final = "messaging.batch.message_count"
CLOUDEVENTS_ID: Final = "cloudevents.event_id"
CLOUDEVENTS_SOURCE: Final = "cloudevents.event_source"
CLOUDEVENTS_TYPE: Final = "cloudevents.event_type"
ATTEMPT: Final = "choreograph.attempt"
OUTCOME: Final = "choreograph.outcome"
SERVICE: Final = "choreograph.service"
HANDLER: Final = "choreograph.handler"
CAUSATION_ID: Final = "choreograph.causation_id"
DEAD_LETTER_REASON: Final = "choreograph.dead_letter.reason"

_propagator = TraceContextTextMapPropagator()
RECHECK_INTERVAL: Final = 1.0
"""Seconds between checks for a newly configured SDK while tracing is off."""
_NO_OP_PROVIDERS: Final = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


def parent_context(envelope: Envelope) -> otel_context.Context | None:
    """Return the OpenTelemetry context carried by ``envelope`` (None if it carries none)."""
    if not envelope.traceparent:
        return None
    carrier = {h.TRACEPARENT: envelope.traceparent}
    if envelope.tracestate:
        carrier[h.TRACESTATE] = envelope.tracestate
    return _propagator.extract(carrier)


def span_headers(span: Span) -> tuple[str | None, str | None]:
    """Return (traceparent, tracestate) for ``span`` in W3C Trace Context format."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get(h.TRACEPARENT), carrier.get(h.TRACESTATE)


def with_span(envelope: Envelope, span: Span) -> Envelope:
    """Return ``envelope`` carrying ``span``'s trace context (unchanged if the span is invalid)."""
    traceparent, tracestate = span_headers(span)
    if traceparent is None:
        return envelope
    return envelope.replace(traceparent=traceparent, tracestate=tracestate)


def _event_attributes(topic: str, envelope: Envelope, operation: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        MESSAGING_SYSTEM: SYSTEM,
        DESTINATION_NAME: topic,
        OPERATION_TYPE: operation,
        OPERATION_NAME: operation,
        MESSAGE_ID: envelope.id,
        CONVERSATION_ID: envelope.correlationid or envelope.id,
        CLOUDEVENTS_ID: envelope.id,
        CLOUDEVENTS_SOURCE: envelope.source,
        CLOUDEVENTS_TYPE: envelope.type,
    }
    if envelope.causationid:
        attributes[CAUSATION_ID] = envelope.causationid
    return attributes


class Tracing:
    """The tracing middlewares and settle listener of one App. Safe to share across handlers."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._provider = tracer_provider
        self._enabled = False
        self._recheck_at = 0.0
        self._tracer: Tracer = trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=tracer_provider)

    @property
    def enabled(self) -> bool:
        """Whether spans can be recorded: a real (SDK) tracer provider is configured.

        Once true it stays true (a global provider cannot be unset). While
        false it is re-checked at most once per ``RECHECK_INTERVAL`` seconds,
        so an SDK configured after install is picked up without a per-event cost.
        """
        if self._enabled:
            return True
        now = time.monotonic()
        if now >= self._recheck_at:
            self._recheck_at = now + RECHECK_INTERVAL
            provider = self._provider or trace.get_tracer_provider()
            self._enabled = not isinstance(provider, _NO_OP_PROVIDERS)
        return self._enabled

    @property
    def tracer(self) -> Tracer:
        """The tracer spans are created with."""
        return self._tracer

    # -- publishing ----------------------------------------------------------

    def publisher(self, publish: Publisher) -> Publisher:
        """Wrap ``publish`` with a PRODUCER span per envelope (a PublisherMiddleware)."""
        tracer = self._tracer

        async def traced(topic: str, envelopes: list[Envelope]) -> list[Envelope]:
            if not self.enabled:
                return await publish(topic, envelopes)
            spans: list[Span] = []
            sent: list[Envelope] = []
            for envelope in envelopes:
                span = tracer.start_span(
                    f"send {topic}",
                    context=parent_context(envelope),
                    kind=SpanKind.PRODUCER,
                )
                if not span.is_recording():
                    sent.append(envelope)
                    continue
                for name, value in _event_attributes(topic, envelope, "send").items():
                    span.set_attribute(name, value)
                spans.append(span)
                sent.append(with_span(envelope, span))
            try:
                return await publish(topic, sent)
            except BaseException as exc:
                for span in spans:
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise
            finally:
                for span in spans:
                    span.end()

        return traced

    # -- handling --------------------------------------------------------------

    def middleware(self, handler: Handler) -> Handler:
        """Wrap ``handler`` with a CONSUMER span per attempt (a Middleware)."""
        tracer = self._tracer

        async def traced(envelope: Envelope, ctx: Context) -> None:
            if not self.enabled:
                await handler(envelope, ctx)
                return
            topic = ctx.delivery.topic
            span = tracer.start_span(f"process {topic}", context=parent_context(envelope), kind=SpanKind.CONSUMER)
            if not span.is_recording():
                await handler(envelope, ctx)
                return
            attributes = _event_attributes(topic, envelope, "process")
            attributes[CONSUMER_GROUP] = ctx.handler.group
            attributes[DESTINATION_PARTITION] = str(ctx.delivery.partition)
            attributes[ATTEMPT] = ctx.attempt
            attributes[SERVICE] = ctx.handler.service
            attributes[HANDLER] = ctx.handler.name
            span.set_attributes(attributes)
            ctx.traceparent, ctx.tracestate = span_headers(span)
            try:
                with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                    await handler(envelope, ctx)
            except BaseException as exc:  # cancellation: not an outcome, but end the span honestly
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                span.end()
                raise
            self._finish(span, ctx)

        return traced

    def _finish(self, span: Span, ctx: Context) -> None:
        span.set_attribute(OUTCOME, ctx.outcome.value)
        if ctx.error is not None:
            span.record_exception(ctx.error)
        if ctx.outcome is Outcome.SUCCESS:
            if ctx.outputs:
                self._emit_producers(span, ctx)
        elif ctx.outcome is Outcome.RETRY:
            span.set_status(Status(StatusCode.ERROR, f"retry in {ctx.retry_delay:.3f}s: {ctx.error!r}"))
        elif ctx.outcome is Outcome.DEAD_LETTER:
            span.set_attribute(DEAD_LETTER_REASON, ctx.reason or DeadLetterReason.ERROR)
            span.set_status(
                Status(StatusCode.ERROR, f"dead-lettered ({ctx.reason or DeadLetterReason.ERROR}): {ctx.error!r}")
            )
        span.end()

    def _emit_producers(self, consumer: Span, ctx: Context) -> None:
        parent = trace.set_span_in_context(consumer)
        rewritten: list[tuple[str, Envelope]] = []
        for topic, envelope in ctx.outputs:
            producer = self._tracer.start_span(f"send {topic}", context=parent, kind=SpanKind.PRODUCER)
            producer.set_attributes(_event_attributes(topic, envelope, "send"))
            producer.set_attribute(SERVICE, ctx.handler.service)
            rewritten.append((topic, with_span(envelope, producer)))
            producer.end()
        ctx.outputs[:] = rewritten

    # -- batches ---------------------------------------------------------------

    def settled(self, spec: HandlerSpec, settlement: Settlement, seconds: float) -> None:
        """Record a ``settle <topic>`` span for the batch, linked to each message's producer span."""
        deliveries = [
            *settlement.acks,
            *(delivery for delivery, _ in settlement.retries),
            *(delivery for delivery, _ in settlement.dead_letters),
        ]
        if not deliveries or not self.enabled:
            return
        end = time.time_ns()
        span = self._tracer.start_span(
            f"settle {spec.topic}",
            kind=SpanKind.CONSUMER,
            start_time=end - int(seconds * 1e9),
        )
        if not span.is_recording():
            return
        span.set_attributes(
            {
                MESSAGING_SYSTEM: SYSTEM,
                DESTINATION_NAME: spec.topic,
                OPERATION_TYPE: "settle",
                OPERATION_NAME: "settle",
                CONSUMER_GROUP: spec.group,
                BATCH_COUNT: len(deliveries),
                SERVICE: spec.service,
                HANDLER: spec.name,
                "choreograph.batch.acks": len(settlement.acks),
                "choreograph.batch.retries": len(settlement.retries),
                "choreograph.batch.dead_letters": len(settlement.dead_letters),
                "choreograph.batch.outputs": len(settlement.outputs),
            }
        )
        for link in self._links([delivery.value for delivery in deliveries]):
            span.add_link(link.context, link.attributes)
        span.end(end_time=end)

    @staticmethod
    def _links(values: Sequence[bytes]) -> list[Link]:
        links: list[Link] = []
        for value in values:
            try:
                envelope = codec.decode(value)
            except DecodeError:
                continue
            parent = parent_context(envelope)
            if parent is None:
                continue
            span_context = trace.get_current_span(parent).get_span_context()
            if span_context.is_valid:
                links.append(Link(span_context, {MESSAGE_ID: envelope.id}))
        return links


_installed: weakref.WeakKeyDictionary[App, Tracing] = weakref.WeakKeyDictionary()


def install_tracing(app: App, *, tracer_provider: TracerProvider | None = None, batch_spans: bool = False) -> Tracing:
    """Instrument ``app``: spans for publishes, handling attempts and (``batch_spans``) settled batches.

    Call before the app starts. Idempotent: a second call returns the first
    Tracing unchanged. ``tracer_provider`` defaults to the global one, so
    configuring the OpenTelemetry SDK later (before spans are made) works.
    """
    existing = _installed.get(app)
    if existing is not None:
        return existing
    tracing = Tracing(tracer_provider)
    app.use_publisher(tracing.publisher)
    app.use(tracing.middleware)
    if batch_spans:
        app.add_listener(tracing)
    _installed[app] = tracing
    return tracing


def trace_id_of(traceparent: str | None) -> str | None:
    """Return the 32-hex trace id of a W3C ``traceparent`` (None if malformed or absent)."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    if len(parts) != 4 or len(parts[1]) != 32:
        return None
    return parts[1]


def current_trace_fields() -> Mapping[str, str]:
    """Return ``trace_id`` and ``span_id`` of the current span, or nothing if there is none."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return {}
    return {"trace_id": format(span_context.trace_id, "032x"), "span_id": format(span_context.span_id, "016x")}
