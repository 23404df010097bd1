"""Tracing: producer and consumer spans, W3C propagation through envelopes, attempts and outcomes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from choreograph import App, Context, Event, Reject, RetryPolicy
from choreograph.brokers.memory import MemoryBroker
from choreograph.core import codec
from choreograph.observe.tracing import Tracing, install_tracing, trace_id_of
from tests.conftest import wait_until


class Asked(Event, type="trace.asked"):
    n: int


class Answered(Event, type="trace.answered"):
    n: int


FAST_RETRY = RetryPolicy(immediate=1, delayed=0)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def build_app(*, fail_first: bool = False, reject: bool = False) -> App:
    app = App("asker", broker=MemoryBroker())

    @app.service("answerer").on(Asked, retry=FAST_RETRY)
    async def answer(event: Asked, ctx: Context) -> Answered:
        if reject:
            raise Reject("no answer for you")
        if fail_first and ctx.attempt == 1:
            raise RuntimeError("flaky")
        return Answered(n=event.n)

    @app.service("listener").on(Answered)
    async def hear(event: Answered, ctx: Context) -> None:
        return None

    return app


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


async def run_until(app: App, exporter: InMemorySpanExporter, name: str, count: int = 1) -> None:
    await app.start()
    try:
        await app.publish(Asked(n=1), key="k")
        await wait_until(lambda: len(spans_named(exporter, name)) >= count, 10, f"{count} span(s) {name}")
    finally:
        await app.stop()


async def test_publish_makes_a_producer_span_whose_context_travels_in_the_envelope(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # Given an app with tracing
    app = build_app()
    install_tracing(app, tracer_provider=provider)
    # When an event is published
    envelope = await app.publish(Asked(n=1))
    # Then one PRODUCER span exists and the envelope carries its context
    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.PRODUCER
    assert span.name == "send trace.asked"
    assert envelope.traceparent is not None
    assert envelope.traceparent.startswith(f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-")
    attributes = dict(span.attributes or {})
    assert attributes["messaging.system"] == "choreograph"
    assert attributes["messaging.destination.name"] == "trace.asked"
    assert attributes["messaging.operation.type"] == "send"
    assert attributes["messaging.message.id"] == envelope.id
    assert attributes["messaging.message.conversation_id"] == envelope.correlationid
    # and the stored record carries it too
    (stored,) = await app.broker.read("trace.asked")  # type: ignore[attr-defined]
    assert codec.decode(stored.value).traceparent == envelope.traceparent


async def test_handling_is_a_consumer_span_child_of_the_producer_and_parent_of_the_next_hop(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # Given two services with tracing
    app = build_app()
    install_tracing(app, tracer_provider=provider)
    # When an event flows through both
    await run_until(app, exporter, "process trace.answered")
    # Then publish -> process -> send -> process form one chain in one trace
    send_asked = spans_named(exporter, "send trace.asked")[0]
    process_asked = spans_named(exporter, "process trace.asked")[0]
    send_answered = spans_named(exporter, "send trace.answered")[0]
    process_answered = spans_named(exporter, "process trace.answered")[0]
    assert {s.context.trace_id for s in exporter.get_finished_spans()} == {send_asked.context.trace_id}
    assert process_asked.parent is not None and process_asked.parent.span_id == send_asked.context.span_id
    assert send_answered.parent is not None and send_answered.parent.span_id == process_asked.context.span_id
    assert process_answered.parent is not None and process_answered.parent.span_id == send_answered.context.span_id
    assert process_asked.kind is SpanKind.CONSUMER and send_answered.kind is SpanKind.PRODUCER
    attributes = dict(process_asked.attributes or {})
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.consumer.group.name"] == "answerer.answer"
    assert attributes["choreograph.attempt"] == 1
    assert attributes["choreograph.outcome"] == "success"


async def test_each_attempt_of_a_retried_step_is_its_own_consumer_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # Given a handler that fails its first attempt
    app = build_app(fail_first=True)
    install_tracing(app, tracer_provider=provider)
    # When the event is handled
    await run_until(app, exporter, "process trace.answered")
    # Then two CONSUMER spans share the producer as parent: a failed retry, then a success
    attempts = sorted(spans_named(exporter, "process trace.asked"), key=lambda s: s.attributes["choreograph.attempt"])  # type: ignore[index]
    assert [(s.attributes or {})["choreograph.outcome"] for s in attempts] == ["retry", "success"]
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert any(event.name == "exception" for event in attempts[0].events)
    assert attempts[0].parent == attempts[1].parent
    # and only the successful attempt emitted a producer span
    (send,) = spans_named(exporter, "send trace.answered")
    assert send.parent is not None and send.parent.span_id == attempts[1].context.span_id


async def test_a_dead_letter_is_an_error_span_with_its_reason(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = build_app(reject=True)
    install_tracing(app, tracer_provider=provider)
    await run_until(app, exporter, "process trace.asked")
    (span,) = spans_named(exporter, "process trace.asked")
    assert (span.attributes or {})["choreograph.outcome"] == "dead_letter"
    assert (span.attributes or {})["choreograph.dead_letter.reason"] == "reject"
    assert span.status.status_code is StatusCode.ERROR


async def test_batch_spans_link_every_message_of_the_batch(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = build_app()
    install_tracing(app, tracer_provider=provider, batch_spans=True)
    await run_until(app, exporter, "settle trace.asked")
    (settle,) = spans_named(exporter, "settle trace.asked")
    (send,) = spans_named(exporter, "send trace.asked")
    assert [link.context.span_id for link in settle.links] == [send.context.span_id]
    assert (settle.attributes or {})["messaging.batch.message_count"] == 1


async def test_without_an_sdk_trace_context_passes_through_untouched() -> None:
    # Given tracing with the global (no-op) provider and an incoming envelope with a traceparent
    app = build_app()
    tracing = install_tracing(app)
    assert not tracing.enabled
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    from choreograph.core.envelope import Envelope

    sent = await app.publish_envelope(
        "trace.asked", Envelope.for_event(Asked(n=1), source="x").replace(traceparent=parent)
    )
    # Then nothing is rewritten, and outputs of handlers inherit the incoming context
    assert sent.traceparent == parent
    await app.start()
    try:
        broker = app.broker
        await wait_until(lambda: "trace.answered" in broker._topics, 10, "an answer")  # type: ignore[attr-defined]
        await wait_until(lambda: _answered(broker), 10, "an answer record")
    finally:
        await app.stop()
    (record,) = await broker.read("trace.answered")  # type: ignore[attr-defined]
    assert codec.decode(record.value).traceparent == parent


async def _answered(broker: MemoryBroker) -> bool:
    return bool(await broker.read("trace.answered"))


def test_trace_id_of_reads_w3c_traceparent() -> None:
    assert trace_id_of("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01") == "0af7651916cd43dd8448eb211c80319c"
    assert trace_id_of("garbage") is None
    assert trace_id_of(None) is None


def test_tracing_with_an_explicit_provider_is_enabled(provider: TracerProvider) -> None:
    assert Tracing(provider).enabled
